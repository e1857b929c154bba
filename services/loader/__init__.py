"""The ClickHouse loader: inserts the rows the Flink job commits to Kafka into ClickHouse, each exactly once.

The job writes JSONEachRow objects to the catalogue's ClickHouse topics (telemetry/topics.py), and rejects to the
DLQ topic, with Flink's transactional sink; this process reads them read_committed and keeps its position in ClickHouse
(loader_progress, sql/clickhouse/migrations/0005_loader.sql). `python -m services.loader --help` says how to run it.
"""

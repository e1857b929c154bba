"""The local stack: Kafka, ClickHouse (dev server), PostgreSQL, MinIO, Prometheus and a Flink session cluster on 127.0.0.1,
with data and logs under $TELEMETRY_STATE_DIR/<service>/. `python -m dev.stack --help` tells how to run it.
"""

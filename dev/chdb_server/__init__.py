"""A local stand-in for ClickHouse: chdb's embedded engine behind the part of ClickHouse's HTTP interface
that clickhouse-connect uses, so the same client and SQL run against it and against a real server.
"""

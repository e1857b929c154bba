"""The quota service: allow or deny spending per user, department, project and tenant, from telemetry.usage.v1 in
memory, cold scopes from ClickHouse, limits from PostgreSQL. Rules in small modules; app.py and consumer.py adapt."""

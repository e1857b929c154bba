"""Flink job entry points: the streaming job (telemetry_job) wires udfs/ and Flink SQL into one topology."""

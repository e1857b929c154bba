"""Flink adapters: thin PyFlink functions around the plain-Python rules in telemetry/ and schemas/."""

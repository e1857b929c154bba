"""Core of the AI telemetry pipeline: settings, the topic catalogue, the local stack, the simulator and the SDK.

Everything here is plain Python, usable and tested without Flink; udfs/ and jobs/ adapt it to Flink.
"""

__version__ = "0.1.0"

"""Deterministic platform simulator: tenants, users, models x checkpoints, nodes, task lifecycles, LLM requests,
credits and audit, with duplicates, out-of-order and malformed records, plus the ground truth to check against.

`python -m dev.simulator --help` for the CLI; truth.py documents the ground-truth file.
"""

from dev.simulator.config import SimConfig
from dev.simulator.stream import Record, Simulation, generate

__all__ = ["Record", "SimConfig", "Simulation", "generate"]

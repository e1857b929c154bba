"""Every knob of the simulator in one frozen dataclass, with defaults that make a lively but small platform.

The CLI maps its flags onto these fields; tests build variants with `dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DEFAULT_START_MS = 1_771_675_200_000  # 2026-02-21T12:00:00Z: a fixed default keeps library use deterministic
WINDOW_MS = 10_000  # ground-truth windows: tumbling, aligned to the epoch (the job's default window)


class ConfigError(ValueError):
    """A simulator setting is out of its range; the message names it."""


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    start_ms: int = DEFAULT_START_MS  # event time of the first record (epoch ms); the CLI's default is now
    rate: float = 10_000.0  # records per second of event time (and the producer's target send rate)
    events: int = 200_000  # records to emit in total (valid + duplicates + malformed), exactly

    # The platform's size.
    tenants: int = 3
    departments: int = 9  # spread over tenants round-robin
    projects: int = 24
    users: int = 240
    base_models: int = 6
    checkpoints_per_model: int = 4
    nodes: int = 48

    # Traffic mix: target shares of valid records by activity (normalised).
    share_llm: float = 0.55
    share_tasks: float = 0.33  # xumi_task, xumi_load, wkf_task and the four credit topics
    share_audit: float = 0.12  # pbac_*, asset_*

    # Tasks.
    max_attempts: int = 3
    orphan_share: float = 0.004  # attempts whose node dies mid-inference: no end event, ever
    # Multiplies queue/load/init/inference times. None: min(1, run length / 300 s), so short runs still
    # complete most lifecycles (every lifecycle must end inside the run) and long runs get realistic times.
    task_time_scale: float | None = None
    credit_interval_s: int = 30  # credit records cover at most this much usage each (seed 000: 30 s metrics)
    workflow_only_share: float = 0.05  # tasks only the Workflow service reports: TaskStarted and its end, no XUMI
    # Credit records carry credits just under the event contract's maximum (1e12, all six decimals used), so
    # department totals reach about 1e14: sums a double cannot hold exactly (tests of exact money).
    credits_near_max: bool = False

    # Delivery effects.
    duplicate_share: float = 0.01  # of valid events, re-delivered once more with the same bytes
    out_of_order_share: float = 0.05  # of records, delivered late ...
    max_out_of_order_ms: int = 5_000  # ... by at most this much event time
    late_start_share: float = 0.02  # of ended attempts, whose xumi.task.started is delivered after their end ...
    late_start_delay_ms: int = 8_000  # ... by this much event time (and up to 1 s more): past the job's
    # out-of-orderness, so it has reported the attempt when the start comes, well within the allowed lateness
    malformed_share: float = 0.01  # of source records, replaced by a malformed record of some kind
    malformed_kinds: tuple[str, ...] = ()  # restrict injected kinds (names in faults.KINDS); empty: all

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {rule}")

        need(self.rate > 0, "rate", "must be > 0 records/s")
        need(self.events >= 0, "events", "must be >= 0")
        need(self.start_ms >= 946_684_800_000, "start_ms", "must be on or after 2000-01-01 (epoch ms)")
        for name in ("tenants", "base_models", "checkpoints_per_model", "max_attempts"):
            need(getattr(self, name) >= 1, name, "must be >= 1")
        need(self.departments >= self.tenants, "departments", "need at least one per tenant")
        need(self.projects >= self.departments, "projects", "need at least one per department")
        need(self.users >= self.departments, "users", "need at least one per department")
        need(self.nodes >= 8, "nodes", "need at least 8 (service nodes plus every GPU VM type)")
        for name in ("share_llm", "share_tasks", "share_audit"):
            need(self.__dict__[name] >= 0, name, "must be >= 0")
        need(self.share_llm + self.share_tasks + self.share_audit > 0, "share_llm", "all shares are zero")
        for name in ("orphan_share", "duplicate_share", "out_of_order_share", "malformed_share", "workflow_only_share",
                     "late_start_share"):
            need(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        need(self.task_time_scale is None or 0 < self.task_time_scale <= 100, "task_time_scale",
             "must be in (0, 100]")
        need(self.credit_interval_s >= 1, "credit_interval_s", "must be >= 1")
        need(0 <= self.max_out_of_order_ms <= 3_600_000, "max_out_of_order_ms", "must be in [0, 1 h]")
        need(0 <= self.late_start_delay_ms <= 3_600_000, "late_start_delay_ms", "must be in [0, 1 h]")

    @property
    def step_ms(self) -> float:
        """Event time between consecutive source records; duplicates ride along, so the output keeps `rate`."""
        return 1000.0 * (1.0 + self.duplicate_share) / self.rate

    @property
    def time_scale(self) -> float:
        if self.task_time_scale is not None:
            return self.task_time_scale
        return min(1.0, max(0.01, self.events / self.rate / 300.0))

    @property
    def end_ms(self) -> int:
        """Planned event time of the last record (lifecycles are planned to finish by then)."""
        return self.start_ms + int(self.events * 1000.0 / self.rate)

    def as_meta(self) -> dict[str, object]:
        """JSON-ready copy for the truth file."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

"""LLM request events (topic telemetry.events.v1, seed 002's schema): latency, tokens, status and error types.

Latency follows model size, output tokens and the served checkpoint; some model x checkpoint combinations
error more, so seed 003's "which combination is worse" dashboards have something to find.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from schemas import LlmRequestEvent
from dev.simulator.rand import Weighted
from dev.simulator.truth import COL, ERR_COL, LLM
from telemetry.topics import LLM_TOPIC

if TYPE_CHECKING:
    from dev.simulator.stream import Simulation

# (status, error_type, weight): seed 002's error kinds - timeouts, rate limits, 5xx, model errors.
_ERRORS = Weighted(
    [("timeout", "upstream_timeout"), ("rate_limited", "rate_limit_exceeded"), ("error", "http_500"),
     ("error", "http_503"), ("error", "model_error"), ("error", "context_length_exceeded"),
     ("cancelled", "client_cancelled")],
    [20, 25, 10, 8, 15, 10, 12],
)
EXPERIMENTS = (("reranker_v2", ("A", "B")), ("prompt_compression", ("control", "aggressive")),
               ("canary_2026_02", ("stable", "canary")))
_PROMPTS = tuple(f"pv_{1 + i % 12}" for i in range(16))
_C_REQ, _C_ERR, _C_TIN, _C_TOUT, _C_LAT = (COL[c] for c in ("requests", "errors", "tokens_in", "tokens_out",
                                                             "latency_ms_sum"))


def request(sim: Simulation, ts_ms: int) -> tuple[str, bytes, type[LlmRequestEvent], dict[str, Any]]:
    """One LLM request at ts_ms: (topic, key, model, fields). Keyed by user: a user's requests stay ordered."""
    rng, world = sim.rng, sim.world
    user = world.user_pick.pick(rng)
    project = user.projects[rng.below(len(user.projects))]
    combo = world.combo_pick.pick(rng)
    model, ckpt = combo.model, combo.checkpoint
    candidates = world.nodes_for_model[(model.name, model.version)]
    node = candidates[rng.below(len(candidates))]

    session = sim.sessions.get(user.user_id)
    if session is None or rng.random() < 0.03:  # sessions last ~30 requests
        session = sim.sessions[user.user_id] = f"s-{rng.hex_id(12)}"
    experiment = None
    speedup = 1.0
    if rng.random() < 0.35:
        name, variants = EXPERIMENTS[rng.below(len(EXPERIMENTS))]
        variant = variants[rng.below(len(variants))]
        experiment = {"name": name, "variant": variant}
        if variant in ("B", "aggressive"):
            speedup = 0.9  # the treatment is a bit faster: something for an A/B panel to show

    tokens_in = rng.lognormal_ms(420, 1.0, 1, 32_000)
    tokens_out = rng.lognormal_ms(230, 0.9, 1, 8_000)
    latency = (60 + 0.05 * tokens_in + tokens_out * model.ms_per_token) * combo.latency_factor * speedup
    latency = int(min(120_000, latency * math.exp(0.25 * rng.normal())))
    status, error_type = "ok", None
    if rng.random() < combo.llm_error_rate:
        status, error_type = _ERRORS.pick(rng)
        if status == "timeout":
            latency, tokens_out = 30_000 + rng.below(90_001), 0
        elif status == "rate_limited":
            latency, tokens_out = 5 + rng.below(60), 0
        elif status == "cancelled":
            tokens_out = rng.below(tokens_out + 1)
            latency = rng.below(latency + 1)
        else:
            tokens_out = 0
            latency = 20 + rng.below(min(latency, 5_000) + 1)

    tenant, dept = user.department.tenant, user.department
    fields = {
        "event_id": rng.uuid4_str(), "event_name": "llm.request.completed", "ts": sim.fmt_ts(ts_ms),
        "tenant_id": tenant.tenant_id, "node_id": node.node_id, "vm_type": node.vm.name, "host_name": node.host_name,
        "user_id": user.user_id, "project_id": project.project_id, "department_id": dept.department_id,
        "session_id": session, "request_id": f"r-{rng.hex_id(16)}", "model_id": model.name,
        "model_version": model.version, "prompt_version": _PROMPTS[user.prompt_base + rng.below(3)],
        "experiment": experiment, "latency_ms": latency, "tokens_in": tokens_in, "tokens_out": tokens_out,
        "status": status, "error_type": error_type, "region": node.region, "client": user.client,
        "checkpoint_id": ckpt.checkpoint_id if ckpt else None,
    }
    row = sim.truth.row(LLM, ts_ms, (tenant.tenant_id, dept.department_id, project.project_id, user.user_id,
                                model.name, model.version, ckpt.checkpoint_id if ckpt else "", ""))
    row[_C_REQ] += 1
    row[_C_TIN] += tokens_in
    row[_C_TOUT] += tokens_out
    row[_C_LAT] += latency
    if error_type is not None:
        row[_C_ERR] += 1
        row[ERR_COL[error_type]] += 1
    return LLM_TOPIC, user.key, LlmRequestEvent, fields


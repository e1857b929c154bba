"""Access audit: PBAC decisions, policy changes and service reloads; asset access checks and transfers.

Flows are causal (a PBAC allow precedes the asset check, which precedes the transfer), with some denials,
mostly for users reaching into projects that are not theirs, as an audit dashboard should surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas import AssetAccessEvent, AssetTransferEvent, PbacAccessEvent, PbacPolicyEvent, PbacServiceEvent
from dev.simulator.rand import Weighted
from dev.simulator.truth import AUDIT, COL
from dev.simulator.world import Node, Project, User

if TYPE_CHECKING:
    from dev.simulator.stream import Simulation

_C_AUDIT, _C_DENIED, _C_TRANSFERS, _C_TBYTES = (COL[c] for c in ("audit_events", "access_denied", "transfers",
                                                                  "transfer_bytes"))
_ASSET_KIND = Weighted(["model", "dataset", "checkpoint", "image"], [35, 30, 20, 15])
_ASSET_ACTION = Weighted(["read", "write", "list", "delete"], [68, 20, 9, 3])
_TRANSFER_ERRORS = ("timeout", "connection_reset", "checksum_mismatch")
STORAGE = ("s3", "nfs", "blob")


def _envelope(sim: Simulation, ts_ms: int, node: Node, user: User, project: Project) -> dict[str, Any]:
    dept = user.department
    return {"event_id": sim.rng.uuid4_str(), "ts": sim.fmt_ts(ts_ms), "tenant_id": dept.tenant.tenant_id,
            "node_id": node.node_id, "vm_type": node.vm.name, "host_name": node.host_name, "user_id": user.user_id,
            "project_id": project.project_id, "department_id": dept.department_id}


def _dims(user: User, project: Project) -> tuple[str, str, str, str]:
    return (user.department.tenant.tenant_id, user.department.department_id, project.project_id, user.user_id)


def access_flow(sim: Simulation, ts_ms: int) -> bool:
    """A user asks PBAC for a resource; allowed asset requests go on to the asset store and maybe a transfer.

    Returns False (nothing scheduled) when the flow does not fit the remaining budget or run time."""
    rng, world = sim.rng, sim.world
    user = world.user_pick.pick(rng)
    own = rng.random() < 0.88
    if own:
        project = user.projects[rng.below(len(user.projects))]
    else:
        tenant_projects = [p for p in world.projects if p.department.tenant is user.tenant]
        project = tenant_projects[rng.below(len(tenant_projects))]
        own = project in user.projects
    kind = _ASSET_KIND.pick(rng)
    combo = world.combo_pick.pick(rng)
    if kind == "model":
        asset_id = combo.model.name
        action = "models:invoke" if rng.random() < 0.8 else "models:read"
    elif kind == "checkpoint" and combo.checkpoint is not None:
        asset_id = combo.checkpoint.checkpoint_id
        action = _ASSET_ACTION.pick(rng)
    else:
        kind = "dataset" if kind == "checkpoint" else kind
        asset_id = f"{'ds' if kind == 'dataset' else 'img'}-{project.project_id}-{rng.below(20):02d}"
        action = _ASSET_ACTION.pick(rng)
    resource = f"projects/{project.project_id}/{kind}s/{asset_id}"
    deny_p = (0.5 if action == "delete" else 0.03) if own else 0.85
    allowed = rng.random() >= deny_p

    # Plan the timeline first so the budget check happens before anything is built.
    n, t_asset, t_transfer = 1, ts_ms, ts_ms
    asset_allowed = False
    size = 0
    if allowed and kind != "model":
        n, t_asset = 2, ts_ms + 3 + rng.below(40)
        asset_allowed = rng.random() >= 0.02
        if asset_allowed and action in ("read", "write"):
            if kind == "checkpoint" and combo.checkpoint is not None:
                size = combo.checkpoint.size_bytes
            elif kind == "dataset":
                size = rng.lognormal_ms(800e6, 1.2, 1_000, 40_000_000_000)
            else:
                size = rng.lognormal_ms(2e6, 1.0, 1_000, 200_000_000)
            throughput = 40_000 + rng.below(360_000)  # bytes/ms: 40-400 MB/s
            n, t_transfer = 3, t_asset + 5 + size // throughput
    if not sim.fits(n, max(t_asset, t_transfer)):
        return False

    policy = world.policies[user.tenant.tenant_id]
    pbac_node = world.service_nodes[rng.below(len(world.service_nodes))]
    decision = "allow" if allowed else "deny"
    ev = dict(
        **_envelope(sim, ts_ms, pbac_node, user, project), event_name="pbac.access.checked", subject=user.user_id,
        resource=resource, action=action, decision=decision,
        policy_id=policy[0 if kind == "model" else 1] if allowed or rng.random() < 0.5 else None,
        reason=("member of project" if own else "explicit grant") if allowed else
        ("not a member of project" if not own else "action not granted by policy"),
    )
    dims = _dims(user, project)
    row = sim.truth.row(AUDIT, ts_ms, dims)
    row[_C_AUDIT] += 1
    row[_C_DENIED] += not allowed
    sim.schedule_event(ts_ms, "pbac_access", user.key, PbacAccessEvent, ev)
    if n == 1:
        return True

    asset_node = world.service_nodes[rng.below(len(world.service_nodes))]
    asset_action = action if action in ("read", "write", "list", "delete") else "read"
    ev2 = dict(
        **_envelope(sim, t_asset, asset_node, user, project), event_name="asset.access.checked", asset_id=asset_id,
        asset_type=kind, action=asset_action, decision="allow" if asset_allowed else "deny",
    )
    row = sim.truth.row(AUDIT, t_asset, dims)
    row[_C_AUDIT] += 1
    row[_C_DENIED] += not asset_allowed
    sim.schedule_event(t_asset, "asset_access", asset_id.encode(), AssetAccessEvent, ev2)
    if n == 2:
        return True

    failed = rng.random() < 0.03
    moved = rng.below(size) if failed else size
    fields: dict[str, Any] = {}
    if failed:
        err = _TRANSFER_ERRORS[rng.below(len(_TRANSFER_ERRORS))]
        fields = {"error_type": err, "error_message": f"{asset_action} of {asset_id} failed: {err.replace('_', ' ')}"}
    ev3 = dict(
        **_envelope(sim, t_transfer, asset_node, user, project),
        event_name="asset.transfer.failed" if failed else "asset.transfer.completed", asset_id=asset_id, bytes=moved,
        direction="download" if asset_action == "read" else "upload", duration_ms=t_transfer - t_asset,
        storage_type=STORAGE[rng.below(len(STORAGE))], **fields,
    )
    row = sim.truth.row(AUDIT, t_transfer, dims)
    row[_C_TRANSFERS] += 1
    row[_C_TBYTES] += moved
    sim.schedule_event(t_transfer, "asset_transfer", asset_id.encode(), AssetTransferEvent, ev3)
    return True


def policy_change(sim: Simulation, ts_ms: int) -> bool:
    """An admin changes a policy; the PBAC service reloads its bundle shortly after."""
    rng, world = sim.rng, sim.world
    tenant = world.tenants[rng.below(len(world.tenants))]
    t_reload = ts_ms + 500 + rng.below(2_500)
    if not sim.fits(2, t_reload):
        return False
    admin = world.admins[tenant.tenant_id]
    project = admin.projects[0]
    policies = world.policies[tenant.tenant_id]
    r = rng.random()
    if r < 0.1:
        policy_id = f"pol-{tenant.code}-custom-{len(policies):03d}"
        policies.append(policy_id)
        world.policy_versions[policy_id] = 1
        name, summary = "pbac.policy.created", "new policy for a project group"
    elif r < 0.18 and len(policies) > 4:
        policy_id = policies.pop()
        world.policy_versions[policy_id] += 1
        name, summary = "pbac.policy.deleted", "policy retired"
    else:
        policy_id = policies[rng.below(len(policies))]
        world.policy_versions[policy_id] += 1
        name, summary = "pbac.policy.updated", rng.choice(
            ("granted models:invoke to a group", "revoked write on datasets", "added a deny rule for exports"))
    node = world.service_nodes[0]
    ev = dict(**_envelope(sim, ts_ms, node, admin, project), event_name=name, policy_id=policy_id,
                         policy_version=world.policy_versions[policy_id], changed_by=admin.user_id,
                         change_summary=summary)
    sim.truth.row(AUDIT, ts_ms, _dims(admin, project))[_C_AUDIT] += 1
    sim.schedule_event(ts_ms, "pbac_politics", policy_id.encode(), PbacPolicyEvent, ev)
    _service_event(sim, t_reload, tenant.tenant_id, "pbac.service.reloaded", "reload")
    return True


def service_message(sim: Simulation, ts_ms: int) -> bool:
    """A PBAC engine reports a bundle update or a (re)load on its own."""
    if not sim.fits(1, ts_ms):
        return False
    tenant = sim.world.tenants[sim.rng.below(len(sim.world.tenants))]
    name, action = ("pbac.service.updated", "update") if sim.rng.random() < 0.7 else ("pbac.service.loaded", "load")
    _service_event(sim, ts_ms, tenant.tenant_id, name, action)
    return True


def _service_event(sim: Simulation, ts_ms: int, tenant_id: str, name: str, action: str) -> None:
    rng, world = sim.rng, sim.world
    admin = world.admins[tenant_id]
    project = admin.projects[0]
    i = rng.below(len(world.service_nodes))
    node = world.service_nodes[i]
    r = rng.random()
    status = "ok" if r < 0.9 else ("warning" if r < 0.97 else "error")
    n = len(world.policies[tenant_id])
    message = {"ok": f"{action} of {n} policies done", "warning": "1 policy skipped: unknown attribute",
               "error": "bundle signature check failed; keeping the previous bundle"}[status]
    ev = dict(**_envelope(sim, ts_ms, node, admin, project), event_name=name,
                          service=f"pbac-engine-{i}", action=action, status=status, message=message)
    sim.truth.row(AUDIT, ts_ms, _dims(admin, project))[_C_AUDIT] += 1
    sim.schedule_event(ts_ms, "pbac_service", f"pbac-engine-{i}".encode(), PbacServiceEvent, ev)

"""The simulated platform: tenants, departments, projects, users, base models x checkpoints, VM types and nodes.

Built once from the seed; generators pick from it. Ids are readable slugs (UUIDs where seed 001 says UUID:
tenant and node ids) so dashboards built on simulated data are legible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from dev.simulator.config import SimConfig
from dev.simulator.rand import Rand, Weighted, zipf_weights

GB = 1_000_000_000


def per_second(per_hour: str) -> Decimal:
    """Credits per unit-second of a price per hour, to 12 decimals; a charge (units x seconds x this) is rounded
    to the micro-credit by the biller (dev/simulator/lifecycle.py)."""
    return (Decimal(per_hour) / 3600).quantize(Decimal("1e-12"))


@dataclass(frozen=True)
class VmType:
    name: str
    vcpus: int
    gpus: int
    gpu_type: str  # "" for CPU-only
    gpu_mem_gb: int
    cpu_price: Decimal  # credits per core-second
    gpu_price: Decimal  # credits per GPU-second
    ram_gb: int  # host memory (the simulated node metrics' MemTotal)


# Azure-style names (seed 001 mentions NV6 and x4GPUlarge); prices are plausible list prices per hour.
VM_TYPES: tuple[VmType, ...] = (
    VmType("D8s_v5", 8, 0, "", 0, per_second("0.048"), Decimal(0), 32),
    VmType("NV6", 6, 1, "tesla_m60", 8, per_second("0.05"), per_second("0.9"), 56),
    VmType("NC6s_v3", 6, 1, "v100_16gb", 16, per_second("0.05"), per_second("3.0"), 112),
    VmType("NC24ads_A100_v4", 24, 1, "a100_80gb", 80, per_second("0.05"), per_second("3.67"), 220),
    VmType("x4GPUlarge", 48, 4, "l4_24gb", 24, per_second("0.05"), per_second("0.8"), 192),
    VmType("NC96ads_A100_v4", 96, 4, "a100_80gb", 80, per_second("0.05"), per_second("3.67"), 880),
)
SERVICE_VM = VM_TYPES[0]
# Share of GPU nodes per GPU VM type: mostly single-A100 boxes, some big and some small ones.
_GPU_VM_WEIGHTS = {"NV6": 5, "NC6s_v3": 5, "NC24ads_A100_v4": 14, "x4GPUlarge": 8, "NC96ads_A100_v4": 8}

# storage type -> read throughput in bytes/ms (load time depends on size and storage; seed 003's Admin story)
STORAGE_READ: dict[str, float] = {"local_nvme": 2.0e6, "premium_ssd": 0.9e6, "nfs": 0.5e6, "blob": 0.25e6}
CACHE_READ = 4.0e6  # bytes/ms from the node's page cache / local checkpoint cache
_AKS_POOL = {"D8s_v5": "svc", "NV6": "nv6", "NC6s_v3": "nc6v3", "NC24ads_A100_v4": "nc24a100",
             "x4GPUlarge": "x4gpul", "NC96ads_A100_v4": "nc96a100"}


@dataclass(frozen=True)
class Node:
    node_id: str  # UUID (NODE_ID)
    host_name: str  # AKS-style VMSS instance name (HOST_NAME, also the Kubernetes node name)
    vm: VmType
    region: str
    storage_type: str


@dataclass(frozen=True)
class Tenant:
    tenant_id: str  # UUID (TENANT_ID)
    code: str
    region: str


@dataclass(frozen=True)
class Department:
    department_id: str
    tenant: Tenant


@dataclass(frozen=True)
class Project:
    project_id: str
    department: Department


@dataclass(frozen=True)
class User:
    user_id: str
    department: Department
    projects: tuple[Project, ...]
    client_app: str
    client_os: str
    prompt_base: int  # users stick to a few neighbouring prompt versions
    client: dict[str, str] = field(init=False, compare=False)  # JSON-ready, shared by the user's events
    key: bytes = field(init=False, compare=False)  # Kafka key of the user's LLM requests

    def __post_init__(self) -> None:
        object.__setattr__(self, "client", {"app": self.client_app, "os": self.client_os})
        object.__setattr__(self, "key", self.user_id.encode())

    @property
    def tenant(self) -> Tenant:
        return self.department.tenant


@dataclass(frozen=True)
class BaseModel:
    name: str
    version: str
    size_bytes: int
    ms_per_token: float  # decode speed, drives LLM latency and task inference time
    mem_gb: float  # GPU memory a replica needs


@dataclass(frozen=True)
class Checkpoint:
    checkpoint_id: str
    version: str
    size_bytes: int


@dataclass(frozen=True)
class Combo:
    """A base model with an applied checkpoint (or none): the unit of seed 003's Pipeline TD stories."""

    model: BaseModel
    checkpoint: Checkpoint | None
    task_failure_rate: float  # per attempt; some combinations are visibly worse
    llm_error_rate: float
    latency_factor: float  # > 1: this checkpoint makes serving slower


@dataclass
class World:
    tenants: list[Tenant]
    departments: list[Department]
    projects: list[Project]
    users: list[User]
    models: list[BaseModel]
    combos: list[Combo]
    nodes: list[Node]
    service_nodes: list[Node]
    gpu_nodes: list[Node]
    user_pick: Weighted[User]
    combo_pick: Weighted[Combo]
    nodes_for_model: dict[tuple[str, str], list[Node]]
    admins: dict[str, User]  # tenant_id -> a user allowed to change policies
    policies: dict[str, list[str]]  # tenant_id -> policy ids
    policy_versions: dict[str, int] = field(default_factory=dict)  # mutable: policy id -> current version

    def gpus_for(self, model: BaseModel, vm: VmType) -> int:
        """GPUs a replica of `model` takes on `vm` (whole GPUs; the node's count at most)."""
        return min(vm.gpus, max(1, math.ceil(model.mem_gb / vm.gpu_mem_gb)))


_REGIONS = ("eu-central", "us-east", "asia-southeast")
_TENANT_CODES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")
_DEPARTMENTS = ("research", "vfx", "animation", "games", "marketing", "support", "finance", "platform", "legal")
_PROJECT_WORDS = ("voice-bot", "trailer", "search", "dubbing", "storyboard", "qa-assist", "catalog", "lipsync",
                  "upscale", "subtitles", "previz", "chat", "reports", "localize", "concept-art", "moderation")
# name, size in GB, ms per output token, versions (newest last)
_MODEL_CATALOGUE = (
    ("xumi-base-7b", 14, 14, ("2025.11", "2026.01")),
    ("xumi-base-13b", 26, 20, ("2026.01",)),
    ("xumi-vision-2b", 4.6, 8, ("2025.12", "2026.02")),
    ("xumi-code-34b", 68, 30, ("2026.01",)),
    ("xumi-audio-1b", 2.2, 6, ("2025.10", "2026.01")),
    ("xumi-base-70b", 140, 40, ("2026.02",)),
)
_CKPT_PURPOSES = ("support", "style", "legal", "anime", "summarize", "sql", "translate", "voice", "medical",
                  "finance", "sketch", "dialogue")
_CLIENTS = (("web", "macos"), ("web", "windows"), ("cli", "linux"), ("vscode", "macos"), ("vscode", "linux"),
            ("ios", "ios"), ("android", "android"), ("api", "linux"))


def build_world(cfg: SimConfig, rng: Rand) -> World:
    """Make the platform for `cfg`; every choice comes from `rng`, so one seed gives one world."""
    tenants = [
        Tenant(rng.uuid4_str(), _slug(_TENANT_CODES, i), _REGIONS[i % len(_REGIONS)]) for i in range(cfg.tenants)
    ]
    departments = [
        Department(f"{tenants[i % cfg.tenants].code}-{_slug(_DEPARTMENTS, i // cfg.tenants)}", tenants[i % cfg.tenants])
        for i in range(cfg.departments)
    ]
    projects = [
        Project(f"{departments[i % cfg.departments].tenant.code}-{_slug(_PROJECT_WORDS, i)}",
                departments[i % cfg.departments])
        for i in range(cfg.projects)
    ]
    by_tenant: dict[str, list[Project]] = {}
    for p in projects:
        by_tenant.setdefault(p.department.tenant.tenant_id, []).append(p)

    users: list[User] = []
    for i in range(cfg.users):
        dept = departments[i % cfg.departments]
        own = [p for p in projects if p.department is dept]
        others = [p for p in by_tenant[dept.tenant.tenant_id] if p.department is not dept]
        # Each user works on 1-4 projects, mostly their department's, sometimes a neighbour's.
        mine: dict[str, Project] = {}
        for _ in range(1 + rng.randrange(4)):
            pool = others if others and rng.chance(0.25) else own
            p = pool[rng.randrange(len(pool))]
            mine[p.project_id] = p
        app, os_ = _CLIENTS[rng.randrange(len(_CLIENTS))]
        users.append(User(f"u-{dept.tenant.code}-{i:04d}", dept, tuple(mine.values()), app, os_, rng.randrange(12)))
    order = list(range(len(users)))
    rng.shuffle(order)  # heavy users spread over departments and tenants
    zipf = zipf_weights(len(users), 0.9)
    weights = [0.0] * len(users)
    for rank, idx in enumerate(order):
        weights[idx] = zipf[rank]

    models: list[BaseModel] = []
    for i in range(cfg.base_models):
        name, size_gb, ms_tok, versions = _MODEL_CATALOGUE[i % len(_MODEL_CATALOGUE)]
        if i >= len(_MODEL_CATALOGUE):
            name = f"{name}-x{i // len(_MODEL_CATALOGUE)}"
        for v in versions:
            models.append(BaseModel(name, v, int(size_gb * GB), float(ms_tok), size_gb * 1.2))

    combos: list[Combo] = []
    combo_weights: list[float] = []
    for mi, m in enumerate(models):
        newest = mi + 1 == len(models) or models[mi + 1].name != m.name
        model_weight = (1.0 / (1 + (mi // 2))) * (1.0 if newest else 0.35)
        short = m.name.removeprefix("xumi-")
        cks: list[Checkpoint | None] = [None]
        for c in range(cfg.checkpoints_per_model):
            purpose = _CKPT_PURPOSES[(mi * 3 + c) % len(_CKPT_PURPOSES)] + (f"{c // 12 + 1}" if c >= 12 else "")
            full = rng.chance(0.25)  # full fine-tune (base-sized) vs LoRA adapter (1-3% of base)
            size = m.size_bytes if full else int(m.size_bytes * (0.01 + 0.02 * rng.random()))
            cks.append(Checkpoint(f"ckpt_{short}_{purpose}", f"{1 + rng.randrange(4)}.{rng.randrange(10)}.0", size))
        for ci, ck in enumerate(cks):
            bad = ck is not None and rng.chance(0.2)
            fail = (0.15 + 0.2 * rng.random()) if bad else (0.01 + 0.04 * rng.random())
            combos.append(Combo(m, ck, fail, fail * 0.4, 1.0 + (0.6 * rng.random() if bad else 0.15 * rng.random())))
            # The base model alone and the first checkpoints are the popular ones.
            combo_weights.append(model_weight * (0.6 if ck is None else 1.0 / (1 + ci) ** 0.8))

    nodes: list[Node] = []
    n_service = max(3, cfg.nodes // 8)
    gpu_types = [v for v in VM_TYPES if v.gpus]
    gpu_pick = Weighted(gpu_types, [_GPU_VM_WEIGHTS[v.name] for v in gpu_types])
    storages = list(STORAGE_READ)
    for i in range(cfg.nodes):
        if i < n_service:
            vm = SERVICE_VM
        elif i < n_service + len(gpu_types):
            vm = gpu_types[i - n_service]  # every GPU type present at least once
        else:
            vm = gpu_pick.pick(rng)
        region = _REGIONS[i % min(len(_REGIONS), cfg.tenants)]
        host = f"aks-{_AKS_POOL[vm.name]}-{rng.randrange(10**8):08d}-vmss{i:06x}"
        nodes.append(Node(rng.uuid4_str(), host, vm, region, storages[rng.randrange(len(storages))]))
    service_nodes = [n for n in nodes if not n.vm.gpus]
    gpu_nodes = [n for n in nodes if n.vm.gpus]
    nodes_for_model: dict[tuple[str, str], list[Node]] = {}
    for m in models:
        fits = [n for n in gpu_nodes if n.vm.gpus * n.vm.gpu_mem_gb >= m.mem_gb]
        if not fits:  # a tiny world may lack big boxes; the largest node serves it (slowly) rather than fail
            fits = [max(gpu_nodes, key=lambda n: n.vm.gpus * n.vm.gpu_mem_gb)]
        nodes_for_model[(m.name, m.version)] = fits

    admins = {}
    policies = {}
    for t in tenants:
        admins[t.tenant_id] = next(u for u in users if u.tenant is t)
        policies[t.tenant_id] = [f"pol-{t.code}-{kind}" for kind in ("models-rw", "datasets-ro", "admin", "billing")]
    return World(
        tenants=tenants, departments=departments, projects=projects, users=users, models=models, combos=combos,
        nodes=nodes, service_nodes=service_nodes, gpu_nodes=gpu_nodes, user_pick=Weighted(users, weights),
        combo_pick=Weighted(combos, combo_weights), nodes_for_model=nodes_for_model, admins=admins,
        policies=policies, policy_versions={p: 1 for ps in policies.values() for p in ps},
    )


def _slug(words: tuple[str, ...], i: int) -> str:
    """words[i], with a numeric suffix once the list runs out (configurable sizes beyond the name lists)."""
    word = words[i % len(words)]
    return word if i < len(words) else f"{word}{i // len(words) + 1}"

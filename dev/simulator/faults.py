"""Delivery faults: malformed records (one kind per validator reason code) and the bounded reorder buffer.

Each malformed kind mutates a copy of a valid event of the topic in exactly one way, so schemas.validate
rejects it with that kind's reason and no other; tests prove it kind by kind and topic by topic.
"""

from __future__ import annotations

import heapq
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel as PydanticModel

from schemas import Reason, model_for_topic
from schemas.validate import MAX_RECORD_BYTES
from dev.simulator.rand import Rand

Mutator = Callable[[dict[str, Any], str, Rand], "bytes | None"]  # None: not applicable to this record


@dataclass(frozen=True)
class Kind:
    name: str
    reason: Reason
    make: Mutator


def _dump(d: Any) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


# --- what the models say about their fields ---------------------------------------------------------------

def _unwrap(annotation: Any) -> list[Any]:
    """The annotation and everything nested in Optional / Annotated, flattened."""
    out = [annotation]
    for arg in typing.get_args(annotation):
        out.extend(_unwrap(arg))
    meta = getattr(annotation, "__metadata__", ())
    for m in meta:
        out.append(m)
        out.extend(getattr(m, "metadata", ()))
    return out


def _field_facts(model: type[PydanticModel]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for name, fi in model.model_fields.items():
        parts = _unwrap(fi.annotation) + list(fi.metadata)
        bounds = {k: getattr(p, k) for p in parts for k in ("ge", "gt", "le", "lt") if getattr(p, k, None) is not None}
        literal = any(typing.get_origin(p) is typing.Literal for p in parts)
        facts[name] = {"required": fi.is_required(), "bounds": bounds, "literal": literal}
    return facts


_FACTS: dict[str, dict[str, dict[str, Any]]] = {}


def facts(topic: str) -> dict[str, dict[str, Any]]:
    if topic not in _FACTS:
        _FACTS[topic] = _field_facts(model_for_topic(topic))
    return _FACTS[topic]


_ENVELOPE_IDS = ("tenant_id", "node_id", "user_id", "project_id", "department_id")
_SPECIAL = {"event_id", "event_name", "ts"}


# --- the kinds ------------------------------------------------------------------------------------------

def _not_json(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    raw = _dump(d)
    variant = rng.randrange(5)
    if variant == 0:
        return raw[: 1 + rng.randrange(len(raw) - 2)]  # truncated mid-record (a producer killed mid-write)
    if variant == 1:
        return raw + b"}\n{"  # two records glued together
    if variant == 2:
        return repr(d).encode()  # Python repr: single quotes, None, True
    if variant == 3:
        return b"\xff\xfe" + raw.decode().encode("utf-16-le")  # wrong encoding
    return b""


def _not_object(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    return [_dump([d]), b'"' + d["event_id"].encode() + b'"', b"42", b"null", b"true"][rng.randrange(5)]


def _missing_field(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    required = [k for k, f in facts(topic).items() if f["required"] and k in d]
    name = required[rng.randrange(len(required))]
    variant = rng.randrange(3)
    if variant == 0:
        del d[name]
    elif variant == 1 or name not in _ENVELOPE_IDS:
        d[name] = None  # explicit null: no value either
    else:
        d[name] = ""  # an empty id is no id
    return _dump(d)


def _unknown_field(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    name, value = [("prompt", "Summarise the attached contract in three bullet points"), ("debug", True),
                   ("userId", d["user_id"]), ("gpu_util", 0.93)][rng.randrange(4)]
    d[name] = value
    return _dump(d)


def _wrong_type(d: dict[str, Any], topic: str, rng: Rand) -> bytes | None:
    f = facts(topic)
    options = [k for k, v in d.items() if k not in _SPECIAL and v is not None and not f[k]["literal"]]
    options.append("ts")
    name = options[rng.randrange(len(options))]
    v = d[name]
    if name == "ts":
        d[name] = True
    elif isinstance(v, bool):
        d[name] = "yes"
    elif isinstance(v, (int, float)):
        d[name] = str(v)  # numbers as strings: the classic loosely typed producer
    elif isinstance(v, str):
        d[name] = 12345
    elif isinstance(v, dict):
        d[name] = list(v.items()) or ["x"]
    else:
        return None
    return _dump(d)


def _bad_event_name(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    parts = d["event_name"].split(".")
    d["event_name"] = [
        d["event_name"].title(),  # uppercase letters
        "-".join(parts),  # wrong separator
        ".".join(parts[:2]),  # no action
        ".".join(parts + ["note", "extra"]),  # too many segments
        ".".join([parts[0], "", *parts[1:]]),  # empty segment
        "2" + d["event_name"],  # starts with a digit
    ][rng.randrange(6)]
    return _dump(d)


def _unknown_event_name(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    parts = d["event_name"].split(".")
    if rng.random() < 0.5:
        d["event_name"] = f"{parts[0]}.{parts[1]}.paused"  # the right system, an action it does not have
    else:  # a well-formed name from another system (sent to the wrong topic)
        d["event_name"] = "llm.request.completed" if parts[0] != "llm" else "xumi.task.started"
    return _dump(d)


def _bad_uuid(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    eid = d["event_id"]
    d["event_id"] = [f"evt-{rng.hex_id(12)}", eid[:-1] + "g", eid[:23], "00000000-0000-0000-0000"][rng.randrange(4)]
    return _dump(d)


def _bad_timestamp(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    ts: str = d["ts"]  # canonical form: 2026-02-21T12:34:56.789Z
    short_month = ts[5:7] in ("02", "04", "06", "09", "11")
    d["ts"] = [
        ts[:-1],  # no UTC offset
        ts[:8] + "31T" + ts[11:] if short_month else ts[:5] + "13" + ts[7:],  # no such day / month
        f"{ts[8:10]}/{ts[5:7]}/{ts[:4]} {ts[11:19]}",  # a locale format
        "2150" + ts[4:],  # beyond 2100: a clock bug
        "yesterday",
    ][rng.randrange(5)]
    return _dump(d)


def _out_of_range(d: dict[str, Any], topic: str, rng: Rand) -> bytes | None:
    f = facts(topic)
    options = [k for k, v in d.items() if f.get(k, {}).get("bounds") and isinstance(v, (int, float))
               and not isinstance(v, bool)]
    if not options:
        return None
    name = options[rng.randrange(len(options))]
    b = f[name]["bounds"]
    low = "ge" in b or "gt" in b
    if low and (rng.random() < 0.5 or not ("le" in b or "lt" in b)):
        bound = b.get("ge", b.get("gt"))
        value = bound - 1 - rng.randrange(1000) if "ge" in b else bound - rng.randrange(1000)
    else:
        bound = b.get("le", b.get("lt"))
        value = bound + 1 + rng.randrange(1000) if "le" in b else bound + rng.randrange(1000)
    d[name] = float(value) if isinstance(d[name], float) else int(value)
    return _dump(d)


def _bad_enum(d: dict[str, Any], topic: str, rng: Rand) -> bytes | None:
    f = facts(topic)
    options = [k for k in d if k != "event_name" and f.get(k, {}).get("literal") and d[k] is not None]
    if not options:
        return None
    name = options[rng.randrange(len(options))]
    d[name] = ["maybe", str(d[name]).upper(), "unknown", ""][rng.randrange(4)]
    return _dump(d)


def _field_too_long(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    variant = rng.randrange(4)
    labels = dict(d.get("labels") or {})
    if variant == 0:
        d["vm_type"] = "Standard_" + "X" * (60 + rng.randrange(40))  # a free-text VM description
    elif variant == 1:
        d["host_name"] = "h" * (254 + rng.randrange(50))
    elif variant == 2:
        labels["prompt"] = "Write a story about " + "a dragon " * (14 + rng.randrange(20))  # over-long label value
        d["labels"] = labels
    else:
        labels["k" * (65 + rng.randrange(20))] = "v"  # over-long label key
        d["labels"] = labels
    return _dump(d)


def _cardinality(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    d["labels"] = {f"request_{i:03d}": str(i) for i in range(17 + rng.randrange(40))}  # ids as label keys
    return _dump(d)


def _inconsistent(d: dict[str, Any], topic: str, rng: Rand) -> bytes | None:
    name = d["event_name"]
    if topic == "telemetry.events.v1":
        d["error_type"] = None if d["status"] != "ok" else "http_500"
    elif topic == "xumi_load":
        if name.endswith(".finish"):
            del d["cache_hit"]
        else:
            d["duration_ms"] = 1_000
    elif topic == "xumi_task":
        if name == "xumi.task.failed":
            del d["error_message"]
        elif d.get("checkpoint_id") is not None and rng.random() < 0.5:
            d["checkpoint_version"] = None  # a checkpoint without its version
        else:
            d["error_type"], d["error_message"] = "cuda_oom", "out of memory"
    elif topic == "wkf_task":
        d["event_type"] = {"TaskStarted": "TaskCompleted", "TaskCompleted": "TaskFailed",
                           "TaskFailed": "TaskStarted"}[d["event_type"]]
    elif topic in ("wkf_cpu", "kuber_cpu", "wkf_gpu", "kuber_gpu"):
        d["resource"] = "gpu" if d["resource"] == "cpu" else "cpu"
    elif topic == "pbac_service":
        d["action"] = {"update": "reload", "load": "update", "reload": "load"}[d["action"]]
    elif topic == "asset_transfer":
        if name == "asset.transfer.failed":
            d["error_type"] = None
        else:
            d["error_type"], d["error_message"] = "timeout", "upload timed out"
    else:
        return None  # pbac_access, pbac_politics, asset_access have no cross-field rules
    return _dump(d)


def _oversize(d: dict[str, Any], topic: str, rng: Rand) -> bytes:
    d["stack_trace"] = "  at frame\n" * ((MAX_RECORD_BYTES + 4096 * (1 + rng.randrange(8))) // 11)
    return _dump(d)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("not_json", Reason.NOT_JSON, _not_json),
    Kind("not_object", Reason.NOT_OBJECT, _not_object),
    Kind("missing_field", Reason.MISSING_FIELD, _missing_field),
    Kind("unknown_field", Reason.UNKNOWN_FIELD, _unknown_field),
    Kind("wrong_type", Reason.WRONG_TYPE, _wrong_type),
    Kind("bad_event_name", Reason.BAD_EVENT_NAME, _bad_event_name),
    Kind("unknown_event_name", Reason.UNKNOWN_EVENT_NAME, _unknown_event_name),
    Kind("bad_uuid", Reason.BAD_UUID, _bad_uuid),
    Kind("bad_timestamp", Reason.BAD_TIMESTAMP, _bad_timestamp),
    Kind("out_of_range", Reason.OUT_OF_RANGE, _out_of_range),
    Kind("bad_enum", Reason.BAD_ENUM, _bad_enum),
    Kind("field_too_long", Reason.FIELD_TOO_LONG, _field_too_long),
    Kind("cardinality", Reason.CARDINALITY, _cardinality),
    Kind("inconsistent", Reason.INCONSISTENT, _inconsistent),
    Kind("oversize", Reason.OVERSIZE, _oversize),
)}
# Oversize records are ~70-100 KB each; keep them rarer so they do not dominate the bytes on the wire.
_WEIGHT = {name: (0.25 if name == "oversize" else 1.0) for name in KINDS}


def malformed(topic: str, valid_json: bytes, rng: Rand, kinds: tuple[str, ...] = ()) -> tuple[bytes, Reason, str]:
    """A malformed record for `topic` made from a valid event's JSON: (bytes, expected reason, kind name).

    The copy gets a fresh event_id so it never collides with a valid event (dedup counts stay exact)."""
    names = list(kinds or KINDS)
    while True:
        total = sum(_WEIGHT[n] for n in names)
        r = rng.random() * total
        for name in names:
            r -= _WEIGHT[name]
            if r < 0:
                break
        d = json.loads(valid_json)
        d["event_id"] = rng.uuid4_str()
        raw = KINDS[name].make(d, topic, rng)
        if raw is not None:
            return raw, KINDS[name].reason, name
        names.remove(name)
        if not names:
            raise ValueError(f"no malformed kind in {kinds} applies to topic {topic}")


# --- out-of-order delivery --------------------------------------------------------------------------------

class Reorder:
    """Holds records until their delivery time (event ts + a delay <= the bound) is reached by the source.

    Released in delivery-time order, so a record is never delivered after one that is more than the bound
    younger: for a before b, ts(a) <= due(a) <= due(b) <= ts(b) + bound. Records held on purpose (a start
    delivered after its attempt's end) are the exception.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, tuple[str, bytes | None, bytes, int]]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_ms: int, record: tuple[str, bytes | None, bytes, int]) -> None:
        heapq.heappush(self._heap, (due_ms, self._seq, record))
        self._seq += 1

    def release(self, now_ms: int, out: list[tuple[str, bytes | None, bytes, int]]) -> None:
        """Move every record due at or before now_ms (source time) to `out`."""
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            out.append(heapq.heappop(heap)[2])

    def drain(self, out: list[tuple[str, bytes | None, bytes, int]]) -> None:
        while self._heap:
            out.append(heapq.heappop(self._heap)[2])

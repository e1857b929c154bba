"""The family registry: family name -> model class, allowed event names, and topic -> model lookup.

Family names are the `family` keys of telemetry/topics.py's catalogue, which stays the source of topic names.
"""

from __future__ import annotations

from telemetry.topics import CATALOGUE

from schemas.asset import AssetAccessEvent, AssetTransferEvent
from schemas.credits import KuberCpuCreditEvent, KuberGpuCreditEvent, WkfCpuCreditEvent, WkfGpuCreditEvent
from schemas.envelope import Envelope
from schemas.llm import LlmRequestEvent
from schemas.pbac import PbacAccessEvent, PbacPolicyEvent, PbacServiceEvent
from schemas.sdk import SdkMetricEvent
from schemas.workflow import WkfTaskEvent
from schemas.xumi import XumiLoadEvent, XumiTaskEvent

FAMILIES: dict[str, type[Envelope]] = {
    cls.FAMILY: cls
    for cls in (
        XumiLoadEvent,
        XumiTaskEvent,
        WkfTaskEvent,
        PbacAccessEvent,
        PbacPolicyEvent,
        PbacServiceEvent,
        AssetAccessEvent,
        AssetTransferEvent,
        WkfCpuCreditEvent,
        WkfGpuCreditEvent,
        KuberCpuCreditEvent,
        KuberGpuCreditEvent,
        LlmRequestEvent,
        SdkMetricEvent,
    )
}

# family -> its allowed event names (sorted tuples print and diff nicely; use the model's frozenset to test).
# Empty for an open family (OPEN_NAMES: any well-formed name that is not another family's).
EVENT_NAMES: dict[str, tuple[str, ...]] = {f: tuple(sorted(cls.EVENT_NAMES)) for f, cls in FAMILIES.items()}

# event name -> its family, for every name of a closed family (each name belongs to exactly one family).
EVENT_NAME_FAMILY: dict[str, str] = {name: f for f, names in EVENT_NAMES.items() for name in names}
assert len(EVENT_NAME_FAMILY) == sum(map(len, EVENT_NAMES.values())), "an event name is in two families"

# topic -> family, for every catalogue topic that carries a family (source topics).
TOPIC_FAMILY: dict[str, str] = {t.name: t.family for t in CATALOGUE if t.family is not None}

# topic -> model, precomputed because validate() looks it up once per record.
_MODEL_BY_TOPIC: dict[str, type[Envelope]] = {
    topic: FAMILIES[family] for topic, family in TOPIC_FAMILY.items() if family in FAMILIES
}


def model_for_topic(topic: str) -> type[Envelope]:
    """The model for a source topic; KeyError naming the known topics otherwise."""
    try:
        return _MODEL_BY_TOPIC[topic]
    except KeyError:
        raise KeyError(f"topic {topic!r} carries no event family; known: {', '.join(_MODEL_BY_TOPIC)}") from None


def topics_for_family(family: str) -> tuple[str, ...]:
    """Topics that carry a family (one today; a v2 topic would add another)."""
    return tuple(t for t, f in TOPIC_FAMILY.items() if f == family)

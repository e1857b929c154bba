"""Event contract of the telemetry pipeline: pydantic v2 models for every event family on one envelope.

`validate(topic, raw)` turns a Kafka record into Valid(event) or Invalid(reason, field, message);
see reasons.py for the codes, registry.py for families and event names, generate.py for JSON Schema.
"""

from schemas.asset import AssetAccessEvent, AssetTransferEvent
from schemas.credits import CreditEvent, KuberCpuCreditEvent, KuberGpuCreditEvent, WkfCpuCreditEvent, WkfGpuCreditEvent
from schemas.envelope import Envelope
from schemas.llm import Client, Experiment, LlmRequestEvent
from schemas.naming import is_well_formed
from schemas.pbac import PbacAccessEvent, PbacPolicyEvent, PbacServiceEvent
from schemas.reasons import JobReason, Reason
from schemas.registry import EVENT_NAME_FAMILY, EVENT_NAMES, FAMILIES, TOPIC_FAMILY, model_for_topic, topics_for_family
from schemas.sdk import GpuInfo, SdkMetricEvent, SystemContext
from schemas.types import format_ts, parse_ts, ts_to_millis
from schemas.validate import (
    MAX_RECORD_BYTES,
    Invalid,
    InvalidEventError,
    Result,
    Valid,
    classify_error,
    parse,
    to_dict,
    to_json,
    validate,
    validate_obj,
)
from schemas.workflow import WkfTaskEvent
from schemas.xumi import XumiLoadEvent, XumiTaskEvent

__all__ = [
    "AssetAccessEvent", "AssetTransferEvent", "Client", "CreditEvent", "EVENT_NAME_FAMILY", "EVENT_NAMES",
    "Envelope", "Experiment", "FAMILIES", "GpuInfo", "Invalid", "InvalidEventError", "JobReason", "KuberCpuCreditEvent",
    "KuberGpuCreditEvent", "LlmRequestEvent", "MAX_RECORD_BYTES", "PbacAccessEvent", "PbacPolicyEvent",
    "PbacServiceEvent", "Reason", "Result", "SdkMetricEvent", "SystemContext", "TOPIC_FAMILY", "Valid",
    "WkfCpuCreditEvent", "WkfGpuCreditEvent", "WkfTaskEvent", "XumiLoadEvent", "XumiTaskEvent", "classify_error",
    "format_ts", "is_well_formed", "model_for_topic", "parse", "parse_ts", "to_dict", "to_json",
    "topics_for_family", "ts_to_millis", "validate", "validate_obj",
]

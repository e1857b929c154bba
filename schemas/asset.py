"""Asset storage families (seed 001): access audit (topic asset_access) and transfers (topic asset_transfer).

Access goes to the audit log; transfers feed storage usage per user / project.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas.envelope import Envelope
from schemas.pbac import Decision
from schemas.rules import require_iff
from schemas.types import ByteCount, DurationMs, Id, Label, Text

AssetAccessName = Literal["asset.access.checked"]
AssetTransferName = Literal["asset.transfer.completed", "asset.transfer.failed"]


class AssetAccessEvent(Envelope):
    """An access to a stored asset and its decision."""

    FAMILY: ClassVar[str] = "asset_access"
    SYSTEM: ClassVar[str] = "asset"

    event_name: AssetAccessName = Field(description="asset.access.checked")
    asset_id: Id = Field(description="Asset id")
    asset_type: Label = Field(description="Kind of asset, e.g. dataset, checkpoint, image")
    action: Literal["read", "write", "delete", "list"] = Field(description="Requested operation")
    decision: Decision = Field(description="allow or deny")


class AssetTransferEvent(Envelope):
    """An upload or download of an asset.

    Rules: error_type and error_message present iff asset.transfer.failed (inconsistent otherwise).
    """

    FAMILY: ClassVar[str] = "asset_transfer"
    SYSTEM: ClassVar[str] = "asset"

    event_name: AssetTransferName = Field(description="asset.transfer.{completed|failed}")
    asset_id: Id = Field(description="Asset id")
    bytes: ByteCount = Field(description="Bytes transferred")
    direction: Literal["upload", "download"] = Field(description="upload or download")
    duration_ms: DurationMs = Field(description="Transfer time")
    storage_type: Label = Field(description="Storage backend, e.g. s3, nfs")
    error_type: Label | None = Field(default=None, description="Error class; failed only")
    error_message: Text | None = Field(default=None, description="Error text; failed only")

    @model_validator(mode="after")
    def _failure_fields(self) -> AssetTransferEvent:
        failed = self.event_name == "asset.transfer.failed"
        require_iff(self.error_type is not None, failed, "error_type", "event_name is asset.transfer.failed")
        require_iff(self.error_message is not None, failed, "error_message", "event_name is asset.transfer.failed")
        return self

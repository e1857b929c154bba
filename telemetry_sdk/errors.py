"""Errors the SDK raises: an event refused at emit time, a backend that cannot be reached, a failed delivery.

Each message says what happened and what to do; the attributes carry the machine-readable parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from schemas import Invalid, InvalidEventError, Reason

if TYPE_CHECKING:
    from telemetry_sdk.events import Record


class TelemetryError(Exception):
    """Base class of the SDK's errors."""


class EventRefused(InvalidEventError, TelemetryError):
    """An event that would be invalid on the wire, refused before anything was sent.

    `reason` is the schemas.Reason code the pipeline's DLQ would have used, `field` the dotted field path.
    """

    def __init__(self, invalid: Invalid, event_name: str | None = None, hint: str = "") -> None:
        super().__init__(invalid)
        self.event_name = event_name
        self.hint = hint
        if event_name or hint:
            self.args = (f"{self.args[0]} (event {event_name!r}, topic {invalid.topic!r}){hint}",)

    @property
    def reason(self) -> Reason:
        return self.invalid.reason

    @property
    def field(self) -> str | None:
        return self.invalid.field


class BackendUnavailable(TelemetryError, ConnectionError):
    """The backend could not be reached when the SDK started (checked once, with a short timeout)."""

    def __init__(self, backend: str, url: str, env_var: str | None, detail: str, fix: str) -> None:
        source = f" ({env_var})" if env_var else ""
        super().__init__(f"{backend} backend: cannot reach {url}{source}: {detail}. {fix}")
        self.backend, self.url, self.env_var = backend, url, env_var


class DeliveryError(TelemetryError):
    """Records the backend did not accept. They are not retried: `failures` hands them back with the cause
    of each, so the caller can retry, persist or count them (nothing is dropped silently)."""

    def __init__(self, backend: str, failures: Sequence[tuple[Record, str]], detail: str = "") -> None:
        self.backend = backend
        self.failures = list(failures)
        first = self.failures[0][1] if self.failures else ""
        summary = f"{backend} backend: {len(self.failures)} record(s) not delivered"
        super().__init__(f"{summary}: {detail or first}")

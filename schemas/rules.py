"""Helpers for cross-field rules (`inconsistent`), shared by the family models.

Rules that depend on another field's value (event_name, status, event_type) all report `inconsistent`;
`missing_field` is kept for fields that are required unconditionally, so each code has one meaning.
"""

from __future__ import annotations

from pydantic_core import PydanticCustomError

from schemas.reasons import Reason


def inconsistent(field: str, message: str) -> PydanticCustomError:
    """An `inconsistent` error naming `field` (carried in the error context, read by the classifier)."""
    return PydanticCustomError(Reason.INCONSISTENT.value, "{field}: {detail}", {"field": field, "detail": message})


def require_iff(present: bool, required: bool, field: str, when: str) -> None:
    """Enforce "field present if and only if <when>"; `when` describes the condition for the message."""
    if required and not present:
        raise inconsistent(field, f"required when {when}")
    if present and not required:
        raise inconsistent(field, f"only allowed when {when}")

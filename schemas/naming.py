"""Event naming rules of seed 001: lowercase `system.component.action` with an optional fourth `.note` part.

Family-independent checks live here; whether a well-formed name belongs to a family is the family's own list.
"""

from __future__ import annotations

import re

from schemas.reasons import Reason

MAX_EVENT_NAME_LENGTH = 128

# Each segment starts with a letter so names stay valid identifiers in SQL, metrics labels and file paths.
SEGMENT = r"[a-z][a-z0-9_]*"
EVENT_NAME_RE = re.compile(rf"{SEGMENT}\.{SEGMENT}\.{SEGMENT}(?:\.{SEGMENT})?")

# The systems of seed 001 (xumi, pbac, asset, wkf, kuber) and seed 002's LLM requests.
SYSTEMS = frozenset({"xumi", "pbac", "asset", "wkf", "kuber", "llm"})


def is_well_formed(name: str) -> bool:
    """True if `name` follows the naming rules (whatever system or family it belongs to)."""
    return len(name) <= MAX_EVENT_NAME_LENGTH and EVENT_NAME_RE.fullmatch(name) is not None


def system_of(name: str) -> str:
    """The system prefix: the first segment."""
    return name.split(".", 1)[0]


def classify_name(value: object, system: str, allowed: frozenset[str]) -> tuple[Reason, str] | None:
    """Why `value` is not an event name of a family with this system and name set; None if it is one.

    bad_event_name means the name can never be valid (it breaks the rules); unknown_event_name means it is
    well-formed but not this family's (another system, or an action the family does not define).
    """
    # Type first: the value may be any JSON value, and lists/dicts are not hashable for the set lookup.
    if not isinstance(value, str):
        return Reason.WRONG_TYPE, f"event_name must be a string, got {type(value).__name__}"
    if value in allowed:
        return None
    if len(value) > MAX_EVENT_NAME_LENGTH:
        return Reason.FIELD_TOO_LONG, f"event_name is {len(value)} characters, max {MAX_EVENT_NAME_LENGTH}"
    if EVENT_NAME_RE.fullmatch(value) is None:
        return (
            Reason.BAD_EVENT_NAME,
            f"event_name {value!r} breaks the naming rules: lowercase system.component.action[.note], "
            "segments [a-z][a-z0-9_]*",
        )
    if system_of(value) != system:
        return (
            Reason.UNKNOWN_EVENT_NAME,
            f"event_name {value!r} is from system {system_of(value)!r}; this family's system is {system!r}",
        )
    return Reason.UNKNOWN_EVENT_NAME, f"event_name {value!r} is not one of {sorted(allowed)}"


def classify_open_name(value: str, reserved: dict[str, str]) -> tuple[Reason, str] | None:
    """Why `value` cannot name an event of an open family (one without a fixed list); None if it can.

    `reserved` maps the closed families' names to their family: those names mean one thing everywhere, so an
    open family may not reuse them (unknown_event_name; the event belongs on its own family's topic).
    """
    if len(value) > MAX_EVENT_NAME_LENGTH:
        return Reason.FIELD_TOO_LONG, f"event_name is {len(value)} characters, max {MAX_EVENT_NAME_LENGTH}"
    if EVENT_NAME_RE.fullmatch(value) is None:
        return (
            Reason.BAD_EVENT_NAME,
            f"event_name {value!r} breaks the naming rules: lowercase system.component.action[.note], "
            "segments [a-z][a-z0-9_]*",
        )
    if value in reserved:
        return (
            Reason.UNKNOWN_EVENT_NAME,
            f"event_name {value!r} is an event of family {reserved[value]!r}; send it to that family's topic",
        )
    return None

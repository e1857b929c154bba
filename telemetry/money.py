"""Exact credits and unit-seconds: read from an event's JSON text as decimals, carried as integer micro-units.

pydantic (like any JSON parser that yields doubles) reads 999999999999.123456 as 999999999999.1234: a double
holds 15 to 17 significant digits, and credits go up to 1e12 with six decimals. So the amounts usage sums are
taken from the record's own text, exactly, and carried as integers of 10^-6 (micro-units), which the job sums as
DECIMAL(38, 0) and writes as DECIMAL(38, 6); ClickHouse stores Decimal(38, 6). Sums are exact up to 10^32 - 10^-6.

The rule for producers: credits have at most six decimals (a micro-credit); finer ones are refused
(out_of_range), as a rounded charge is not the charge. Allocated unit-seconds (units x seconds) are computed
exactly from both texts and rounded half-even to six decimals.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Mapping

SCALE = 6
MICRO = 10**SCALE
# Enough digits for any product of two bounded amounts written with up to 40 significant digits each: no step
# of the arithmetic below rounds before the final rounding to micro-units.
_EXACT = Context(prec=100)
# A top-level number of a valid record: a JSON string cannot hold an unescaped quote, so `"credits":` followed by
# a number only occurs as a key of an object, and the only nested object of these events (labels) holds strings.
_NUMBER = re.compile(rb'"(units|seconds|credits)"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')


_CREDIT_FIELDS = ("units", "seconds", "credits")


class MoneyError(ValueError):
    """An amount the exact rules refuse; the message names the field, the value and the rule."""


def credit_amounts(raw: bytes, parsed: Mapping[str, Any]) -> dict[str, Decimal]:
    """units, seconds and credits of a valid credit event as exact decimals, from its JSON text.

    The validator's doubles (`parsed`) confirm what the quick scan found; a record whose text holds a key twice or
    spelt with escapes (JSON allows both) is read again whole, keys resolved as the validator resolves them (the
    last of a repeated key wins)."""
    found = {key.decode(): text for key, text in _NUMBER.findall(raw)}  # the last of a repeated key
    exact = {name: Decimal(text.decode()) for name, text in found.items()}
    if all(name in exact and float(exact[name]) == parsed[name] for name in _CREDIT_FIELDS):
        return exact
    whole = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    return {name: whole[name] for name in _CREDIT_FIELDS}


def to_micros(name: str, value: Decimal) -> int:
    """value in micro-units; MoneyError when it has more than six decimals."""
    micros = _EXACT.multiply(value, MICRO)
    if micros != micros.to_integral_value():
        raise MoneyError(f"{name}: {value} has more than {SCALE} decimals; amounts are exact to 0.000001")
    return int(micros)


def product_micros(a: Decimal, b: Decimal) -> int:
    """a x b in micro-units, rounded half-even."""
    try:
        return int(_EXACT.multiply(_EXACT.multiply(a, b), MICRO).quantize(Decimal(1), ROUND_HALF_EVEN, _EXACT))
    except InvalidOperation:
        raise MoneyError(f"{a} x {b} has more digits than an amount can hold") from None


def from_micros(micros: int) -> Decimal:
    """The decimal amount of an integer of micro-units (scale 6, as ClickHouse's Decimal(38, 6) returns it)."""
    return Decimal(micros).scaleb(-SCALE)


def exact(value: Any) -> Decimal:
    """A float, int, str or Decimal as the decimal its shortest text means (float 0.1 -> Decimal('0.1'))."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))

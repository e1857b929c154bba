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
# An amount has at most this many digits (more is no amount: refused), so with this precision no step of the
# arithmetic below rounds before the final rounding of a product to micro-units.
MAX_DIGITS = 40
_EXACT = Context(prec=2 * MAX_DIGITS + 10)
# A key of these fields and the value after it, here a JSON number (the record is valid JSON, so the characters up
# to the next delimiter are one number).
_AMOUNT = re.compile(rb'"(units|seconds|credits)"\s*:\s*([-+.0-9eE]+)')
_CREDIT_FIELDS = ("units", "seconds", "credits")
_ONE = Decimal(1)


class MoneyError(ValueError):
    """An amount the exact rules refuse; the message names the field, the value and the rule."""


def credit_amounts(raw: bytes, parsed: Mapping[str, Any]) -> dict[str, Decimal]:
    """units, seconds and credits of a valid credit event as exact decimals, from its JSON text.

    The quick path takes a record without a backslash whose text names each key once with a number after it: a
    JSON string holds no unescaped quote, so `"credits":` then occurs only as a key, and the one nested object of
    these events (labels) holds strings. A record that repeats a key or spells one with \\u escapes (JSON allows
    both) is read again whole, keys resolved as the validator resolves them (the last of a repeated key wins);
    `parsed` (the validator's doubles) checks it read the same."""
    if b"\\" not in raw:
        found = _AMOUNT.findall(raw)
        if len(found) == 3:
            exact = {key.decode(): Decimal(text.decode()) for key, text in found if len(text) <= MAX_DIGITS}
            if len(exact) == 3:
                return exact
    whole = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    exact = {name: whole[name] for name in _CREDIT_FIELDS}
    if any(float(exact[name]) != parsed[name] for name in _CREDIT_FIELDS):
        raise MoneyError(f"the record's amounts {exact} are not the ones validated; refusing to guess")
    return _bounded(exact)


def _bounded(amounts: dict[str, Decimal]) -> dict[str, Decimal]:
    """The amounts, unless one has more than MAX_DIGITS digits."""
    for name, value in amounts.items():
        if len(value.as_tuple().digits) > MAX_DIGITS:
            raise MoneyError(f"{name}: {value} has more than {MAX_DIGITS} digits; no amount needs them")
    return amounts


def to_micros(name: str, value: Decimal) -> int:
    """value in micro-units; MoneyError when it has more than six decimals."""
    micros = value.scaleb(SCALE, _EXACT)
    if micros != micros.to_integral_value(context=_EXACT):
        raise MoneyError(f"{name}: {value} has more than {SCALE} decimals; amounts are exact to 0.000001")
    return int(micros)


def product_micros(a: Decimal, b: Decimal) -> int:
    """a x b in micro-units, rounded half-even."""
    try:
        return int(_EXACT.multiply(a, b).scaleb(SCALE, _EXACT).quantize(_ONE, ROUND_HALF_EVEN, _EXACT))
    except InvalidOperation:
        raise MoneyError(f"{a} x {b} has more digits than an amount can hold") from None


def from_micros(micros: int) -> Decimal:
    """The decimal amount of an integer of micro-units (scale 6, as ClickHouse's Decimal(38, 6) returns it)."""
    return Decimal(micros).scaleb(-SCALE)


def exact(value: Any) -> Decimal:
    """A float, int, str or Decimal as the decimal its shortest text means (float 0.1 -> Decimal('0.1'))."""
    return value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))

"""Exact money in the job's hop (pipeline.money through pipeline.routing): credits and unit-seconds read from the
record's JSON text as decimals, carried as integer micro-units, whatever digits, spelling or key order the text
has; amounts finer than a micro-credit are refused with a reason. Generated input, seeded."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from schemas.examples import example
from pipeline import money, routing

MICRO = Decimal("0.000001")
FIELDS = {name: i for i, name in enumerate(routing.ROW_NAMES)}


def credit_record(credits: str, units: str = "2.0", seconds: str = "30.5", topic: str = "kuber_gpu") -> bytes:
    """A valid credit event whose amounts have exactly the given JSON texts."""
    event = {**example(topic), "units": 0, "seconds": 0, "credits": 0}
    text = json.dumps(event, separators=(",", ":"))
    for name, value in (("units", units), ("seconds", seconds), ("credits", credits)):
        text = text.replace(f'"{name}":0', f'"{name}":{value}', 1)
    return text.encode()


def amounts(raw: bytes, topic: str = "kuber_gpu") -> dict[str, int | None]:
    row = routing.route(topic, raw)
    assert not isinstance(row, routing.Rejected), row
    return {m: row[FIELDS[m]] for m in routing.MONEY_METRICS}


def test_credits_a_double_cannot_hold_are_carried_exactly() -> None:
    got = amounts(credit_record("999999999999.123456"))
    assert got["kuber_credits"] == got["credits"] == 999_999_999_999_123_456
    assert got["kuber_gpu_seconds"] == 61_000_000  # 2.0 x 30.5
    assert got["wkf_credits"] is None and got["kuber_cpu_seconds"] is None  # what the event does not carry
    assert Decimal(float("999999999999.123456")) != Decimal("999999999999.123456")  # a double would have lost it


def test_generated_amounts_in_every_spelling_sum_exactly() -> None:
    """Seeded amounts up to the contract's 1e12 with up to six decimals, written plain, with an exponent or as an
    integer: each record's micro-units are its decimal exactly, so any total is exact where doubles drift."""
    rng = random.Random(14)
    total, doubles = Decimal(0), 0.0
    micros_total = 0
    for _ in range(2_000):
        micros = rng.choice([rng.randrange(10**18 + 1), rng.randrange(10**9), 10**18, 0, 1])
        value = Decimal(micros) * MICRO
        spelling = rng.randrange(3)
        text = format(value, "f") if spelling == 0 else (
            f"{value.normalize():E}".replace("E+0", "") if spelling == 1 else format(value.normalize(), "f"))
        got = amounts(credit_record(text))
        assert got["credits"] == micros, text
        total += value
        doubles += float(text)
        micros_total += got["credits"]
    assert money.from_micros(micros_total) == total
    assert Decimal(repr(doubles)) != total  # what Float64 sums gave


def test_unit_seconds_are_exact_products_rounded_half_even() -> None:
    assert amounts(credit_record("1", units="1024", seconds="2678400"))["kuber_gpu_seconds"] == 1024 * 2678400 * 10**6
    assert amounts(credit_record("1", units="0.001", seconds="0.0005"))["kuber_gpu_seconds"] == 0  # 0.5 micro: even
    assert amounts(credit_record("1", units="0.003", seconds="0.0005"))["kuber_gpu_seconds"] == 2  # 1.5 micro: even
    assert amounts(credit_record("1", units="3", seconds="0.1"))["kuber_gpu_seconds"] == 300_000  # 0.1 as written


def test_a_repeated_or_escaped_key_reads_as_the_validator_reads_it() -> None:
    raw = credit_record("5.5")
    repeated = raw[:-1] + b',"credits":999999999999.000001}'  # JSON parsers take the last
    assert amounts(repeated)["credits"] == 999_999_999_999_000_001
    escaped = raw.replace(b'"credits":5.5', b'"cr\\u0065dits":123456789012.123456')
    assert amounts(escaped)["credits"] == 123_456_789_012_123_456
    # a label may be called credits: its value is text, never the amount
    labelled = raw.replace(b'"labels":{', b'"labels":{"credits":"7",', 1)
    assert amounts(labelled)["credits"] == 5_500_000


@pytest.mark.parametrize("text, rule", [("0.1234567", "more than 6 decimals"),
                                        ("123456789012.1234567", "more than 6 decimals"),
                                        ("1e-7", "more than 6 decimals"), ("0.0000001", "more than 6 decimals"),
                                        ("1." + "0" * 45 + "1", "more than 40 digits")])
def test_amounts_finer_than_a_micro_credit_are_refused_with_a_reason(text: str, rule: str) -> None:
    rejected = routing.route("kuber_gpu", credit_record(text))
    assert isinstance(rejected, routing.Rejected), rejected
    assert rejected.reason == "out_of_range" and rule in rejected.message and "credits" in rejected.message


def test_hostile_numbers_never_raise() -> None:
    """Generated number texts (huge, tiny, negative, long, exponent forms): route gives a row whose credits are the
    text's exact micro-units, or a rejection with a reason; it never raises."""
    rng = random.Random(7)
    digits = "0123456789"
    for _ in range(3_000):
        whole = "".join(rng.choice(digits) for _ in range(rng.randrange(1, 25))).lstrip("0") or "0"
        frac = "".join(rng.choice(digits) for _ in range(rng.randrange(0, 30)))
        text = rng.choice(["", "-"]) + whole + (f".{frac}" if frac else "") + rng.choice(
            ["", "", f"e{rng.randrange(-40, 40)}", f"E+{rng.randrange(0, 5)}"])
        result = routing.route("wkf_cpu", credit_record(text, topic="wkf_cpu"))
        if isinstance(result, routing.Rejected):
            assert result.reason in ("out_of_range", "wrong_type"), (text, result)
            continue
        value = Decimal(text)
        assert 0 <= value <= Decimal("1e12")
        assert result[FIELDS["credits"]] == value / MICRO, text

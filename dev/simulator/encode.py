"""Event encoding: canonical JSON (schemas.to_json's bytes) from a plain field dict, without a model instance.

A family model defines the fields and their order; pydantic-core serialises the dict. Check mode
(`Simulation(check=True)`, `--check-events`) builds the model for every event and requires identical bytes.
A Decimal field (credits) is written as the exact JSON number it is: as the double's shortest text where that is
the same number (so the bytes are the model's), else its plain decimal text, which no double can hold.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic_core

from schemas import to_json
from schemas.envelope import Envelope
from schemas.types import format_ts, parse_ts

_REQUIRED = object()  # placeholder; a required field left unset fails the model check, never silently


class Codec:
    """Encodes one family: the model's fields in declaration order, defaults for the optional ones."""

    __slots__ = ("model", "_template")

    def __init__(self, model: type[Envelope]) -> None:
        self.model = model
        template: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            template[name] = _REQUIRED if info.is_required() else info.get_default(call_default_factory=True)
        self._template = template

    def encode(self, fields: dict[str, Any]) -> bytes:
        # {**template, **fields} keeps the template's key order: the model's order, as model_dump_json has it.
        exact = {k: number_text(v) for k, v in fields.items() if isinstance(v, Decimal)}
        if not exact:
            return pydantic_core.to_json({**self._template, **fields})
        raw = pydantic_core.to_json({**self._template, **fields, **exact})
        for name, text in exact.items():  # a JSON string of digits cannot occur inside another string
            raw = raw.replace(f'"{name}":"{text}"'.encode(), f'"{name}":{text}'.encode(), 1)
        return raw

    def check(self, fields: dict[str, Any], raw: bytes) -> None:
        """Raise if `raw` is not exactly what the model would produce for `fields` (or fields are invalid); a
        Decimal no double holds is compared as the double the model keeps."""
        expected = to_json(self.model(**fields))
        beyond = {k: float(v) for k, v in fields.items() if isinstance(v, Decimal) and Decimal(repr(float(v))) != v}
        # (repr and pydantic's text of a double differ in form, 1e-05 / 1e-5, never in the number they name)
        if beyond:
            raw = self.encode({**fields, **beyond})
        if expected != raw:
            raise AssertionError(f"{self.model.__name__}: fast encoding differs from the model's:\n"
                                 f"{raw!r}\n{expected!r}")


def number_text(value: Decimal) -> str:
    """The JSON number of a decimal: the double's shortest text when that is the same number, else plain digits."""
    as_double = pydantic_core.to_json(float(value)).decode()  # how the model writes the double
    return as_double if Decimal(as_double) == value else format(value, "f")


_CODECS: dict[type, Codec] = {}


def codec(model: type[Envelope]) -> Codec:
    c = _CODECS.get(model)
    if c is None:
        c = _CODECS[model] = Codec(model)
    return c


class TsFormatter:
    """Epoch ms -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (schemas.format_ts's form), caching the per-second prefix."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        sec, milli = divmod(ms, 1000)
        prefix = self._cache.get(sec)
        if prefix is None:
            if len(self._cache) > 4096:  # event time moves forward: old seconds are not needed again
                self._cache.clear()
            prefix = self._cache[sec] = format_ts(parse_ts(sec * 1000))[:19]
        return f"{prefix}.{milli:03d}Z"

"""Event encoding: canonical JSON (schemas.to_json's bytes) from a plain field dict, without a model instance.

A family model defines the fields and their order; pydantic-core serialises the dict. Check mode
(`Simulation(check=True)`, `--check-events`) builds the model for every event and requires identical bytes.
"""

from __future__ import annotations

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
        return pydantic_core.to_json({**self._template, **fields})

    def check(self, fields: dict[str, Any], raw: bytes) -> None:
        """Raise if `raw` is not exactly what the model would produce for `fields` (or fields are invalid)."""
        expected = to_json(self.model(**fields))
        if expected != raw:
            raise AssertionError(f"{self.model.__name__}: fast encoding differs from the model's:\n"
                                 f"{raw!r}\n{expected!r}")


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

"""kafka-rest backend: the Kafka REST proxy's v2 API on KAFKA_PROXY_URL (Confluent kafka-rest; Strimzi's
kafka-bridge speaks the same produce call): `POST /topics/{topic}` with application/vnd.kafka.json.v2+json.

Per-record failures (`offsets[i].error`) and HTTP errors are raised as DeliveryError with the records.
The v2 API sets no record timestamp, so the broker stamps the proxy's send time, not the event's ts.
"""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any, Sequence
from urllib.parse import quote

import aiohttp
import requests

from telemetry_sdk.errors import BackendUnavailable, DeliveryError
from telemetry_sdk.events import Record

CONTENT_TYPE = "application/vnd.kafka.json.v2+json"
ACCEPT = "application/vnd.kafka.v2+json, application/json"
ENV_VAR = "KAFKA_PROXY_URL"
FIX = (f"Check that the REST proxy (Confluent kafka-rest or Strimzi kafka-bridge) runs there, or set {ENV_VAR} to "
       "its base URL, e.g. http://127.0.0.1:8082")
READ_TIMEOUT_S = 30.0  # the proxy answers a produce only after the broker acknowledged it


def body(records: Sequence[Record]) -> bytes:
    """The v2 produce body. The event's canonical JSON is embedded as the value without re-encoding it; the
    JSON embedded format makes the proxy store the key JSON-encoded too (a quoted string)."""
    items = (b'{"key":' + json.dumps(r.key).encode() + b',"value":' + r.value + b"}" for r in records)
    return b'{"records":[' + b",".join(items) + b"]}"


def by_topic(records: Sequence[Record]) -> list[tuple[str, list[Record]]]:
    """Records grouped per topic, in order (one POST per topic and batch)."""
    ordered = sorted(records, key=lambda r: r.topic)  # stable: each topic keeps its records' order
    return [(topic, list(group)) for topic, group in groupby(ordered, key=lambda r: r.topic)]


def failures(records: Sequence[Record], status: int, text: str) -> list[tuple[Record, str]]:
    """Which records a produce response rejected, with why ([] when all were accepted)."""
    try:
        answer: Any = json.loads(text) if text else {}
    except ValueError:
        answer = {}
    if not 200 <= status < 300:
        detail = answer.get("message") if isinstance(answer, dict) else None
        code = answer.get("error_code") if isinstance(answer, dict) else None
        why = f"HTTP {status}" + (f" error_code {code}" if code else "") + f": {detail or text[:200]}"
        return [(r, why) for r in records]
    offsets = answer.get("offsets") if isinstance(answer, dict) else None
    if not isinstance(offsets, list) or len(offsets) != len(records):
        return [(r, f"the proxy answered {text[:200]!r} for {len(records)} records") for r in records]
    out = []
    for record, offset in zip(records, offsets):
        if isinstance(offset, dict) and (offset.get("error") or offset.get("error_code")):
            out.append((record, f"error_code {offset.get('error_code')}: {offset.get('error')}"))
    return out


def _topic_url(base: str, topic: str) -> str:
    return f"{base}/topics/{quote(topic, safe='')}"


def _require_url(url: str | None) -> str:
    if not url:
        raise BackendUnavailable("kafka-rest", "(no URL)", ENV_VAR, f"{ENV_VAR} is not set", FIX)
    return url.rstrip("/")


class KafkaRestBackend:
    """Blocking variant (requests); each write is one POST per topic, synchronous with the broker's ack."""

    name = "kafka-rest"

    def __init__(self, url: str | None, *, timeout_s: float = 5.0, from_env: bool = True) -> None:
        self.url = _require_url(url)
        self._env_var = ENV_VAR if from_env else None
        self._timeout = (timeout_s, READ_TIMEOUT_S)
        self._session = requests.Session()
        try:
            # GET /topics: both proxies serve it; a connect error or a non-2xx means no usable proxy there.
            answer = self._session.get(f"{self.url}/topics", timeout=(timeout_s, timeout_s),
                                       headers={"Accept": ACCEPT})
        except requests.RequestException as exc:
            self._session.close()
            raise BackendUnavailable(self.name, self.url, self._env_var, _short(exc), FIX) from None
        if not answer.ok:
            self._session.close()
            raise BackendUnavailable(self.name, self.url, self._env_var,
                                     f"GET /topics answered HTTP {answer.status_code}, not a Kafka REST proxy?", FIX)

    def write(self, records: Sequence[Record]) -> None:
        failed: list[tuple[Record, str]] = []
        for topic, group in by_topic(records):
            try:
                answer = self._session.post(
                    _topic_url(self.url, topic), data=body(group), timeout=self._timeout,
                    headers={"Content-Type": CONTENT_TYPE, "Accept": ACCEPT},
                )
            except requests.RequestException as exc:
                failed += [(r, f"POST {self.url}/topics/{topic}: {_short(exc)}") for r in group]
                continue
            failed += failures(group, answer.status_code, answer.text)
        if failed:
            raise DeliveryError(self.name, failed)

    def flush(self) -> None:
        """Nothing pending: each write waited for the proxy's answer."""

    def close(self) -> None:
        self._session.close()


class AsyncKafkaRestBackend:
    """asyncio variant (aiohttp): `await open()` checks the proxy, then writes as KafkaRestBackend does."""

    name = "kafka-rest"

    def __init__(self, url: str | None, *, timeout_s: float = 5.0, from_env: bool = True) -> None:
        self.url = _require_url(url)
        self._env_var = ENV_VAR if from_env else None
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout_s, sock_read=READ_TIMEOUT_S)
        session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with session.get(f"{self.url}/topics", headers={"Accept": ACCEPT},
                                   timeout=aiohttp.ClientTimeout(total=self._timeout_s)) as answer:
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            await session.close()
            raise BackendUnavailable(self.name, self.url, self._env_var, _short(exc), FIX) from None
        if not 200 <= status < 300:
            await session.close()
            raise BackendUnavailable(self.name, self.url, self._env_var,
                                     f"GET /topics answered HTTP {status}, not a Kafka REST proxy?", FIX)
        self._session = session

    async def write(self, records: Sequence[Record]) -> None:
        if self._session is None:
            raise RuntimeError("AsyncKafkaRestBackend.open() was not awaited")
        failed: list[tuple[Record, str]] = []
        for topic, group in by_topic(records):
            try:
                async with self._session.post(
                    _topic_url(self.url, topic), data=body(group),
                    headers={"Content-Type": CONTENT_TYPE, "Accept": ACCEPT},
                ) as answer:
                    failed += failures(group, answer.status, await answer.text())
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed += [(r, f"POST {self.url}/topics/{topic}: {_short(exc)}") for r in group]
        if failed:
            raise DeliveryError(self.name, failed)

    async def flush(self) -> None:
        """Nothing pending: each write waited for the proxy's answer."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _short(exc: BaseException) -> str:
    """The root cause of a client exception, without requests' nested reprs."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."

"""A stand-in for the Kafka REST proxy's produce API, for tests only: no REST proxy can run here (Confluent's
kafka-rest is not on Maven Central; Strimzi's kafka-bridge artifacts do not resolve from it either).

It serves what the SDK's kafka-rest backend uses, as Confluent's v2 API documents it: `GET /topics` and
`POST /topics/{topic}` (application/vnd.kafka.json.v2+json, {"records": [{"key", "value"}]}) answering
{"offsets": [{"partition", "offset", "error_code", "error"}]}; 404 / error_code 40401 for an unknown topic,
415 for another content type. Records go into a real Kafka broker (KafkaSink) or a list (MemorySink).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

from confluent_kafka import Producer

CONTENT_TYPE = "application/vnd.kafka.json.v2+json"


class Sink(Protocol):
    def topics(self) -> list[str]: ...

    def produce(self, topic: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


@dataclass
class MemorySink:
    """Keeps records per topic. Records whose key is in fail_keys get a per-record error, as a broker's
    refusal of one record would (an injected failure: the real causes, e.g. a record over the topic's
    max.message.bytes, cannot come from the SDK, which refuses such events itself)."""

    known_topics: list[str]
    fail_keys: set[str] = field(default_factory=set)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def topics(self) -> list[str]:
        return list(self.known_topics)

    def produce(self, topic: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for record in records:
            if record.get("key") in self.fail_keys:
                out.append({"partition": None, "offset": None, "error_code": 50002,
                            "error": "injected: record rejected by the broker"})
                continue
            stored = self.received.setdefault(topic, [])
            stored.append(record)
            out.append({"partition": 0, "offset": len(stored) - 1, "error_code": None, "error": None})
        return out


class KafkaSink:
    """Forwards into a real broker; the JSON embedded format stores key and value JSON-encoded."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        self._lock = threading.Lock()

    def topics(self) -> list[str]:
        return sorted(self._producer.list_topics(timeout=10).topics)

    def produce(self, topic: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in records]

        def report(i: int, err: Any, msg: Any) -> None:
            if err is None:
                results[i] = {"partition": msg.partition(), "offset": msg.offset(), "error_code": None, "error": None}
            else:
                results[i] = {"partition": None, "offset": None, "error_code": 50003, "error": err.str()}

        with self._lock:
            for i, record in enumerate(records):
                key = None if record.get("key") is None else json.dumps(record["key"]).encode()
                self._producer.produce(topic, value=json.dumps(record["value"]).encode(), key=key,
                                       on_delivery=lambda err, msg, i=i: report(i, err, msg))
            self._producer.flush(30)
        return results

    def close(self) -> None:
        self._producer.flush(30)
        self._producer.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.kafka.v2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/topics":
            self._answer(200, self.server.sink.topics())
        else:
            self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.requests.append((self.path, self.headers.get("Content-Type"), raw))
        if not self.path.startswith("/topics/"):
            return self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        if self.headers.get("Content-Type") != CONTENT_TYPE:
            return self._answer(415, {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"})
        topic = unquote(self.path[len("/topics/"):])
        if topic not in self.server.sink.topics():
            return self._answer(404, {"error_code": 40401, "message": "Topic not found."})
        try:
            records = json.loads(raw)["records"]
        except (ValueError, KeyError, TypeError):
            return self._answer(422, {"error_code": 42201, "message": "Unprocessable entity"})
        offsets = self.server.sink.produce(topic, records)
        self._answer(200, {"key_schema_id": None, "value_schema_id": None, "offsets": offsets})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: Sink) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sink = sink
        self.requests: list[tuple[str, str | None, bytes]] = []


class RestProxyStandIn:
    """Runs the stand-in on a free loopback port in a thread; `url` is its base URL."""

    def __init__(self, sink: Sink) -> None:
        self.server = _Server(sink)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[tuple[str, str | None, bytes]]:
        return self.server.requests

    def __enter__(self) -> RestProxyStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

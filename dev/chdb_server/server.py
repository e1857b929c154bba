"""The HTTP side of the dev server: a threading HTTP/1.1 server whose handler reads a request off the wire,
hands it to the engine through protocol.py and writes back what ClickHouse would.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from dev.chdb_server import protocol
from dev.chdb_server.engine import Engine
from dev.chdb_server.users import AccessError, User, authenticate, check_statement, credentials

log = logging.getLogger("dev.chdb_server")


class DevServer(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine  # set once the port is bound, so a taken port fails before the data directory is opened
    users: dict[str, User]


class Handler(BaseHTTPRequestHandler):
    server: DevServer
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    server_version = "ClickHouse-dev"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and not url.query):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
        elif url.path == "/":
            self._query("GET", url.query, b"")
        else:
            self._reply(404, b"There is no handle " + url.path.encode() + b"\n", {"Content-Type": "text/plain; charset=UTF-8"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path != "/":
            self._reply(404, b"There is no handle " + url.path.encode() + b"\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        self._query("POST", url.query, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # clickhouse-connect streams inserts from a generator, which urllib3 sends chunked
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _query(self, method: str, query_string: str, body: bytes) -> None:
        started = time.perf_counter()
        engine = self.server.engine
        headers = {name.lower(): value for name, value in self.headers.items()}
        query_id = ""
        try:
            try:
                user = authenticate(self.server.users, *credentials(headers, query_string))
            except AccessError as exc:
                raise protocol.ClickHouseError(exc.code, exc.message) from None
            request = protocol.parse_request(method, query_string, headers, body)
            query_id = request.query_id
            statement = protocol.parse_statement(request)
            try:
                check_statement(user, statement.keyword, statement.sql.decode("utf-8", errors="replace"))
            except AccessError as exc:
                raise protocol.ClickHouseError(exc.code, exc.message) from None
            outcome = engine.execute(request, statement, reader=user.readonly)
        except protocol.ClickHouseError as exc:
            self._error(method, started, query_id, exc)
            return
        except Exception as exc:
            log.exception("unexpected error serving a query")
            self._error(method, started, query_id, protocol.ClickHouseError(protocol.STD_EXCEPTION, f"{type(exc).__name__}: {exc}"))
            return
        headers_out = {
            "Content-Type": protocol.content_type(outcome.result_format or "TabSeparated"),
            "X-ClickHouse-Query-Id": request.query_id,
            "X-ClickHouse-Timezone": outcome.timezone,
            "X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":")),
            "X-ClickHouse-Server-Display-Name": socket.gethostname(),
        }
        if outcome.result_format is not None:
            headers_out["X-ClickHouse-Format"] = outcome.result_format
        self._reply(200, outcome.body, headers_out)
        if log.isEnabledFor(logging.DEBUG):
            head = statement.sql[:120].decode("utf-8", errors="replace").replace("\n", " ")
            log.debug(
                "%s 200 %.1fms in=%dB out=%dB %s", method, (time.perf_counter() - started) * 1e3, len(request.payload), len(outcome.body), head
            )

    def _error(self, method: str, started: float, query_id: str, exc: protocol.ClickHouseError) -> None:
        engine = self.server.engine
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(exc.code),
            "X-ClickHouse-Timezone": engine.timezone,
        }
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        self._reply(exc.http_status, exc.body(engine.version), headers)
        log.debug("%s %d %.1fms code %d: %s", method, exc.http_status, (time.perf_counter() - started) * 1e3, exc.code, exc.message[:200])

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by _query with their timing; the stdlib's access line would repeat it."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's signature)
        log.debug("%s: " + format, self.address_string(), *args)


def bind(host: str, port: int) -> DevServer:
    """Bind the listening socket; raises OSError (EADDRINUSE) when the port is taken."""
    return DevServer((host, port), Handler)

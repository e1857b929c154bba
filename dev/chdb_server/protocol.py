"""ClickHouse's HTTP interface, translated: request -> (statement, settings, parameters), errors -> ClickHouse's form.

No engine and no sockets here: the server feeds in what it read off the wire and sends back what this returns.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import re
import uuid
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import lz4.frame

from telemetry import sqltext

try:  # Python 3.14+ has zstd in the standard library; clickhouse-connect brings the backport before that
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

# Error codes as ClickHouse numbers them (checked against chdb's system.errors), and the HTTP status
# ClickHouse's exceptionCodeToHTTPStatus gives each; anything else is a 500.
SYNTAX_ERROR = 62
NOT_IMPLEMENTED = 48
UNKNOWN_SETTING = 115
READONLY = 164
UNKNOWN_COMPRESSION_METHOD = 89
CANNOT_DECOMPRESS = 271
STD_EXCEPTION = 1001
_STATUS_BY_CODE: dict[int, int] = {
    194: 401,  # REQUIRED_PASSWORD
    **dict.fromkeys((192, 193, 516, 512, 497), 403),  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, ...
    **dict.fromkeys(
        # BAD_ARGUMENTS, CANNOT_PARSE_*, DUPLICATE_COLUMN, ILLEGAL_COLUMN, THERE_IS_NO_COLUMN, *_AST,
        # SYNTAX_ERROR, INCORRECT_DATA, TYPE_MISMATCH, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, ...
        (36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167, 168, 223, 62, 117, 53, 321),
        400,
    ),
    **dict.fromkeys(
        # UNKNOWN_TABLE, _FUNCTION, _IDENTIFIER, _TYPE, _STORAGE, _DATABASE, _SETTING, ..., _FORMAT, _ROLE
        (60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511),
        404,
    ),
    229: 413,  # QUERY_IS_TOO_LARGE
    48: 501,  # NOT_IMPLEMENTED
    209: 503,  # SOCKET_TIMEOUT
    76: 503,  # CANNOT_OPEN_FILE
    381: 411,  # HTTP_LENGTH_REQUIRED
    159: 408,  # TIMEOUT_EXCEEDED
    439: 503,  # CANNOT_SCHEDULE_TASK
    779: 415,  # UNSUPPORTED_MEDIA_TYPE
}

# URL parameters the HTTP layer consumes itself (ClickHouse's HTTPHandler reserves these names); all other
# parameters are settings of the query. The transport-only settings clickhouse-connect sends to shape the
# HTTP exchange are dropped: this server neither streams progress headers nor compresses responses.
_RESERVED_PARAMS = frozenset(
    {
        "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
        "close_session", "user", "password", "quota_key", "stacktrace", "buffer_size", "wait_end_of_query",
        "role", "client_protocol_version", "compress", "decompress", "readonly",
    }
)  # fmt: skip
_TRANSPORT_SETTINGS = frozenset(
    {
        "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
        "http_zlib_compression_level", "cancel_http_readonly_queries_on_client_close",
        "http_native_compression_disable_checksumming_on_decompress", "http_response_buffer_size",
        "http_wait_end_of_query", "add_http_cors_header", "http_write_exception_in_output_format",
    }
)  # fmt: skip
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE = re.compile(r"Code: (\d+)\.")


class ClickHouseError(Exception):
    """An error with a ClickHouse exception code; its message is the text after `DB::Exception: `."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Wrap what chdb raised; its text already reads `Code: N. DB::Exception: ...`."""
        text = str(exc)
        start = text.find("Code: ")
        if start >= 0:
            text = text[start:]
        match = _CODE.match(text)
        if not match:
            return cls(STD_EXCEPTION, text.strip())
        return cls(int(match.group(1)), text.split("DB::Exception: ", 1)[-1].strip())

    @property
    def http_status(self) -> int:
        return _STATUS_BY_CODE.get(self.code, 500)

    def body(self, version: str) -> bytes:
        return f"Code: {self.code}. DB::Exception: {self.message} (version {version})\n".encode()


@dataclass(frozen=True)
class QueryRequest:
    """One HTTP request as the engine needs it."""

    payload: bytes  # the query text, followed by the insert data when there is some
    database: str
    query_id: str
    default_format: str
    readonly: bool
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    """The one statement a request carries, classified."""

    keyword: str
    sql: bytes  # for an insert with data, only the head before FORMAT
    insert_format: str | None = None
    insert_data: bytes = b""
    output_format: str | None = None

    @property
    def has_result(self) -> bool:
        return self.keyword in sqltext.RESULT_KEYWORDS


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo the request's Content-Encoding; clickhouse-connect compresses each insert block separately,
    so lz4 and zstd bodies are several concatenated frames."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    try:
        if enc == "gzip":
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
        if enc == "zstd":
            return bytes(zstd.decompress(body))
        if enc == "lz4":
            out = []
            rest = body
            while rest:
                frame = lz4.frame.LZ4FrameDecompressor()
                out.append(frame.decompress(rest))
                if not frame.eof:
                    raise ValueError("truncated lz4 frame")
                rest = frame.unused_data
            return b"".join(out)
    except (OSError, EOFError, ValueError, RuntimeError, zlib.error, zstd.ZstdError) as exc:
        raise ClickHouseError(CANNOT_DECOMPRESS, f"Cannot decompress the {enc} request body: {exc}") from exc
    raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, f"Unknown HTTP Content-Encoding {encoding!r} (dev server: gzip, deflate, zstd, lz4)")


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """multipart/form-data fields: clickhouse-connect moves the query and long parameters there."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_filename():
            raise ClickHouseError(NOT_IMPLEMENTED, "External data (file parts in a form) is not supported by the dev server")
        payload = part.get_payload(decode=True) or b""
        fields[part.get_param("name", header="content-disposition") or ""] = payload.decode()
    return fields


def parse_request(method: str, query_string: str, headers: dict[str, str], body: bytes) -> QueryRequest:
    """Build the engine's view of a request (headers keyed lower-case); raises ClickHouseError for what
    ClickHouse would refuse before running anything."""
    url_params = dict(parse_qsl(query_string, keep_blank_values=True))
    content_type = headers.get("content-type", "")
    if method == "GET":
        body = b""
    if content_type.startswith("multipart/form-data"):
        url_params.update(_form_fields(content_type, body))
        body = b""
    else:
        body = decompress(body, headers.get("content-encoding"))
    if url_params.get("compress") == "1" or url_params.get("decompress") == "1":
        raise ClickHouseError(
            NOT_IMPLEMENTED, "ClickHouse's native compression (compress=1 / decompress=1) is not supported by the dev server; use HTTP compression"
        )
    query = url_params.get("query", "")
    payload = (query.encode() + b"\n" + body) if query else body
    settings: dict[str, str] = {}
    params: dict[str, str] = {}
    for name, value in url_params.items():
        if name.startswith("param_"):
            params[name[len("param_") :]] = value
        elif name in _RESERVED_PARAMS or name in _TRANSPORT_SETTINGS:
            continue
        elif not _SETTING_NAME.fullmatch(name):
            raise ClickHouseError(UNKNOWN_SETTING, f"Unknown setting '{name}'")
        else:
            settings[name] = value
    return QueryRequest(
        payload=payload,
        database=url_params.get("database") or "default",
        query_id=url_params.get("query_id") or str(uuid.uuid4()),
        default_format=url_params.get("default_format") or "TabSeparated",
        readonly=method == "GET" or url_params.get("readonly", "0") not in ("", "0"),
        settings=settings,
        params=params,
    )


def parse_statement(request: QueryRequest) -> Statement:
    """Classify the request's statement and refuse what ClickHouse (or this server, which shares one engine
    session between all clients) would not run."""
    insert = sqltext.insert_with_data(request.payload)
    text = request.payload[: insert.head_end if insert else None].decode("utf-8", errors="replace")
    keyword = sqltext.leading_keyword(text)
    if not keyword:
        raise ClickHouseError(SYNTAX_ERROR, "Empty query")
    if request.readonly and keyword not in sqltext.READONLY_KEYWORDS:
        raise ClickHouseError(
            READONLY,
            "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
            "You should use method POST for modifying queries",
        )
    if insert is not None:
        return Statement(
            keyword=keyword,
            sql=request.payload[: insert.head_end],
            insert_format=insert.fmt,
            insert_data=request.payload[insert.data_start :],
        )
    # INSERT ... VALUES can be megabytes of literals: not worth lexing for a second statement.
    if keyword != "INSERT" and len(sqltext.split_statements(text)) > 1:
        raise ClickHouseError(SYNTAX_ERROR, "Syntax error (Multi-statements are not allowed)")
    if keyword in ("SET", "USE"):
        raise ClickHouseError(
            NOT_IMPLEMENTED,
            f"{keyword} statements are refused by the dev server: its one engine session is shared by every client. "
            "Pass settings and the database per query (URL parameters, e.g. clickhouse-connect's settings=/database=)",
        )
    fmt = sqltext.output_format(text) if keyword in sqltext.RESULT_KEYWORDS else None
    return Statement(keyword=keyword, sql=request.payload, output_format=fmt)


_CONTENT_TYPES = (
    ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
    ("TSV", "text/tab-separated-values; charset=UTF-8"),
    ("CSV", "text/csv; charset=UTF-8; header=absent"),
    ("JSON", "application/json; charset=UTF-8"),
    ("Native", "application/octet-stream"),
    ("RowBinary", "application/octet-stream"),
    ("Arrow", "application/octet-stream"),
    ("Parquet", "application/octet-stream"),
)


def content_type(fmt: str) -> str:
    for prefix, ctype in _CONTENT_TYPES:
        if fmt.startswith(prefix):
            return ctype
    return "text/plain; charset=UTF-8"

"""The dev ClickHouse server, driven by clickhouse-connect itself over HTTP, as production code drives a real server."""

from __future__ import annotations

import base64
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.summary import QuerySummary

from telemetry.settings import REPO_ROOT
from dev.chdb_server.users import DENIED_CALLS, reader_profile, write_users
from tests.conftest import DevClickHouse, with_login


def connect(url: str, **kwargs: object) -> Client:
    return clickhouse_connect.get_client(dsn=url, **kwargs)


@pytest.fixture
def database(clickhouse_server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect(clickhouse_server)
    admin.command(f"CREATE DATABASE {name}")
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


@pytest.fixture
def client(clickhouse_server: str, database: str) -> Iterator[Client]:
    c = connect(clickhouse_server, database=database)
    yield c
    c.close()


def http(url: str, query: str, *, method: str = "POST", headers: dict[str, str] | None = None,
         **params: str) -> tuple[int, dict[str, str], bytes]:
    """A bare HTTP exchange, for what clickhouse-connect hides (status, headers, GET); a user:password@ in url
    goes as basic auth."""
    parts = urlsplit(url)
    headers = dict(headers or {})
    if parts.username is not None:
        login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    url = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    if method == "GET":
        request = urllib.request.Request(f"{url}/?{urllib.parse.urlencode({'query': query, **params})}", headers=headers)
    else:
        request = urllib.request.Request(f"{url}/?{urllib.parse.urlencode(params)}", data=query.encode(), method="POST",
                                         headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_ping_and_opening_handshake(clickhouse_dev: DevClickHouse, clickhouse_server: str) -> None:
    with urllib.request.urlopen(f"{clickhouse_dev.url}/ping", timeout=10) as response:  # no login, as ClickHouse
        assert response.read() == b"Ok.\n"
    c = connect(clickhouse_server)
    assert c.ping()
    # The client opened with SELECT version(), timezone() in TabSeparated and read system.settings in Native
    assert c.server_version == c.command("SELECT version()")


def test_ddl(client: Client, database: str) -> None:
    summary = client.command("CREATE TABLE events (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
    assert isinstance(summary, QuerySummary)  # no X-ClickHouse-Format for a statement without a result set
    assert client.command("EXISTS TABLE events") == 1
    client.command("ALTER TABLE events ADD COLUMN extra Nullable(String)")
    columns = client.query("SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'events'", parameters={"db": database})
    assert columns.result_rows == [("id", "UInt64"), ("name", "String"), ("extra", "Nullable(String)")]
    assert client.command("SELECT 1 WHERE 0") == ""  # an empty result set is still a result set
    client.command("DROP TABLE events")
    assert client.command("EXISTS TABLE events") == 0


def test_100k_row_insert_then_count_and_sums_match(client: Client) -> None:
    client.command("CREATE TABLE usage (user LowCardinality(String), tokens UInt32, cost Float64, ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY (user, ts)")
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    rows = [[f"user-{i % 97}", i % 5000, (i % 1000) / 8, start + timedelta(milliseconds=i)] for i in range(100_000)]
    summary = client.insert("usage", rows)  # lz4-compressed, chunked: clickhouse-connect's default
    assert summary.written_rows == 100_000
    count, tokens, cost, users, last = client.query("SELECT count(), sum(tokens), sum(cost), uniqExact(user), max(ts) FROM usage").result_rows[0]
    assert count == 100_000
    assert tokens == sum(r[1] for r in rows)
    assert cost == pytest.approx(sum(r[2] for r in rows))
    assert users == 97
    assert last == (start + timedelta(milliseconds=99_999)).replace(tzinfo=None)  # naive UTC, the client default


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip"])
def test_insert_with_and_without_compression(clickhouse_server: str, database: str, compress: bool | str) -> None:
    c = connect(clickhouse_server, database=database, compress=compress)
    c.command("CREATE TABLE t (k UInt32, v String) ENGINE = MergeTree ORDER BY k")
    # ~7 MB: clickhouse-connect cuts blocks of 1-2 MB and compresses each on its own, so the body is several frames
    rows = [[i, "x" * (i % 200)] for i in range(70_000)]
    c.insert("t", rows)
    c.insert("t", rows[:7])  # small: the INSERT statement itself travels inside the compressed body
    assert c.query("SELECT count(), sum(k), sum(length(v)) FROM t").result_rows == [
        (70_007, sum(r[0] for r in rows) + sum(range(7)), sum(len(r[1]) for r in rows) + sum(i % 200 for i in range(7)))
    ]


def test_typed_columns_round_trip(client: Client) -> None:
    client.command(
        """
        CREATE TABLE typed (
            ts DateTime64(3, 'UTC'),
            kind LowCardinality(String),
            maybe Nullable(Int64),
            tags Array(String),
            counts Map(String, UInt64),
            hist Map(UInt16, UInt64)
        ) ENGINE = MergeTree ORDER BY ts
        """
    )
    t0 = datetime(2025, 1, 31, 23, 59, 59, 123000, tzinfo=timezone.utc)
    rows = [
        [t0, "llm", 42, ["a", "b'c"], {"ok": 3, "err": 1}, {0: 1, 17: 5}],
        [t0 + timedelta(milliseconds=1), "task", None, [], {}, {}],
        [t0 + timedelta(days=400), "llm", -(2**62), ["ü\t\n"], {"": 0}, {65535: 2**63}],
    ]
    client.insert("typed", rows)
    result = client.query("SELECT * FROM typed ORDER BY ts")
    assert [t.name for t in result.column_types] == [
        "DateTime64(3, 'UTC')",
        "LowCardinality(String)",
        "Nullable(Int64)",
        "Array(String)",
        "Map(String, UInt64)",
        "Map(UInt16, UInt64)",
    ]
    assert [list(r) for r in result.result_rows] == [[r[0].replace(tzinfo=None), *r[1:]] for r in rows]
    assert client.query("SELECT count() FROM typed WHERE maybe IS NULL").result_rows == [(1,)]
    assert client.query("SELECT sumMap(hist) FROM typed").result_rows == [({0: 1, 17: 5, 65535: 2**63},)]


def test_server_side_query_parameters(client: Client) -> None:
    client.command("CREATE TABLE p (id UInt32, name String, ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id")
    ts = datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    client.insert("p", [[1, "a", ts], [2, "it's \\ tab\t", ts + timedelta(seconds=1)], [3, "c", ts]])
    params = {"table": "p", "min": 2, "name": "it's \\ tab\t", "ids": [1, 2, 3], "ts": ts}
    rows = client.query(
        "SELECT id FROM {table:Identifier} WHERE id >= {min:UInt32} AND name = {name:String} "
        "AND has({ids:Array(UInt32)}, id) AND ts > {ts:DateTime64(3, 'UTC')}",
        parameters=params,
    ).result_rows
    assert rows == [(2,)]
    # A parameter too long for the URL travels in a multipart form body
    long_value = "z" * 20_000
    assert client.query("SELECT length({s:String})", parameters={"s": long_value}).result_rows == [(20_000,)]
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT {absent:UInt8}")
    assert missing.value.code == 456  # UNKNOWN_QUERY_PARAMETER


def test_client_side_query_parameters(client: Client) -> None:
    rows = client.query("SELECT %(n)s + 1, %(s)s, %(when)s", parameters={"n": 41, "s": "o'hara", "when": datetime(2025, 1, 2, 3, 4, 5)}).result_rows
    assert rows == [(42, "o'hara", "2025-01-02 03:04:05")]


@pytest.mark.parametrize(
    ("sql", "code", "status"),
    [("SELEC 1", 62, 400), ("SELECT * FROM no_such_table", 60, 404), ("SELECT 1; SELECT 2", 62, 400), ("SET max_threads = 1", 48, 501)],
)
def test_errors_carry_clickhouse_codes(clickhouse_server: str, client: Client, sql: str, code: int, status: int) -> None:
    with pytest.raises(DatabaseError) as caught:
        client.query(sql)
    assert caught.value.code == code
    assert f"Code: {code}. DB::Exception:" in str(caught.value)
    got_status, headers, body = http(clickhouse_server, sql)
    assert (got_status, headers["X-ClickHouse-Exception-Code"]) == (status, str(code))
    assert body.startswith(f"Code: {code}. DB::Exception: ".encode())
    assert client.command("SELECT 1") == 1  # the connection and the session are still fine


def test_unknown_database(clickhouse_server: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        connect(clickhouse_server, database="no_such_db").command("SELECT 1")
    assert caught.value.code == 81


def test_get_is_readonly(clickhouse_server: str, database: str) -> None:
    status, headers, body = http(clickhouse_server, "SELECT 6 * 7", method="GET")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"42\n", "TabSeparated")
    status, headers, _ = http(clickhouse_server, f"CREATE TABLE {database}.g (x UInt8) ENGINE = Memory", method="GET")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")


def test_response_headers(clickhouse_server: str) -> None:
    status, headers, body = http(clickhouse_server, "SELECT number FROM system.numbers LIMIT 3 FORMAT JSONEachRow", query_id="q-123")
    assert status == 200
    assert body == b'{"number":0}\n{"number":1}\n{"number":2}\n'
    assert headers["X-ClickHouse-Query-Id"] == "q-123"
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Timezone"] == http(clickhouse_server, "SELECT timezone()")[2].decode().strip()
    assert '"read_rows":"3"' in headers["X-ClickHouse-Summary"]
    _, headers, body = http(clickhouse_server, "SELECT 1", default_format="CSVWithNames")
    assert (body, headers["X-ClickHouse-Format"]) == (b'"1"\n1\n', "CSVWithNames")


def test_settings_apply_to_their_query_only(client: Client) -> None:
    default = client.command("SELECT getSetting('max_block_size')")
    assert client.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 1234}) == 1234
    assert client.command("SELECT getSetting('max_block_size')") == default
    with pytest.raises(DatabaseError) as caught:
        client.command("SELECT 1", settings={"max_block_size": "not a number"})
    assert caught.value.code == 27  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    assert client.command("SELECT getSetting('max_block_size')") == default


def test_concurrent_clients_keep_their_own_settings(clickhouse_server: str) -> None:
    """One engine session serves every connection: each request must still run with exactly its own settings."""

    def worker(block_size: int) -> list[int]:
        c = connect(clickhouse_server)
        try:
            return [c.command("SELECT getSetting('max_block_size')", settings={"max_block_size": block_size}) for _ in range(25)]
        finally:
            c.close()

    sizes = [1001, 2002, 3003, 4004]
    with ThreadPoolExecutor(max_workers=len(sizes)) as pool:
        results = list(pool.map(worker, sizes))
    assert results == [[size] * 25 for size in sizes]


def test_insert_deduplication_token_setting(client: Client) -> None:
    """The job's idempotent writes: a retried batch with the same token is dropped, a new token is kept."""
    client.command("CREATE TABLE d (k UInt32) ENGINE = MergeTree ORDER BY k SETTINGS non_replicated_deduplication_window = 100")
    for token in ("batch-1", "batch-1", "batch-2"):
        client.insert("d", [[1], [2]], settings={"insert_deduplication_token": token})
    client.insert("d", [[1], [2]])  # no token: the setting must not linger from the previous request
    assert client.command("SELECT count() FROM d") == 6


def test_port_taken_fails_clearly(clickhouse_server: str, tmp_path: Path) -> None:
    port = str(urlsplit(clickhouse_server).port)
    write_users(tmp_path / "users.yaml", {"default": ("pw", False)})
    proc = subprocess.run(
        [sys.executable, "-m", "dev.chdb_server", "--path", str(tmp_path / "data"), "--port", port,
         "--users", str(tmp_path / "users.yaml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_no_server_without_a_users_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dev.chdb_server", "--path", str(tmp_path / "data"), "--port", "0",
         "--users", str(tmp_path / "missing.yaml")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "missing.yaml: not a users file" in proc.stderr


@pytest.mark.parametrize("login", ["no login", "wrong password", "unknown user", "header login", "url login"])
def test_every_request_needs_a_known_user_and_its_password(clickhouse_dev: DevClickHouse, login: str) -> None:
    password = urlsplit(clickhouse_dev.writer).password or ""
    url, headers, params = clickhouse_dev.url, {}, {}
    if login == "wrong password":
        url = with_login(clickhouse_dev.url, "default", password + "x")
    elif login == "unknown user":
        url = with_login(clickhouse_dev.url, "nobody", password)
    elif login == "header login":
        headers = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": password}
    elif login == "url login":
        params = {"user": "default", "password": password}
    status, answer, body = http(url, "SELECT 42", headers=headers, **params)
    if login in ("header login", "url login"):
        assert (status, body) == (200, b"42\n")
    else:
        assert (status, answer["X-ClickHouse-Exception-Code"]) == (403, "516")
        assert b"Authentication failed" in body
    with pytest.raises(DatabaseError):
        clickhouse_connect.get_client(dsn=with_login(clickhouse_dev.url, "default", "not the password"))


def test_the_reader_reads_and_changes_nothing(clickhouse_dev: DevClickHouse, database: str) -> None:
    connect(clickhouse_dev.writer).command(f"CREATE TABLE {database}.r (x UInt8) ENGINE = MergeTree ORDER BY x")
    reader = connect(clickhouse_dev.reader, database=database)
    assert reader.command("SELECT count() FROM r") == 0
    for sql in ("INSERT INTO r VALUES (1)", "CREATE TABLE r2 (x UInt8) ENGINE = Memory", "DROP TABLE r",
                "ALTER TABLE r DELETE WHERE 1", "TRUNCATE TABLE r", "OPTIMIZE TABLE r FINAL"):
        with pytest.raises(DatabaseError) as caught:
            reader.command(sql)
        assert caught.value.code == 164, sql
    with pytest.raises(DatabaseError) as caught:
        reader.insert("r", [[1]])
    assert caught.value.code == 164
    assert connect(clickhouse_dev.writer, database=database).command("SELECT count() FROM r") == 0


def test_readers_get_the_production_reader_profile_and_writers_do_not(clickhouse_dev: DevClickHouse) -> None:
    # reader.xml pins compatibility = 25.8 (production's image): on the 26.9 engine that turns partition pruning under
    # FINAL back on for readers. Alternating requests must not leak the profile into the writer's session settings.
    profile = reader_profile()
    assert profile["compatibility"] == "25.8"
    query = "SELECT getSetting('defer_partition_pruning_after_final'), getSetting('compatibility')"
    reader, writer = connect(clickhouse_dev.reader), connect(clickhouse_dev.writer)
    for _ in range(2):
        assert reader.query(query).result_rows == [(False, "25.8")]
        assert writer.query(query).result_rows == [(True, "")]
    # a reader may still send a setting of its own per query; it wins over the profile for that query only
    assert reader.query(query, settings={"defer_partition_pruning_after_final": 1}).result_rows == [(True, "25.8")]
    assert reader.query(query).result_rows == [(False, "25.8")]


def outside_reaching_statements(seed: int, n: int) -> list[str]:
    """Calls of every refused function or engine, spelled the ways ClickHouse accepts (any case, quoted), in the
    places they can stand: table functions, scalar calls, INSERT INTO FUNCTION, ENGINE clauses."""
    rng = random.Random(seed)
    shapes = ("SELECT * FROM {f}('/etc/passwd', 'LineAsString')", "SELECT {f}('/etc/passwd')",
              "SELECT count() FROM (SELECT 1) WHERE 1 = length({f}('x'))",
              "INSERT INTO FUNCTION {f}('/tmp/pwned.tsv', 'TSV', 'x String') VALUES ('x')",
              "CREATE TABLE t_{n} (x String) ENGINE = {f}('TSV')", "CREATE TABLE t_{n} (x String) ENGINE {f}",
              "CREATE TABLE t_{n} (x String) ENGINE = {f} SETTINGS kafka_broker_list = 'x'",
              "CREATE DATABASE d_{n} ENGINE = {f}('127.0.0.1:3306', 'db', 'u', 'p')",
              "WITH (SELECT 1) AS a SELECT * FROM {f}(\n'http://127.0.0.1:1/')")
    names = sorted(DENIED_CALLS)
    out = []
    for i in range(n):
        name = rng.choice(names)
        spelled = rng.choice((name, name.upper(), name.capitalize(), f"`{name}`", f'"{name}"', f"/* c */ {name}"))
        out.append(rng.choice(shapes).format(f=spelled, n=i))
    return out


def test_nothing_reaches_files_servers_or_programs(clickhouse_server: str, database: str, tmp_path: Path) -> None:
    client = connect(clickhouse_server, database=database)
    statements = outside_reaching_statements(seed=13, n=300) + [
        "SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT file('/etc/passwd')",
        f"INSERT INTO FUNCTION file('{tmp_path}/x.tsv', 'TSV', 'x String') VALUES ('x')",
        "SELECT * FROM url('http://127.0.0.1:9090/api/v1/status/config', 'LineAsString')",
        "SELECT 1 INTO OUTFILE '/tmp/out.tsv'", "SYSTEM RELOAD CONFIG", "SYSTEM SHUTDOWN",
        "BACKUP TABLE system.one TO File('/tmp/b')", "ATTACH TABLE a FROM '/tmp/a' (x UInt8) ENGINE = Memory",
        "CREATE DICTIONARY dd (k UInt64, v String) PRIMARY KEY k SOURCE(FILE(path '/etc/passwd' format 'TSV')) "
        "LAYOUT(FLAT()) LIFETIME(0)",
    ]
    for sql in statements:
        with pytest.raises(DatabaseError) as caught:
            client.command(sql)
        assert caught.value.code == 497, sql
    assert not list(tmp_path.iterdir())
    assert client.command("SELECT count() FROM system.tables WHERE database = currentDatabase()") == 0
    assert client.command("SELECT 1") == 1  # the session is fine

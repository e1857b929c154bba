"""The price catalogue behind the cost views (sql/clickhouse/migrations/0006_cost_model.sql): validate a CSV or YAML file, load
it as an immutable catalogue version, show the prices in force.

`python -m telemetry.prices load FILE [--version V] [--dry-run]`, `python -m telemetry.prices show [--at TIME]`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from telemetry import clickhouse, costs, settings

TABLE = "price_catalogue"
# Units are in the kind's name; the migration's header says what each is matched against.
KINDS = ("vm_hour", "gpu_hour", "cpu_hour", "tokens_in_1k", "tokens_out_1k", "storage_gb_month", "transfer_gb")
ANY_ITEM = "*"
# CPU time and transfer have no item the facts could name: one price each.
ANY_ONLY = frozenset({"cpu_hour", "transfer_gb"})
# What the views cannot use yet; loading them is fine, the loader just says so.
UNUSED = {
    "gpu_hour": "the views price GPU-seconds at gpu_hour '*' until usage carries a GPU type",
    "storage_gb_month": "no view prices storage yet: nothing reports stored bytes",
}
# valid_to of an open-ended period: DateTime64(3) ends in 2299
OPEN_END = datetime(2299, 12, 31, tzinfo=timezone.utc)
COLUMNS = ("kind", "item", "unit_price", "currency", "valid_from", "valid_to")
PRICE_DECIMALS = 12  # price_catalogue.unit_price is Decimal(38, 12): costs are exact decimals (0009_exact_costs.sql)
_ITEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_YAML_KEYS = frozenset({"version", "currency", "valid_from", "valid_to", "prices"})


class CatalogueError(ValueError):
    """A catalogue file or load is refused; the message names the file, the row and the bad value."""


def _utc_hour(value: Any, field: str) -> datetime:
    """A whole UTC hour from a date, a datetime or ISO 8601 text; naive times are UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{field} {value!r} is not a date or time (ISO 8601, e.g. 2026-03-01 or 2026-03-01T10:00:00Z)") from None
    else:
        raise ValueError(f"{field} {value!r} is not a date or time")
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    if moment.minute or moment.second or moment.microsecond:
        # usage is priced per hour with the price in force at the hour's start
        raise ValueError(f"{field} {value!s} is not a whole UTC hour; prices change on whole hours")
    if moment >= OPEN_END:
        raise ValueError(f"{field} {value!s} is past {OPEN_END:%Y-%m-%d}; leave valid_to empty for an open-ended price")
    return moment


def _decimals(number: Decimal) -> int:
    """Digits after the point, trailing zeros left out: Decimal('0.50') has one."""
    _, digits, exponent = number.as_tuple()
    while exponent < 0 and digits and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    return max(0, -exponent)


class Price(BaseModel):
    """One row of a catalogue: the unit price of one item of one kind over [valid_from, valid_to)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    item: str
    unit_price: Decimal
    currency: str
    valid_from: datetime
    valid_to: datetime | None = None  # None: open-ended

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; known: {', '.join(KINDS)}")
        return str(value)

    @field_validator("item", mode="before")
    @classmethod
    def _item(cls, value: Any) -> str:
        text = str(value).strip() if value is not None else ""
        if text != ANY_ITEM and not _ITEM.fullmatch(text):
            raise ValueError(f"item {value!r} is not a name (letters, digits, _ . : / + -, at most 64) or '*'")
        return text

    @field_validator("unit_price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal:
        # The decimal the text means: YAML reads 0.0005 as a double, whose shortest text is 0.0005 again.
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except (InvalidOperation, TypeError, ValueError):
            raise ValueError(f"unit_price {value!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"unit_price {value!r} is not a finite number")
        if number < 0:
            raise ValueError(f"unit_price {value!r} is negative; prices are >= 0")
        if number.adjusted() >= 38 - PRICE_DECIMALS or _decimals(number) > PRICE_DECIMALS:
            raise ValueError(f"unit_price {value!r} has more than {PRICE_DECIMALS} decimals or 26 digits before the "
                             "point; the catalogue keeps prices exact to 10^-12")
        return number

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value.strip()):
            raise ValueError(f"currency {value!r} is not an ISO 4217 code (three capital letters, e.g. USD)")
        return value.strip()

    @field_validator("valid_from", mode="before")
    @classmethod
    def _from(cls, value: Any) -> datetime:
        return _utc_hour(value, "valid_from")

    @field_validator("valid_to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> datetime | None:
        return None if value is None or value == "" else _utc_hour(value, "valid_to")

    @model_validator(mode="after")
    def _consistent(self) -> Price:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(f"valid_to {self.valid_to:%Y-%m-%d %H:%M} is not after valid_from {self.valid_from:%Y-%m-%d %H:%M}")
        if self.kind in ANY_ONLY and self.item != ANY_ITEM:
            raise ValueError(f"item {self.item!r}: {self.kind} has one price for everything, item '*'")
        return self

    @property
    def end(self) -> datetime:
        return self.valid_to or OPEN_END

    def key(self) -> tuple[str, str, Decimal, str, datetime, datetime]:
        """What a loaded row must equal for a version to count as the same catalogue."""
        return (self.kind, self.item, self.unit_price, self.currency, self.valid_from, self.end)


@dataclass(frozen=True)
class Catalogue:
    source: Path
    version: int | None  # as the file declares it; --version overrides
    prices: tuple[Price, ...]

    @property
    def currency(self) -> str:
        return self.prices[0].currency

    def keys(self) -> frozenset[tuple[str, str, Decimal, str, datetime, datetime]]:
        return frozenset(p.key() for p in self.prices)

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(self.keys())).encode()).hexdigest()[:16]


# --- reading and validating a file -------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records each mapping's line, so errors can point at a YAML row."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _version(value: Any, where: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 2**32 - 1:
        raise CatalogueError(f"{where}: version {value!r} is not a whole number from 1 to {2**32 - 1}")
    return int(text)


def _yaml_rows(path: Path) -> tuple[int | None, list[tuple[int, dict[str, Any]]]]:
    try:
        doc = yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), list):
        raise CatalogueError(f"{path}: expected a mapping with a 'prices' list (and optional version, currency, valid_from, valid_to)")
    doc.pop("__line__", None)
    unknown = sorted(set(doc) - _YAML_KEYS)
    if unknown:
        raise CatalogueError(f"{path}: unknown top-level key {unknown[0]!r}; known: {', '.join(sorted(_YAML_KEYS))}")
    version = _version(doc["version"], str(path)) if doc.get("version") is not None else None
    # file-wide defaults a row may leave out
    defaults = {k: doc[k] for k in ("currency", "valid_from", "valid_to") if doc.get(k) is not None}
    rows = []
    for index, entry in enumerate(doc["prices"], 1):
        if not isinstance(entry, dict):
            raise CatalogueError(f"{path}: prices entry {index} is not a mapping: {entry!r}")
        line = entry.pop("__line__", 0)
        rows.append((line, {**defaults, **entry}))
    return version, rows


def _csv_rows(path: Path) -> tuple[int | None, list[tuple[int, dict[str, Any]]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header and c != "valid_to"]
        if missing:
            raise CatalogueError(f"{path}: missing column {missing[0]!r}; the header needs {', '.join(COLUMNS)} (valid_to and version optional)")
        unknown = [c for c in header if c not in COLUMNS and c != "version"]
        if unknown:
            raise CatalogueError(f"{path}: unknown column {unknown[0]!r}; known: {', '.join(COLUMNS)}, version")
        reader.fieldnames = header
        rows = []
        versions: set[int] = set()
        for record in reader:
            if None in record:
                raise CatalogueError(f"{path}:{reader.line_num}: more values than columns")
            if not any((v or "").strip() for v in record.values()):
                continue
            # an empty cell is a missing value: pydantic then names the field, and valid_to empty is open-ended
            row = {k: v.strip() for k, v in record.items() if v is not None and v.strip() != ""}
            if "version" in row:
                versions.add(_version(row.pop("version"), f"{path}:{reader.line_num}"))
            rows.append((reader.line_num, row))
    if len(versions) > 1:
        raise CatalogueError(f"{path}: column version holds several versions ({', '.join(map(str, sorted(versions)))}); one file is one version")
    return (versions.pop() if versions else None), rows


def _describe(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{field} is missing"
    if error["type"] == "extra_forbidden":
        return f"unknown field {field!r} (value {error['input']!r}); known: {', '.join(COLUMNS)}"
    return message if not field or field in message else f"{field}: {message}"


def read_catalogue(path: Path) -> Catalogue:
    """Parse and validate a catalogue file (.yaml / .yml / .csv); every problem found is in the one error."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        raise CatalogueError(f"{path}: unknown format {suffix or '(no extension)'}; use .yaml, .yml or .csv")
    if not path.is_file():
        raise CatalogueError(f"{path}: no such file")
    version, rows = _yaml_rows(path) if suffix in (".yaml", ".yml") else _csv_rows(path)
    problems: list[str] = []
    prices: list[tuple[int, Price]] = []
    for line, row in rows:
        try:
            prices.append((line, Price.model_validate(row)))
        except ValidationError as exc:
            problems += [f"{path}:{line}: {_describe(e)}" for e in exc.errors()]
    if not rows:
        problems.append(f"{path}: no prices")
    currencies = Counter(p.currency for _, p in prices)
    if len(currencies) > 1:
        main, _ = currencies.most_common(1)[0]
        problems += [f"{path}:{line}: currency {p.currency!r} differs from the file's {main}; one catalogue, one currency"
                     for line, p in prices if p.currency != main]
    # One version holds one price per item at any time: overlapping periods would make "in force" ambiguous
    ordered = sorted(prices, key=lambda lp: (lp[1].kind, lp[1].item, lp[1].valid_from))
    for (line_a, a), (line_b, b) in zip(ordered, ordered[1:]):
        if (a.kind, a.item) == (b.kind, b.item) and b.valid_from < a.end:
            problems.append(
                f"{path}:{line_b}: {b.kind} {b.item} from {b.valid_from:%Y-%m-%d %H:%M} overlaps line {line_a} "
                f"({_period(a)}); one version has one price per item at a time"
            )
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CatalogueError("\n".join(shown))
    return Catalogue(path, version, tuple(p for _, p in prices))


def _period(price: Price) -> str:
    return f"{price.valid_from:%Y-%m-%d %H:%M} .. {'open' if price.valid_to is None else f'{price.valid_to:%Y-%m-%d %H:%M}'}"


# --- loading into ClickHouse -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    version: int
    inserted: int  # rows written; 0 when the version was already there (or a dry run)
    already_loaded: bool


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _loaded(client: Client, database: str) -> dict[int, frozenset[tuple[str, str, Decimal, str, datetime, datetime]]]:
    """version -> its rows as Price.key() tuples."""
    rows = client.query(
        f"SELECT version, kind, item, unit_price, currency, valid_from, valid_to FROM {database}.{TABLE} FINAL"
    ).result_rows
    out: dict[int, set[tuple[str, str, Decimal, str, datetime, datetime]]] = {}
    for version, kind, item, price, currency, start, end in rows:
        out.setdefault(version, set()).add((kind, item, price, currency, _utc(start), _utc(end)))
    return {v: frozenset(keys) for v, keys in out.items()}


def _require_table(client: Client, database: str) -> None:
    if not client.command(f"EXISTS TABLE {database}.{TABLE}"):
        raise CatalogueError(f"{database}.{TABLE} does not exist: apply the migrations first (make migrate)")


def load(
    client: Client,
    database: str,
    catalogue: Catalogue,
    version: int | None = None,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> LoadResult:
    """Load `catalogue` as `version` (else the file's, else the same content's existing version, else the next one).

    A version is immutable: loading the same content again is a no-op, different content under a loaded version
    is refused. The insert carries a deduplication token as well, so a retried insert cannot double the rows."""
    _require_table(client, database)
    loaded = _loaded(client, database)
    keys = catalogue.keys()
    known_currencies = {key[3] for rows in loaded.values() for key in rows}
    if known_currencies and catalogue.currency not in known_currencies:
        raise CatalogueError(
            f"{catalogue.source}: currency {catalogue.currency} differs from the loaded catalogue's "
            f"{', '.join(sorted(known_currencies))}; costs add up across kinds, so the catalogue keeps one currency"
        )
    wanted = version if version is not None else catalogue.version
    if wanted is None:
        same = [v for v, rows in loaded.items() if rows == keys]
        wanted = max(same) if same else max(loaded, default=0) + 1
    if wanted in loaded:
        if loaded[wanted] == keys:
            if not dry_run and client.command(f"EXISTS TABLE {database}.costs_1h"):
                costs.refresh(client, database, say=say)  # usage inserted since the last refresh gets its costs
            say(f"version {wanted} is already loaded with these {len(keys)} prices: nothing to do")
            return LoadResult(wanted, 0, True)
        differ = len(loaded[wanted] ^ keys)
        raise CatalogueError(
            f"{catalogue.source}: version {wanted} is already loaded with different prices ({differ} rows differ); a "
            f"version never changes: load it as a new one (--version {max(loaded) + 1})"
        )
    newer = sorted(v for v in loaded if v > wanted)
    if newer:
        say(f"note: versions {', '.join(map(str, newer))} are newer and stay in force where their periods overlap this one's")
    for kind, why in UNUSED.items():
        if any(p.kind == kind and (kind != "gpu_hour" or p.item != ANY_ITEM) for p in catalogue.prices):
            say(f"note: {kind} prices{' per GPU type' if kind == 'gpu_hour' else ''} are kept, but {why}")
    if dry_run:
        say(f"dry run: would load {len(keys)} prices as version {wanted} into {database}.{TABLE}")
        return LoadResult(wanted, 0, False)
    rows = [[wanted, p.kind, p.item, p.unit_price, p.currency, p.valid_from, p.end, catalogue.source.name] for p in catalogue.prices]
    client.insert(
        f"{database}.{TABLE}",
        rows,
        column_names=["version", "kind", "item", "unit_price", "currency", "valid_from", "valid_to", "source"],
        settings={"insert_deduplication_token": f"{TABLE}:{wanted}:{catalogue.digest()}"},
    )
    say(f"loaded version {wanted}: {len(rows)} prices from {catalogue.source.name} into {database}.{TABLE}; "
        "cost_usage_1h, cost_tasks and vm_activity_1h price all history with them now")
    if client.command(f"EXISTS TABLE {database}.costs_1h"):
        costs.reprice_version(client, database, wanted, say)
    return LoadResult(wanted, len(rows), False)


def in_force(client: Client, database: str, at: datetime) -> list[tuple[Any, ...]]:
    """(kind, item, unit_price, currency, valid_from, valid_to, version) of every price in force at `at`."""
    _require_table(client, database)
    return client.query(
        f"SELECT kind, item, unit_price, currency, valid_from, valid_to, version FROM {database}.price_in_force "
        "WHERE valid_from <= {at:DateTime64(3, 'UTC')} AND {at:DateTime64(3, 'UTC')} < valid_to ORDER BY kind, item",
        parameters={"at": _utc(at)},
    ).result_rows


# --- command line ------------------------------------------------------------------------------------------


def _summary(catalogue: Catalogue) -> str:
    kinds = Counter(p.kind for p in catalogue.prices)
    first = min(p.valid_from for p in catalogue.prices)
    last = max(p.end for p in catalogue.prices)
    until = "open-ended" if last == OPEN_END else f"{last:%Y-%m-%d %H:%M}"
    per_kind = ", ".join(f"{kind} {kinds[kind]}" for kind in KINDS if kinds[kind])
    return (f"read {catalogue.source}: {len(catalogue.prices)} prices ({per_kind}) in {catalogue.currency}, "
            f"{first:%Y-%m-%d %H:%M} .. {until}")


def _table(rows: Iterable[tuple[Any, ...]]) -> list[str]:
    header = ("kind", "item", "unit_price", "currency", "valid_from", "valid_to", "version")
    cells = [header] + [
        (kind, item, format(price.normalize(), "f"), currency, f"{_utc(start):%Y-%m-%d %H:%M}",
         "open" if _utc(end) >= OPEN_END else f"{_utc(end):%Y-%m-%d %H:%M}", str(version))
        for kind, item, price, currency, start, end, version in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]


def _connect(url: str, config: settings.Settings) -> Client:
    return clickhouse.connect(config, url=url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.prices",
        description="The price catalogue of the cost views (cost_usage_1h, cost_tasks, vm_activity_1h). A catalogue "
        "version is immutable; where versions' periods overlap, the highest is in force, so loading a new version "
        "re-prices history without reprocessing. ClickHouse from CLICKHOUSE_URL / CLICKHOUSE_DATABASE.",
    )
    parser.add_argument("--url", help=f"ClickHouse HTTP URL (default: CLICKHOUSE_URL or {settings.Settings.clickhouse_url})")
    parser.add_argument("--database", help=f"database (default: CLICKHOUSE_DATABASE or {settings.Settings.clickhouse_database})")
    commands = parser.add_subparsers(dest="command", required=True)
    load_cmd = commands.add_parser("load", help="validate a CSV or YAML catalogue and load it as a version")
    load_cmd.add_argument("file", type=Path, help="catalogue file: .yaml / .yml or .csv (see sql/clickhouse/prices/example.yaml)")
    load_cmd.add_argument("--version", type=int, help="catalogue version (default: the file's, else the next free one)")
    load_cmd.add_argument("--dry-run", action="store_true", help="validate and say what would be loaded, without writing")
    show_cmd = commands.add_parser("show", help="print the prices in force")
    show_cmd.add_argument("--at", help="UTC time to show the prices of (ISO 8601; default: now)")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    url, database = args.url or config.clickhouse_url, args.database or config.clickhouse_database
    try:
        if args.command == "load":
            if args.version is not None and not 1 <= args.version <= 2**32 - 1:
                raise CatalogueError(f"--version {args.version} is not a whole number from 1 to {2**32 - 1}")
            catalogue = read_catalogue(args.file)
            print(_summary(catalogue))
            client = _connect(url, config)
            try:
                load(client, database, catalogue, args.version, args.dry_run)
            finally:
                client.close()
        else:
            at = datetime.fromisoformat(args.at) if args.at else datetime.now(timezone.utc)
            client = _connect(url, config)
            try:
                rows = in_force(client, database, at)
            finally:
                client.close()
            print(f"prices in force at {_utc(at):%Y-%m-%d %H:%M:%S} UTC in {database}.price_in_force:")
            print("\n".join(_table(rows)) if rows else "(none: load a catalogue with `python -m telemetry.prices load FILE`)")
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad --at
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClickHouseError as exc:
        print(f"error: ClickHouse at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small ClickHouse SQL lexer: statement splitting, the leading keyword, FORMAT clauses.

Pure Python with no engine import, so the migration tool can split files with the same rules the dev server uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

# Only what decides statement boundaries and keywords matters: strings, quoted identifiers, heredocs and
# comments are opaque, so a ';' or 'FORMAT' inside them is never mistaken for syntax.
_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<comment>--[^\n]*|\#[ !][^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<quoted>"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))
    | (?P<heredoc>\$(?P<tag>[A-Za-z0-9_]*)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<semi>;)
    | (?P<other>.)
    """,
    re.S | re.X,
)

# Statements that produce a result set; ClickHouse announces their output format in X-ClickHouse-Format.
RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK", "("})
# What ClickHouse still runs when the request is read-only (HTTP GET or readonly=1/2).
READONLY_KEYWORDS = RESULT_KEYWORDS


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int


def tokens(text: str) -> Iterator[Token]:
    """Significant tokens (no whitespace, no comments), lazily, so callers can stop early on large inputs."""
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind not in ("ws", "comment"):
            yield Token(kind, match.group(), match.start(), match.end())


def split_statements(text: str) -> list[str]:
    """Split a script on top-level semicolons; pieces holding only comments or whitespace are dropped."""
    statements: list[str] = []
    start = 0
    has_content = False
    for tok in tokens(text):
        if tok.kind == "semi":
            if has_content:
                statements.append(text[start : tok.start].strip())
            start, has_content = tok.end, False
        else:
            has_content = True
    if has_content:
        statements.append(text[start:].strip())
    return statements


def leading_keyword(text: str) -> str:
    """The statement's first keyword upper-cased ('(' for a parenthesised query), '' for an empty text."""
    for tok in tokens(text):
        return tok.text.upper() if tok.kind == "word" else tok.text
    return ""


def output_format(text: str) -> str | None:
    """The format named by a query's own FORMAT clause, if it has one.

    A clause is FORMAT <name> followed by the end, a ';' or a SETTINGS clause, so a column named
    `format` is not taken for one.
    """
    found: str | None = None
    toks = list(tokens(text))
    for i, tok in enumerate(toks[:-1]):
        if tok.kind == "word" and tok.text.upper() == "FORMAT" and toks[i + 1].kind == "word":
            after = toks[i + 2] if i + 2 < len(toks) else None
            if after is None or after.kind == "semi" or after.text.upper() == "SETTINGS":
                found = toks[i + 1].text
    return found


@dataclass(frozen=True)
class InsertData:
    """An `INSERT ... FORMAT <fmt>` head and where its inline data starts."""

    head_end: int  # end of the statement before the FORMAT keyword
    fmt: str
    data_start: int


# An INSERT head longer than this is not a head: nobody writes a megabyte of column list.
_MAX_HEAD = 1 << 20


def insert_with_data(payload: bytes) -> InsertData | None:
    """Locate `FORMAT <fmt>` in an INSERT whose data follows in the same payload.

    Returns None for other statements and for INSERT ... VALUES / SELECT, which run as plain SQL.
    The payload may be binary after the head, so it is lexed as latin-1 (one char per byte) and the
    lexer stops at the format name.
    """
    text = payload[:_MAX_HEAD].decode("latin-1")
    it = tokens(text)
    first = next(it, None)
    if first is None or first.text.upper() != "INSERT":
        return None
    fmt_keyword: Token | None = None
    for tok in it:
        if tok.kind != "word":
            continue
        word = tok.text.upper()
        if fmt_keyword is not None:
            # ClickHouse: the data starts after the first newline if there is one, else after the blanks.
            pos = tok.end
            while pos < len(payload) and payload[pos] in b" \t\f":
                pos += 1
            if payload[pos : pos + 1] == b"\r":
                pos += 1
            if payload[pos : pos + 1] == b"\n":
                pos += 1
            return InsertData(head_end=fmt_keyword.start, fmt=tok.text, data_start=pos)
        if word == "FORMAT":
            fmt_keyword = tok
        elif word in ("VALUES", "SELECT", "WITH"):
            return None
    return None

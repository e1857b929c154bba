"""Generate the JSON Schema of every family into schemas/json/<family>.schema.json.

`python -m schemas.generate` writes them; `--check` writes nothing and exits 1 naming stale, missing or
orphaned files (run by the tests, so a model change without regeneration fails the build).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schemas.registry import EVENT_NAMES, FAMILIES, topics_for_family

JSON_DIR = Path(__file__).resolve().parent / "json"
SUFFIX = ".schema.json"


def schema_for(family: str) -> dict[str, Any]:
    """The validation-mode JSON Schema of a family (what producers may send), with catalogue metadata.

    Cross-field rules (e.g. error_type iff failed) are not expressible here without duplicating them; they
    are stated in each model's description and enforced by `schemas.validate`.
    """
    body = FAMILIES[family].model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:telemetry:schema:{family}",
        "x-family": family,
        "x-topics": list(topics_for_family(family)),
        "x-event-names": list(EVENT_NAMES[family]),
        **body,
    }


def render(family: str) -> str:
    # Stable text (fixed indent, key order from the model, trailing newline) so --check compares bytes.
    return json.dumps(schema_for(family), indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    return {JSON_DIR / f"{family}{SUFFIX}": render(family) for family in FAMILIES}


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of files that differ from the models, are missing, or belong to no family."""
    problems: list[str] = []
    expected = {directory / p.name: text for p, text in expected_files().items()}
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path.name} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path.name} (stale)")
    if directory.exists():
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            if path not in expected:
                problems.append(f"{path.name} (no such family)")
    return problems


def write(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path, text in expected_files().items():
        target = directory / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name not in {p.name for p in expected_files()}:
            path.unlink()  # a family was removed or renamed: its schema must not linger
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any schema file is stale")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help="output directory (default: schemas/json)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files(args.dir)
        if problems:
            print("JSON Schema files out of date (run `python -m schemas.generate`):", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            return 1
        print(f"{len(FAMILIES)} JSON Schema files up to date in {args.dir}")
        return 0
    written = write(args.dir)
    print(f"wrote {len(written)} of {len(FAMILIES)} JSON Schema files in {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

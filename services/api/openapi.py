"""`python -m services.api.openapi [--check]`: write the API's OpenAPI spec to services/api/openapi.json, the copy
clients and reviewers read; --check exits 1 when the committed file is stale."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPEC = Path(__file__).with_name("openapi.json")


def render() -> str:
    """The spec of the app as built from the code (no store is opened)."""
    from services.api.app import create_app
    from telemetry import settings

    app = create_app(settings.load({"API_PSEUDONYM_KEY": "spec-only-" + "x" * 32}))
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when openapi.json is stale")
    args = parser.parse_args(argv)
    fresh = render()
    if args.check:
        if not SPEC.exists() or SPEC.read_text() != fresh:
            print(f"{SPEC} is stale: run `python -m services.api.openapi`")
            return 1
        return 0
    SPEC.write_text(fresh)
    print(f"wrote {SPEC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

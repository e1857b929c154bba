"""The end of `make demo`: the API over what the run loaded, one call per role with a token of that role.

Loads the simulator's tenants, departments, projects and users into PostgreSQL (the directory), grants one demo
principal per role in the first tenant and issues it a token, starts `python -m services.api` (as the demo starts
the loader), prints for each role the curl line and the answer, the web page's URL, checks the access log's chain,
stops the API.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import requests

from dev.simulator.config import SimConfig
from dev.simulator.rand import Rand
from dev.simulator.world import World, build_world
from services.api import directory, tokens
from telemetry import settings as cfg

# role -> (path, parameters): what each role of seed 003 asks first
CALLS: dict[str, tuple[str, dict[str, str]]] = {
    "pipeline_td": ("/v1/models/performance", {"limit": "3"}),
    "admin": ("/v1/vms", {"limit": "3"}),
    "financial_director": ("/v1/costs", {"group_by": "department", "granularity": "hour", "limit": "3"}),
    "auditor": ("/v1/access", {"limit": "3"}),
    "quota_service": ("/v1/usage", {"group_by": "user", "granularity": "hour", "limit": "3"}),
}


def world_directory(world: World) -> dict[str, list[dict[str, str]]]:
    return {
        "tenants": [{"tenant_id": t.tenant_id, "name": t.code} for t in world.tenants],
        "departments": [{"tenant_id": d.tenant.tenant_id, "department_id": d.department_id, "name": d.department_id}
                        for d in world.departments],
        "projects": [{"tenant_id": p.department.tenant.tenant_id, "project_id": p.project_id,
                      "department_id": p.department.department_id, "name": p.project_id} for p in world.projects],
        "users": [{"tenant_id": u.tenant.tenant_id, "user_id": u.user_id, "department_id": u.department.department_id}
                  for u in world.users],
    }


def shorten(body: Any, rows: int = 3) -> str:
    """The answer, its list cut to a few rows, as indented JSON."""
    if isinstance(body.get("data"), list):
        body = {**body, "data": body["data"][:rows]}
    return json.dumps(body, indent=2)


def show(s: cfg.Settings, seed: int, since_ms: int, until_ms: int, work: Path, say: Any) -> None:
    world = build_world(SimConfig(seed=seed), Rand(f"world:{seed}"))
    tenant = world.tenants[0].tenant_id
    with psycopg.connect(s.postgres_conninfo(), autocommit=True) as conn:
        counts = directory.load(conn, world_directory(world))
        issued = {}
        for role in CALLS:
            tokens.grant(conn, f"demo-{role}", role, [tenant], "make demo")
            issued[role] = tokens.issue(conn, f"demo-{role}", 1, "make demo", "make demo")
    say("directory in PostgreSQL: " + ", ".join(f"{n} {table}" for table, n in counts.items())
        + f"; a token per role for tenant {tenant} ({world.tenants[0].code})")
    log = open(work / "api.log", "wb")
    api = subprocess.Popen([sys.executable, "-m", "services.api"], stdout=subprocess.PIPE, stderr=log)
    assert api.stdout is not None
    try:
        line = api.stdout.readline().decode()
        if "serving on" not in line:
            raise SystemExit(f"the API did not start; its log is {work / 'api.log'}")
        base = line.split("serving on ")[1].split()[0]
        for _ in range(100):
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        say(f"API serving on {base} (OpenAPI: {base}/docs); one call per role:")
        span = {"from": iso(since_ms), "to": iso(until_ms)}
        for role, (path, params) in CALLS.items():
            query = "&".join(f"{k}={v}" for k, v in {**span, **params}.items())
            url = f"{base}{path}?{query}"
            print(f"\n  {role}:\n  $ curl -s -H {shlex.quote('Authorization: Bearer ' + issued[role])} {shlex.quote(url)}")
            answer = requests.get(url, headers={"Authorization": f"Bearer {issued[role]}"}, timeout=60)
            print("\n".join("    " + l for l in shorten(answer.json()).splitlines()))
        print()
        page = requests.get(f"{base}/", timeout=10)
        built = "" if page.ok else " (NOT BUILT: run `make deps`)"
        say(f"web page per role: {base}/{built}; log in with a token above (each lasts a day). The demo stops "
            f"the API now: `{sys.executable} -m services.api` serves the page again")
        verify = subprocess.run([sys.executable, "-m", "services.api.audit", "verify"], capture_output=True, text=True,
                                timeout=120)
        say("access log: " + (verify.stdout.strip().splitlines() or ["(no output)"])[0].removeprefix("access log: "))
    finally:
        api.terminate()
        api.wait(timeout=30)
        api.stdout.close()
        log.close()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

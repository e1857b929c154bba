"""The web page per role (services/api/web, built by `make deps` into its dist/): static files at / and /app/...,
without a token and outside the access log like /health (app.PUBLIC_PATHS) (they hold no tenant data: the page reads the API with the
token its user pastes). When the build is missing, / says how to make it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from services.api.problems import Problem

DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".map": "application/json"}
# index.html names the bundle by a fixed path, so a browser must ask again after a new build. The page holds a
# token: only its own script may run, it may call only this API, and no other site may frame it.
NO_CACHE = {"cache-control": "no-cache", "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                       "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                                       "frame-ancestors 'none'"}

router = APIRouter(include_in_schema=False)

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>AI telemetry: web page not built</title>
</head><body><h1>The web page is not built</h1>
<p>This API serves the web page from <code>{dist}</code>, which does not exist or has no index.html.
Build it with <code>make deps</code> (it runs <code>npm ci</code> and <code>npm run build</code> in
<code>services/api/web</code>). The API itself works: see <a href="/docs">/docs</a>.</p></body></html>
"""


def asset(name: str, dist: Path | None = None) -> Path | None:
    """The built file a request names, or None: only regular files inside dist (no .., no symlink out of it)."""
    root = (dist or DIST).resolve()
    try:
        candidate = (root / name).resolve()
        if root not in candidate.parents or not candidate.is_file():
            return None
    except (ValueError, OSError):  # a NUL byte, a name too long for the file system: no such file either
        return None
    return candidate


@router.get("/")
async def index() -> Response:
    page = asset("index.html")
    if page is None:
        return HTMLResponse(NOT_BUILT.format(dist=DIST), status_code=503, headers=NO_CACHE)
    return FileResponse(page, media_type=MEDIA_TYPES[".html"], headers=NO_CACHE)


@router.get("/app/{name:path}")
async def app_file(name: str) -> Response:
    found = asset(name)
    if found is None:
        raise Problem(404, "not-found", "Not Found", f"/app/{name[:80]}: no such file in the web page's build")
    return FileResponse(found, media_type=MEDIA_TYPES.get(found.suffix, "application/octet-stream"), headers=NO_CACHE)

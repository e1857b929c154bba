"""The API's routers, one per area; create_app() includes them in this order (the OpenAPI spec follows it)."""

from services.api.routers import access, admin, exports, infra, ops, performance, quotas, tasks, usage, web

ROUTERS = [ops.router, admin.router, usage.router, performance.router, infra.router, tasks.router, access.router,
           quotas.router, exports.router, web.router]

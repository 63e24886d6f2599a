"""Webhook intake: CRMs push calls, `callqa webhook serve` stages them.

    POST /webhooks/<tenant>/<secret>         the tenant's webhook secret in the path
    POST /webhooks/<tenant>                  X-Callqa-Signature: sha256=<hex HMAC of the body>

A form-encoded body (AmoCRM's pushes) or a CRM's own JSON goes to the tenant's adapter
(`parse_webhook`); a JSON body `{"calls": [...]}` (or one call object) is callqa's own
format, the fields of `callqa.crm.base.CrmCall`, for telephony systems and scripts. The
calls are staged in `staged_calls` (source `webhook`) and `staged_calls_sensor` takes them
from there. The answer is quick (one INSERT), so CRMs that give up after a second or two
do not retry needlessly; replays and duplicates are harmless because a call is staged once
per (tenant, external id). A bad secret is 401, a malformed body 400, an oversized one
413, a database outage 503: never a 500, and always a log line that names the tenant and
the problem but not the secret (uvicorn's access log, which prints paths, is off).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from callqa.config.models import Tenant
from callqa.config.registry import Registry
from callqa.config.secrets import Secret
from callqa.crm.base import CrmAdapter, CrmCall
from callqa.crm.registry import cached_adapter
from callqa.errors import CallqaError, CrmPayloadError

log = logging.getLogger("callqa.webhooks")

MAX_BODY_BYTES = 1024 * 1024
MAX_CALLS_PER_PUSH = 1000
SIGNATURE_HEADER = "x-callqa-signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body` (what a sender computes)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_callqa_json(payload: object) -> list[CrmCall]:
    """callqa's own push format: {"calls": [call, ...]} or a single call object."""
    items = payload.get("calls") if isinstance(payload, dict) and "calls" in payload else [payload]
    if not isinstance(items, list):
        raise CrmPayloadError("'calls' must be a list")
    if len(items) > MAX_CALLS_PER_PUSH:
        raise CrmPayloadError(f"{len(items)} calls in one push (at most {MAX_CALLS_PER_PUSH})")
    calls = []
    for i, item in enumerate(items):
        try:
            calls.append(CrmCall.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<call>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise CrmPayloadError(f"call {i}: {problems}") from None
    return calls


@dataclass
class Intake:
    """The tenants that take webhooks, their secrets and adapters, and the warehouse."""

    registry: Registry
    warehouse: object
    secrets: dict[str, Secret] = field(default_factory=dict)
    adapters: dict[str, CrmAdapter] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry, warehouse) -> Intake:
        intake = cls(registry, warehouse)
        for tenant in registry.tenants.values():
            if tenant.crm is not None and tenant.crm.webhook_secret is not None:
                where = f"tenant {tenant.id} crm.webhook_secret"
                intake.secrets[tenant.id] = tenant.crm.webhook_secret.resolve(where)
                # Built now, not on the first push: a push is answered within ~100 ms.
                cached_adapter(intake.adapters, tenant)
        with warehouse.engine.connect():  # opens the pool (and fails early if unreachable)
            pass
        return intake

    def authenticate(
        self, tenant_id: str, path_secret: str | None, signature: str | None, body: bytes
    ) -> Tenant:
        secret = self.secrets.get(tenant_id)
        if secret is None:
            raise _Refused(404, f"tenant {tenant_id!r} takes no webhooks")
        if path_secret is not None:
            ok = hmac.compare_digest(path_secret.encode(), secret.reveal().encode())
        elif signature:
            ok = hmac.compare_digest(
                signature.strip().encode(), sign(secret.reveal(), body).encode()
            )
        else:
            raise _Refused(
                401, f"tenant {tenant_id}: no secret in the path and no {SIGNATURE_HEADER} header"
            )
        if not ok:
            raise _Refused(401, f"tenant {tenant_id}: wrong webhook secret or signature")
        return self.registry.tenant(tenant_id)

    def parse(self, tenant: Tenant, body: bytes, content_type: str) -> list[CrmCall]:
        if content_type.split(";")[0].strip().lower() == "application/json":
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise CrmPayloadError(f"body is not valid JSON ({exc})") from None
            if isinstance(payload, dict) and ("calls" in payload or "external_id" in payload):
                return parse_callqa_json(payload)
        adapter = cached_adapter(self.adapters, tenant)
        try:
            return adapter.parse_webhook(body, content_type)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            # Whatever an adapter did not foresee in a body is still the body's fault: 400.
            raise CrmPayloadError(f"{exc.__class__.__name__}: {exc}"[:300]) from None

    def stage(self, tenant: Tenant, calls: list[CrmCall]) -> list[str]:
        default = tenant.crm.category if tenant.crm else None
        return self.warehouse.stage_calls(
            tenant.id, "webhook", [c.as_staged(default) for c in calls]
        )


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(intake: Intake):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _Refused(413, f"body of {declared} bytes exceeds {MAX_BODY_BYTES}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Refused(413, f"body exceeds {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def receive(request: Request) -> JSONResponse:
        started = time.perf_counter()
        tenant_id = request.path_params["tenant"]
        status, answer = 202, {}
        try:
            body = await read_body(request)
            tenant = intake.authenticate(
                tenant_id,
                request.path_params.get("secret"),
                request.headers.get(SIGNATURE_HEADER),
                body,
            )
            calls = intake.parse(tenant, body, request.headers.get("content-type", ""))
            new = await run_in_threadpool(intake.stage, tenant, calls) if calls else []
            answer = {
                "received": len(calls),
                "staged": len(new),
                "duplicates": len(calls) - len(new),
            }
            level, message = logging.INFO, f"staged {len(new)} of {len(calls)} call(s)"
        except _Refused as exc:
            status, answer = exc.status, {"error": str(exc)}
            level, message = logging.WARNING, str(exc)
        except CrmPayloadError as exc:
            status, answer = 400, {"error": f"malformed payload: {exc}"}
            level, message = logging.WARNING, f"malformed payload: {exc}"
        except CallqaError as exc:  # config (a missing CRM token) or the like
            status, answer = 503, {"error": "webhook intake is misconfigured; see the server log"}
            level, message = logging.ERROR, str(exc)
        except Exception as exc:  # the warehouse is down, or a bug: retryable, say so
            status, answer = 503, {"error": "temporarily unavailable; retry"}
            level, message = logging.ERROR, f"{exc.__class__.__name__}: {exc}"[:300]
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(
            level, "webhook tenant=%s status=%s %.1f ms: %s", tenant_id, status, elapsed_ms, message
        )
        return JSONResponse(answer, status_code=status)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})  # no tenant ids: this route is unauthenticated

    return Starlette(
        routes=[
            Route("/webhooks/{tenant}/{secret}", receive, methods=["POST"]),
            Route("/webhooks/{tenant}", receive, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


def serve(intake: Intake, host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # access_log off: it prints request paths, and a path may carry a tenant's secret.
    uvicorn.run(create_app(intake), host=host, port=port, access_log=False, log_level="info")

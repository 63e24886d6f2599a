"""`callqa stage ...`, `callqa webhook serve` and `callqa secret ...`: how calls get in.

callqa stage add FILES       stage local recordings by hand
callqa stage list            staged calls, filtered (the staging gate's view)
callqa stage approve|reject  the staging gate: process these calls, or not
callqa webhook serve         take CRM pushes over HTTP
callqa secret encrypt        a Fernet value to paste into tenant config
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import date
from pathlib import Path

from callqa import settings
from callqa.errors import CallqaError

STAGE_ACTIONS = ("add", "list", "approve", "reject")
GATE_STATUSES = ("staged", "approved", "rejected", "queued", "processed", "failed")


def stage_argv(argv: list[str]) -> list[str]:
    """`callqa stage FILES` (before the gate existed) still means `callqa stage add FILES`."""
    if len(argv) >= 2 and argv[0] == "stage" and argv[1] not in (*STAGE_ACTIONS, "-h", "--help"):
        return ["stage", "add", *argv[1:]]
    return argv


def _warehouse():
    from callqa.cli import _warehouse

    return _warehouse()


def cmd_stage_add(args: argparse.Namespace) -> int:
    from callqa.config.registry import default_registry
    from callqa.crm.file_drop import (
        ALREADY_STAGED,
        AUDIO_SUFFIXES,
        COLLISION,
        STAGED,
        CallIdCollision,
        StagedFile,
        stage_each,
    )
    from callqa.errors import AudioError

    tenant = default_registry().tenant(args.tenant)  # fail early on an unknown tenant
    paths: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise AudioError(f"{path}: file not found")
    with _warehouse() as warehouse:
        warehouse.upsert_tenant(tenant.id, tenant.name, tenant.model_dump(mode="json"))
        files = [StagedFile(path=p, operator=args.operator, category=args.category) for p in paths]
        results = stage_each(warehouse, args.tenant, files)
    # One line per file: partition key, what happened, the recording (tab-separated).
    for r in results:
        print(f"{r.key.partition_key}\t{r.status}\t{r.file.path.resolve()}")
    collisions = [r for r in results if r.status == COLLISION]
    if collisions:
        raise CallIdCollision(collisions)
    new = sum(r.status == STAGED for r in results)
    old = sum(r.status == ALREADY_STAGED for r in results)
    then = (
        "staged_calls_sensor launches them while the Dagster daemon runs (./dev ui)"
        if tenant.auto_process
        else f"tenant {tenant.id} has auto_process off: `callqa stage approve` lets them through"
    )
    print(
        f"staged {new} new call(s), {old} already staged, in "
        f"{settings.redact_url(settings.database_url())}; {then}",
        file=sys.stderr,
    )
    return 0


def _day(flag: str, value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise CallqaError(f"{flag} {value!r}: expected a day as YYYY-MM-DD") from None


def _gate_rows(warehouse, args: argparse.Namespace, statuses: tuple[str, ...]) -> list[dict]:
    return warehouse.gate_list(
        tenant=args.tenant,
        statuses=statuses,
        date_from=_day("--from", args.date_from),
        date_to=_day("--to", args.date_to),
        operator=args.operator,
        category=args.category,
        min_duration_s=args.min_duration,
        max_duration_s=args.max_duration,
        limit=getattr(args, "limit", None),
    )


def _filtered(args: argparse.Namespace) -> bool:
    return any(
        v is not None
        for v in (
            args.date_from,
            args.date_to,
            args.operator,
            args.category,
            args.min_duration,
            args.max_duration,
        )
    )


def cmd_stage_list(args: argparse.Namespace) -> int:
    if args.tenant:
        from callqa.config.registry import default_registry

        default_registry().tenant(args.tenant)
    with _warehouse() as warehouse:
        rows = _gate_rows(warehouse, args, tuple(args.status or ["staged"]))
    # Tab-separated, one call per line, for people and for `cut`/`awk`.
    print("partition_key\tstatus\tstarted_at\toperator\tcategory\tduration_s\tsource")
    for r in rows:
        started = r["started_at"].isoformat(timespec="seconds") if r["started_at"] else ""
        duration = f"{r['duration_s']:.0f}" if r["duration_s"] is not None else ""
        print(
            f"{r['tenant']}__{r['external_id']}\t{r['status']}\t{started}\t"
            f"{r['operator'] or ''}\t{r['category'] or ''}\t{duration}\t{r['source']}"
        )
    print(f"{len(rows)} call(s)", file=sys.stderr)
    return 0


def cmd_stage_decide(args: argparse.Namespace) -> int:
    from callqa.config.registry import default_registry

    tenant = default_registry().tenant(args.tenant)
    approve = args.action == "approve"
    if not args.call_ids and not (args.all_matching and (_filtered(args) or args.all)):
        raise CallqaError(
            f"name the calls to {args.action}, or give filters with --matching "
            "(or --matching --all for every waiting call of the tenant)"
        )
    with _warehouse() as warehouse:
        from_statuses = ("staged", "rejected") if approve else ("staged", "approved")
        if args.call_ids:
            ids = [
                c.split("__", 1)[1] if c.startswith(f"{tenant.id}__") else c for c in args.call_ids
            ]
            waiting = {r["external_id"] for r in warehouse.staged_calls(tenant.id, from_statuses)}
            unknown = sorted(set(ids) - waiting)
            if unknown:
                raise CallqaError(
                    f"not waiting at the staging gate of tenant {tenant.id!r} "
                    f"(status {' or '.join(from_statuses)}): {', '.join(unknown)}"
                )
        else:  # by filter: only calls still waiting (a rejected call is approved by name)
            args.tenant = tenant.id
            waiting_statuses = ("staged",) if approve else ("staged", "approved")
            ids = [r["external_id"] for r in _gate_rows(warehouse, args, waiting_statuses)]
        done = warehouse.approve(tenant.id, ids) if approve else warehouse.reject(tenant.id, ids)
    for external_id in done:
        print(f"{tenant.id}__{external_id}")
    then = (
        "staged_calls_sensor launches them on its next tick"
        if approve
        else "they stay in staged_calls and are not processed (approve brings them back)"
    )
    print(f"{len(done)} call(s) {args.action}d; {then}", file=sys.stderr)
    return 0


def cmd_webhook_serve(args: argparse.Namespace) -> int:
    from callqa.config.registry import default_registry
    from callqa.crm.webhooks import Intake, serve

    with _warehouse() as warehouse:
        intake = Intake.load(default_registry(), warehouse)
        if not intake.secrets:
            raise CallqaError("no tenant has crm.webhook_secret set: no tenant would accept a push")
        print(
            f"taking pushes for {', '.join(sorted(intake.secrets))} on "
            f"http://{args.host}:{args.port}/webhooks/<tenant>[/<secret>]",
            file=sys.stderr,
        )
        serve(intake, args.host, args.port)
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    from callqa.config import secrets

    if args.action == "new-key":
        print(secrets.new_key())
        return 0
    # Read from stdin or a prompt, never argv: argv lands in shell history and `ps`.
    value = (
        sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("value: ")
    )
    if not value:
        raise CallqaError("no value given on standard input")
    print(f"{{fernet: {secrets.encrypt(value)}}}")
    return 0


def _gate_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="date_from", metavar="YYYY-MM-DD", help="calls started on or after this day"
    )
    parser.add_argument(
        "--to", dest="date_to", metavar="YYYY-MM-DD", help="calls started on or before this day"
    )
    parser.add_argument("--operator", help="only this operator's calls")
    parser.add_argument("--category", help="only calls of this category")
    parser.add_argument("--min-duration", type=float, metavar="S", help="at least S seconds long")
    parser.add_argument("--max-duration", type=float, metavar="S", help="at most S seconds long")


def add_parsers(sub) -> None:
    stage = sub.add_parser(
        "stage",
        help="stage recordings by hand, and the staging gate (list, approve, reject)",
        description=(
            "Calls reach the warehouse's staged_calls table from `stage add`, CRM sensors and "
            "webhooks. For tenants with auto_process on, staged_calls_sensor processes them; "
            "for the others they wait here until approved. `callqa stage FILES` is "
            "`callqa stage add FILES`."
        ),
    )
    actions = stage.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="stage local recordings (file-drop intake by hand)",
        description=(
            "Add recordings to staged_calls. Each becomes a `calls` partition <tenant>__<call "
            "id>: the file stem, or, where the stem is not a valid id, the stem cleaned plus a "
            "short hash of it. Files already staged are left as they are; a call id already "
            "staged for another file is an error. Prints one line per file: partition key, "
            "staged / already staged / collision, path."
        ),
    )
    add.add_argument("paths", nargs="+", help="audio files or folders of them")
    add.add_argument("--tenant", default="demo", help="tenant the calls belong to")
    add.add_argument("--category", default=None, help="call category, selects the preset")
    add.add_argument("--operator", default=None, help="operator who took the calls")
    add.set_defaults(func=cmd_stage_add)

    listing = actions.add_parser(
        "list",
        help="list staged calls (default: those waiting at the gate)",
        description="Prints partition key, status, start, operator, category, duration, source.",
    )
    listing.add_argument("--tenant", help="only this tenant's calls")
    listing.add_argument(
        "--status", action="append", choices=GATE_STATUSES, help="repeatable; default: staged"
    )
    listing.add_argument("--limit", type=int, default=None)
    _gate_filters(listing)
    listing.set_defaults(func=cmd_stage_list)

    for action, verb in (("approve", "process"), ("reject", "not process")):
        decide = actions.add_parser(
            action,
            help=f"the staging gate: {verb} these calls",
            description=(
                f"{action.capitalize()} calls named by id (or partition key), or every waiting "
                "call that matches the filters with --matching. "
                + (
                    "Approved calls get a new staging id, so staged_calls_sensor launches them "
                    "on its next tick whatever the tenant's auto_process says."
                    if action == "approve"
                    else "Rejected calls stay in staged_calls with status rejected."
                )
            ),
        )
        decide.add_argument("call_ids", nargs="*", help="external call ids or partition keys")
        decide.add_argument("--tenant", required=True, help="tenant the calls belong to")
        decide.add_argument(
            "--matching",
            dest="all_matching",
            action="store_true",
            help="take every waiting call that matches the filters",
        )
        decide.add_argument(
            "--all", action="store_true", help="with --matching and no filters: every waiting call"
        )
        _gate_filters(decide)
        decide.set_defaults(func=cmd_stage_decide, action=action)

    webhook = sub.add_parser("webhook", help="take calls pushed by CRMs over HTTP")
    webhook_actions = webhook.add_subparsers(dest="webhook_action", required=True, metavar="ACTION")
    serve = webhook_actions.add_parser(
        "serve",
        help="serve the webhook intake (Starlette under uvicorn)",
        description=(
            "POST /webhooks/<tenant>/<secret>, or POST /webhooks/<tenant> with "
            "X-Callqa-Signature: sha256=<HMAC-SHA256 of the body>; the secret is the tenant's "
            "crm.webhook_secret. Form-encoded bodies go to the tenant's adapter (AmoCRM's "
            'pushes); JSON {"calls": [...]} is callqa\'s own format. Calls are staged for '
            "staged_calls_sensor. See docs/crm.md."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=8088, help="default: 8088")
    serve.set_defaults(func=cmd_webhook_serve)

    secret = sub.add_parser(
        "secret",
        help="encrypt a CRM token or webhook secret for tenant config",
        description=(
            "encrypt: reads the value from standard input (or a prompt) and prints "
            "`{fernet: TOKEN}` to paste into a tenant file; the key is CALLQA_SECRET_KEY. "
            "new-key: prints a new Fernet key to set as CALLQA_SECRET_KEY."
        ),
    )
    secret.add_argument("action", choices=["encrypt", "new-key"])
    secret.set_defaults(func=cmd_secret)

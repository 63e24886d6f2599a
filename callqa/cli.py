"""The `callqa` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from callqa import settings
from callqa.cli_eval import add_parsers as add_eval_parsers
from callqa.cli_intake import add_parsers as add_intake_parsers
from callqa.cli_intake import stage_argv
from callqa.errors import CallqaError

if TYPE_CHECKING:
    from callqa.storage.warehouse import Warehouse


@contextmanager
def _warehouse() -> Iterator[Warehouse]:
    """The warehouse at CALLQA_DATABASE_URL (migrated on open), closed afterwards."""
    from callqa.storage.warehouse import Warehouse

    warehouse = Warehouse.from_url(settings.database_url())
    try:
        yield warehouse
    finally:
        warehouse.dispose()


def _day_range(args: argparse.Namespace) -> tuple[date | None, date | None]:
    """--from / --to as days (either may be absent), with errors naming the flag."""
    days: dict[str, date | None] = {}
    for flag, value in (("--from", args.date_from), ("--to", args.date_to)):
        try:
            days[flag] = date.fromisoformat(value) if value else None
        except ValueError:
            raise CallqaError(f"{flag} {value!r}: expected a day as YYYY-MM-DD") from None
    return days["--from"], days["--to"]


def _print_analysis(record, transcribe_s: float) -> None:
    c, s = record.call, record.scores
    print(
        f"Call {c.external_id}  ({c.audio.duration_s:.1f} s, {c.audio.channels} ch, "
        f"{c.audio.codec}; transcribed in {transcribe_s:.1f} s)"
    )
    print(
        f"Scored by {record.scoring.scorer} ({record.scoring.model}), "
        f"prompt version {record.scoring.prompt_version}"
    )
    print()
    for seg in record.transcript.segments:
        print(f"  [{seg.start:6.1f}] {seg.speaker:>8}: {seg.text}")
    print()
    width = max(len(x.name) for x in s.criteria)
    for x in s.criteria:
        print(f"  {x.name:<{width}}  {x.score}/{s.scale.max}  {x.rationale}")
    print(f"\n  Total: {s.total}/100   weakest: {record.weakest.name}")
    m = record.metrics
    print(
        f"  Talk share operator/customer: {m.roles['operator'].talk_share:.0%} / "
        f"{m.roles['customer'].talk_share:.0%}; silence {m.silence_ratio:.0%}; "
        f"interruptions {m.interruption_count}; longest monologue {m.longest_monologue_s:.1f} s"
    )
    print(f"\n  Summary: {record.summary}")
    for r in record.recommendations:
        print(f"  - {r}")


def analyze_path(
    path: Path,
    *,
    tenant: str = "demo",
    category: str | None = None,
    config: settings.Settings | None = None,
):
    """One local recording through the per-call service, with the backends the Dagster
    assets would use for it: the same settings, resources and preset choices."""
    from callqa.calls.backends import backends_from_settings, diarization_backends_from_settings
    from callqa.calls.keys import external_id_from_name
    from callqa.calls.service import analyze_recording
    from callqa.config.registry import default_registry
    from callqa.errors import AudioError

    if not path.is_file():
        raise AudioError(f"{path}: {'not a regular file' if path.exists() else 'file not found'}")
    config = config or settings.load_settings()
    speech, scoring = backends_from_settings(config)
    registry = default_registry()
    preset = registry.preset_for(tenant, category)
    return analyze_recording(
        path.read_bytes(),
        str(path),
        tenant=registry.tenant(tenant),
        preset=preset,
        external_id=external_id_from_name(path.stem),
        stt=speech.for_preset(preset.speech),
        scorer=scoring.for_preset(preset),
        diarization_backends=diarization_backends_from_settings(config),
        category=category,
        max_duration_s=config.max_audio_s,
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    # Flags override like the environment variables do.
    overrides = {
        "scorer": args.scorer,
        "llm_model": args.model,
        "whisper_model": args.whisper_model,
    }
    config = settings.load_settings().model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    result = analyze_path(
        Path(args.path), tenant=args.tenant, category=args.category, config=config
    )
    if args.json:
        print(result.record.model_dump_json(indent=2))
    else:
        _print_analysis(result.record, result.transcribe_s)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from callqa.demo.runner import run_demo

    return run_demo(force=args.force)


def cmd_retry(args: argparse.Namespace) -> int:
    from callqa.config.registry import default_registry

    default_registry().tenant(args.tenant)  # fail early on an unknown tenant
    with _warehouse() as warehouse:
        failed = {
            r["external_id"]: r["error"] for r in warehouse.staged_calls(args.tenant, ["failed"])
        }
        if args.list:
            for external_id, error in failed.items():
                print(f"{args.tenant}__{external_id}\t{error}")
            return 0
        unknown = sorted(set(args.call_ids) - set(failed))
        if unknown:
            raise CallqaError(f"not failed calls of tenant {args.tenant!r}: {', '.join(unknown)}")
        retried = warehouse.retry_failed(args.tenant, args.call_ids or None)
    for external_id in retried:
        print(f"{args.tenant}__{external_id}")
    print(
        f"{len(retried)} failed call(s) staged again; staged_calls_sensor runs them on its next "
        "tick (or re-execute the failed runs from the Dagster UI)",
        file=sys.stderr,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:

    from callqa.config.registry import default_registry
    from callqa.reporting.export import default_path, export_call_scores

    default_registry().tenant(args.tenant)  # fail early on an unknown tenant
    date_from, date_to = _day_range(args)
    out = args.out or str(default_path(args.tenant, date_from, date_to, args.format))
    with _warehouse() as warehouse:
        count = export_call_scores(warehouse, args.tenant, date_from, date_to, args.format, out)
    where = "standard output" if out == "-" else out
    print(
        f"exported {count} call(s) of tenant {args.tenant!r} ({date_from} to {date_to}) "
        f"as {args.format} to {where}",
        file=sys.stderr,
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from callqa.schemas import generated_schemas, write_schemas

    if args.write:
        for path in write_schemas():
            print(f"wrote {path}")
        return 0
    print(json.dumps(generated_schemas()[args.name], indent=2))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from callqa.storage.migrate import current_revision
    from callqa.storage.warehouse import Warehouse

    url = settings.database_url()
    warehouse = Warehouse.from_url(url)
    print(f"{settings.redact_url(url)} is at revision {current_revision(warehouse.engine)}")
    return 0


def cmd_dagster_home(args: argparse.Namespace) -> int:
    from callqa.instance import ensure_dagster_home

    print(ensure_dagster_home())
    return 0


def _only_stale(warehouse, tenant: str, rows: list[dict], preset: str | None) -> list[dict]:
    """The rows whose analysis was scored with a prompt version that is no longer any of
    its preset's current ones (control or an A/B variant)."""
    from callqa.config.registry import default_registry
    from callqa.scoring.versions import current_prompt_versions

    versions = current_prompt_versions()
    if preset is not None:
        default_registry().preset(preset)  # an unknown preset is an error, not "none stale"
        versions = {preset: versions[preset]}
    stale = set(warehouse.stale_analyses(tenant, versions))
    return [r for r in rows if r["external_id"] in stale]


def cmd_backfill(args: argparse.Namespace) -> int:
    """Select a tenant's calls from the warehouse and submit ONE Dagster asset backfill for
    exactly their `calls` partitions (see callqa/assets/partitions.py for how)."""

    from callqa.assets.partitions import (
        CALL_ASSET_NAMES,
        CALLS_PARTITIONS,
        backfill_params,
        launch_backfill,
    )
    from callqa.calls.keys import make_key
    from callqa.config.registry import default_registry

    default_registry().tenant(args.tenant)  # fail early on an unknown tenant
    day_from, day_to = _day_range(args)
    assets = [a.strip() for a in args.assets.split(",") if a.strip()]
    unknown = sorted(set(assets) - set(CALL_ASSET_NAMES))
    if unknown or not assets:
        raise CallqaError(f"--assets {args.assets!r}: choose from {', '.join(CALL_ASSET_NAMES)}")
    assets = [a for a in CALL_ASSET_NAMES if a in assets]  # dependency order
    with _warehouse() as warehouse:
        rows = warehouse.calls_for_backfill(
            args.tenant,
            day_from=day_from,
            day_to=day_to,
            operators=args.operators,
            statuses=args.statuses,
        )
        if args.stale:
            rows = _only_stale(warehouse, args.tenant, rows, args.preset)
    keys = [make_key(args.tenant, r["external_id"]).partition_key for r in rows]
    filters = [f"tenant {args.tenant}"]
    if args.stale:
        filters.append(f"scored with an older version of {args.preset or 'their preset'}")
    if day_from or day_to:
        filters.append(f"days {day_from or '…'} to {day_to or '…'}")
    if args.operators:
        filters.append(f"operator {', '.join(args.operators)}")
    if args.statuses:
        filters.append(f"status {', '.join(args.statuses)}")
    selection = "; ".join(filters)
    if not keys:
        print(f"no calls match ({selection}); no backfill submitted", file=sys.stderr)
        return 0
    if args.dry_run:
        for key, row in zip(keys, rows, strict=True):
            print(f"{key}\t{row['status']}\t{row['operator'] or ''}")
        print(
            f"{len(keys)} call(s) would be backfilled ({selection}): {', '.join(assets)}",
            file=sys.stderr,
        )
        return 0

    import os

    import dagster as dg

    from callqa.assets.pools import ensure_pool_limits
    from callqa.instance import ensure_dagster_home

    home = ensure_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)  # the instance `./dev ui` and the daemon use
    instance = dg.DagsterInstance.get()
    try:
        # A call staged for a tenant without auto_process has no partition yet; adding one
        # that exists is a no-op.
        instance.add_dynamic_partitions(CALLS_PARTITIONS, keys)
        # The pool that bounds how many batches run at once, as the sensor creates it.
        ensure_pool_limits(instance, settings.load_settings().call_slots)
    finally:
        instance.dispose()
    params = backfill_params(
        keys,
        assets,
        title=f"callqa backfill: {len(keys)} call(s), {', '.join(assets)}",
        description=f"Selected by `callqa backfill` from the warehouse: {selection}.",
        tags={"callqa/tenant": args.tenant, "callqa/backfill": "cli"},
    )
    backfill_id = launch_backfill(params, home)
    print(backfill_id)
    print(
        f"submitted backfill {backfill_id}: {len(keys)} call(s) ({selection}), assets "
        f"{', '.join(assets)}; the Dagster daemon runs it (./dev ui: Runs → Backfills)",
        file=sys.stderr,
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a tenant's HTML report (the `tenant_report` asset's page) on demand."""

    from callqa.config.registry import default_registry
    from callqa.reporting.report import money, write_report

    tenant = default_registry().tenant(args.tenant)  # fail early on an unknown tenant
    date_from, date_to = _day_range(args)
    if date_from and date_to and date_from > date_to:
        raise CallqaError(f"--from {date_from} is after --to {date_to}")
    out = Path(args.out) if args.out else settings.reports_dir() / tenant.id
    with _warehouse() as warehouse:
        report = write_report(
            warehouse, tenant.id, out, tenant_name=tenant.name, date_from=date_from, date_to=date_to
        )
    h = report.headline
    print(report.index)
    mean = "-" if h.mean_total is None else f"{h.mean_total:.1f}"
    print(
        f"report for tenant {tenant.id!r} ({h.period}): {h.calls} call(s), mean total {mean}, "
        f"weakest criterion {h.weakest_criterion or '-'}, cost {money(h.cost_usd)}; "
        f"{report.call_pages} call page(s), {report.size_bytes / 1e6:.1f} MB",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callqa",
        description="Call-quality analytics: transcribe, diarize and score calls on Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    analyze = sub.add_parser(
        "analyze",
        help="analyze one local recording and print the result",
        description=(
            "Run the per-call pipeline (decode, transcribe, diarize, score) on one local audio "
            "file (WAV, FLAC, MP3, OGG). Stereo files: channel 0 = operator, 1 = customer, "
            "unless the tenant's channel map says otherwise. The call's preset picks the speech "
            "provider and the scorer; the same environment overrides as in Dagster apply "
            f"({settings.STT_ENV}, {settings.SCORER_ENV}, {settings.LLM_MODEL_ENV}, "
            f"{settings.WHISPER_MODEL_ENV}, ...). The LLM scorer reads its endpoint and key "
            f"from {settings.LLM_API_BASE_ENV} / {settings.LLM_API_KEY_ENV} or the provider's "
            "usual variables (OPENAI_API_KEY, OPENROUTER_API_KEY, ...)."
        ),
    )
    analyze.add_argument("path", help="audio file")
    analyze.add_argument("--tenant", default="demo", help="tenant config to use (default: demo)")
    analyze.add_argument("--category", default=None, help="call category, selects the preset")
    analyze.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object valid against the analysis schema",
    )
    analyze.add_argument(
        "--scorer",
        choices=["rules", "llm"],
        default=None,
        help=f"rules: offline keyword rules; llm: litellm (default: {settings.SCORER_ENV}, "
        "else the preset's)",
    )
    analyze.add_argument(
        "--model",
        default=None,
        help="litellm model for --scorer llm, e.g. openai/gpt-4o-mini, "
        f"openrouter/..., ollama/llama3.1 (default: {settings.LLM_MODEL_ENV}, else the preset's)",
    )
    analyze.add_argument(
        "--whisper-model",
        default=None,
        help=(
            "faster-whisper model name or path (default: CALLQA_WHISPER_MODEL, else the "
            "preset's, tiny.en); CALLQA_WHISPER_DEVICE / _COMPUTE_TYPE set device and precision"
        ),
    )
    analyze.set_defaults(func=cmd_analyze)

    demo = sub.add_parser(
        "demo",
        help="process the bundled sample calls through Dagster and print the results",
        description=(
            "Stage the bundled sample calls for the demo tenant, start Dagster's daemon on the "
            "local instance so that staged_calls_sensor launches their runs and "
            "tenant_aggregates_sensor rebuilds the tenant's aggregates, then print the "
            f"results. State lives under {settings.DATA_DIR_ENV} (default ./.callqa)."
        ),
    )
    demo.add_argument("--force", action="store_true", help="re-process calls already done")
    demo.set_defaults(func=cmd_demo)

    add_intake_parsers(sub)
    add_eval_parsers(sub)

    retry = sub.add_parser(
        "retry",
        help="stage failed calls again so the sensor re-processes them",
        description=(
            "A call whose processing failed (bad recording, failed check, provider error) "
            "stays in staged_calls with status 'failed' and the error. This stages it again "
            "with a new id, so staged_calls_sensor launches a new run for it."
        ),
    )
    retry.add_argument("call_ids", nargs="*", help="external call ids (default: every failed call)")
    retry.add_argument("--tenant", default="demo", help="tenant the calls belong to")
    retry.add_argument("--list", action="store_true", help="only list failed calls and errors")
    retry.set_defaults(func=cmd_retry)

    export = sub.add_parser(
        "export",
        help="export a tenant's scored calls (one row per call) as CSV or Parquet",
        description=(
            "Write one row per analysed call with its call day in [--from, --to] (inclusive): "
            "the columns of the call_scores view (docs/data-dictionary.md), one column per "
            "criterion, for BI tools. Reads the warehouse at "
            f"{settings.DATABASE_URL_ENV}."
        ),
    )
    export.add_argument("--tenant", required=True, help="tenant whose calls to export")
    export.add_argument(
        "--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first call day"
    )
    export.add_argument(
        "--to", dest="date_to", required=True, metavar="YYYY-MM-DD", help="last call day"
    )
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="file to write (default: call_scores_<tenant>_<from>_<to>.<format> in the current "
        "folder; - writes CSV to standard output)",
    )
    export.set_defaults(func=cmd_export)

    schema = sub.add_parser("schema", help="print or write the published JSON schemas")
    schema.add_argument(
        "name", nargs="?", default="analysis", choices=["analysis", "tenant", "preset"]
    )
    schema.add_argument("--write", action="store_true", help="write all to callqa/schemas/")
    schema.set_defaults(func=cmd_schema)

    db = sub.add_parser("db-upgrade", help=f"migrate the warehouse at {settings.DATABASE_URL_ENV}")
    db.set_defaults(func=cmd_db_upgrade)

    backfill = sub.add_parser(
        "backfill",
        help="re-process a tenant's calls chosen by date, operator or status, as one backfill",
        description=(
            "Select a tenant's calls from the warehouse (every staged call, in any state) by "
            "call day (start time, or staging time if unknown; UTC, inclusive), operator and "
            "status, and submit one Dagster backfill of exactly those `calls` partitions for "
            "the chosen assets (default: all four; `--assets scored_analysis` re-scores "
            "without transcribing again). Prints the backfill id; the Dagster daemon runs it "
            "(`./dev ui` starts one). Uses the instance in DAGSTER_HOME (default "
            "<CALLQA_DATA_DIR>/dagster_home)."
        ),
    )
    backfill.add_argument("--tenant", required=True, help="tenant whose calls to backfill")
    backfill.add_argument(
        "--from", dest="date_from", default=None, metavar="YYYY-MM-DD", help="first call day"
    )
    backfill.add_argument(
        "--to", dest="date_to", default=None, metavar="YYYY-MM-DD", help="last call day"
    )
    backfill.add_argument(
        "--operator",
        dest="operators",
        action="append",
        default=None,
        metavar="NAME",
        help="only this operator's calls (repeat for several)",
    )
    backfill.add_argument(
        "--status",
        dest="statuses",
        action="append",
        default=None,
        choices=["staged", "queued", "processed", "failed"],
        help="only calls in this staging status (repeat for several; default: any)",
    )
    backfill.add_argument(
        "--assets",
        default="raw_audio,transcript,diarized_transcript,scored_analysis",
        metavar="A,B",
        help="comma-separated per-call assets to materialize (default: all four)",
    )
    backfill.add_argument(
        "--stale",
        action="store_true",
        help="only calls scored with an older version of their preset (re-score after a "
        "preset change: with --assets scored_analysis,crm_pushback)",
    )
    backfill.add_argument(
        "--preset", default=None, metavar="ID", help="with --stale: only this preset's calls"
    )
    backfill.add_argument(
        "--dry-run", action="store_true", help="list the selected calls; submit nothing"
    )
    backfill.set_defaults(func=cmd_backfill)

    report = sub.add_parser(
        "report",
        help="write a tenant's HTML report (charts, lowest calls with evidence)",
        description=(
            "Write the tenant report that the tenant_report asset builds: one self-contained "
            "HTML page (works offline) with the score trend, criteria by operator, totals, "
            "weakest criteria, recurring objections, cost per day and the ten lowest calls, "
            "plus a page per linked call under calls/. Reads the warehouse at "
            f"{settings.DATABASE_URL_ENV}; trend, heat map and cost come from the daily "
            "aggregates (the tenant_aggregates job rebuilds them)."
        ),
    )
    report.add_argument("--tenant", required=True, help="tenant to report on")
    report.add_argument(
        "--from", dest="date_from", default=None, metavar="YYYY-MM-DD", help="first call day"
    )
    report.add_argument(
        "--to", dest="date_to", default=None, metavar="YYYY-MM-DD", help="last call day"
    )
    report.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"folder for index.html and calls/ (default: {settings.REPORTS_DIR_ENV}, else "
        "<CALLQA_DATA_DIR>/reports, plus /<tenant>)",
    )
    report.set_defaults(func=cmd_report)

    home = sub.add_parser(
        "dagster-home",
        help="create the local Dagster instance folder if missing and print its path",
        description=(
            "Ensure DAGSTER_HOME (default: <CALLQA_DATA_DIR>/dagster_home) holds the local "
            "instance's dagster.yaml (SQLite storage, run monitoring, run retries; see "
            "callqa/instance.py) and print the folder. An edited dagster.yaml is left as it is."
        ),
    )
    home.set_defaults(func=cmd_dagster_home)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(stage_argv(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except CallqaError as exc:
        print(f"callqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

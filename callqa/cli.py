"""The `callqa` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from callqa import settings
from callqa.errors import CallqaError


def _scorer(kind: str, model: str | None):
    if kind == "rules":
        from callqa.scoring.rules import RulesScorer

        return RulesScorer()
    from callqa.scoring.llm import LLMScorer

    return LLMScorer(
        model=model or os.environ.get(settings.LLM_MODEL_ENV) or None,
        api_base=os.environ.get(settings.LLM_API_BASE_ENV) or None,
        api_key=os.environ.get(settings.LLM_API_KEY_ENV) or None,
    )


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


def cmd_analyze(args: argparse.Namespace) -> int:
    from callqa.pipeline import analyze_file

    result = analyze_file(
        Path(args.path),
        tenant=args.tenant,
        category=args.category,
        scorer=_scorer(args.scorer, args.model),
        whisper_model=args.whisper_model,
    )
    if args.json:
        print(result.record.model_dump_json(indent=2))
    else:
        _print_analysis(result.record, result.transcribe_s)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from callqa.demo.runner import run_demo

    return run_demo(force=args.force)


def cmd_stage(args: argparse.Namespace) -> int:
    from callqa.config.registry import default_registry
    from callqa.errors import AudioError
    from callqa.intake import AUDIO_SUFFIXES, StagedFile, stage_files
    from callqa.storage.warehouse import Warehouse

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
    warehouse = Warehouse.from_url(settings.database_url())
    warehouse.upsert_tenant(tenant.id, tenant.name, tenant.model_dump(mode="json"))
    files = [StagedFile(path=p, operator=args.operator, category=args.category) for p in paths]
    for key in stage_files(warehouse, args.tenant, files):
        print(key.partition_key)
    warehouse.dispose()
    print(
        f"staged {len(files)} call(s) in {settings.redact_url(settings.database_url())}; "
        "staged_calls_sensor launches them while the Dagster daemon runs (./dev ui)",
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
            "unless the tenant's channel map says otherwise. The LLM scorer reads its endpoint "
            f"and key from {settings.LLM_API_BASE_ENV} / {settings.LLM_API_KEY_ENV} or the "
            "provider's usual variables (OPENAI_API_KEY, OPENROUTER_API_KEY, ...)."
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
        default="rules",
        help="rules: offline keyword rules (default); llm: litellm",
    )
    analyze.add_argument(
        "--model",
        default=None,
        help="litellm model for --scorer llm, e.g. openai/gpt-4o-mini, "
        "openrouter/..., ollama/llama3.1 (default: the preset's)",
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
            "Stage the bundled sample calls for the demo tenant, run each through the Dagster "
            "job `process_call` on a local instance, rebuild the tenant aggregates and print "
            f"them. State lives under {settings.DATA_DIR_ENV} (default ./.callqa)."
        ),
    )
    demo.add_argument("--force", action="store_true", help="re-process calls already done")
    demo.set_defaults(func=cmd_demo)

    stage = sub.add_parser(
        "stage",
        help="stage local recordings for Dagster to process (file-drop intake)",
        description=(
            "Add recordings to the warehouse's staged_calls table. Each becomes a `calls` "
            "partition <tenant>__<file stem>; for tenants with auto_process on, "
            "staged_calls_sensor launches a process_call run for it. Files already staged "
            "are left as they are."
        ),
    )
    stage.add_argument("paths", nargs="+", help="audio files or folders of them")
    stage.add_argument("--tenant", default="demo", help="tenant the calls belong to")
    stage.add_argument("--category", default=None, help="call category, selects the preset")
    stage.add_argument("--operator", default=None, help="operator who took the calls")
    stage.set_defaults(func=cmd_stage)

    schema = sub.add_parser("schema", help="print or write the published JSON schemas")
    schema.add_argument(
        "name", nargs="?", default="analysis", choices=["analysis", "tenant", "preset"]
    )
    schema.add_argument("--write", action="store_true", help="write all to callqa/schemas/")
    schema.set_defaults(func=cmd_schema)

    db = sub.add_parser("db-upgrade", help=f"migrate the warehouse at {settings.DATABASE_URL_ENV}")
    db.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CallqaError as exc:
        print(f"callqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

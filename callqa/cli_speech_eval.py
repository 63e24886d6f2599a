"""`callqa eval speech [DIR]`: speech recognition and diarization quality on a labelled set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from callqa.errors import CallqaError


def cmd_eval_speech(args: argparse.Namespace) -> int:
    from callqa.evaluation.speech import (
        evaluate_speech,
        format_speech_report,
        load_speech_set,
        report_json,
    )
    from callqa.speech.whisper import WhisperSettings

    items = load_speech_set(Path(args.dir) if args.dir else None)
    if args.files:
        wanted = set(args.files)
        unknown = wanted - {item.id for item in items}
        if unknown:
            raise CallqaError(
                f"{args.dir or 'speech set'}: no file(s) {', '.join(sorted(unknown))}"
            )
        items = [item for item in items if item.id in wanted]
    if args.limit:
        items = items[: args.limit]
    device = args.device
    whisper = WhisperSettings(
        model=args.model,
        device=device,
        compute_type="float16" if device == "cuda" else "int8",
    )
    backends = list(dict.fromkeys(args.backend or ["auto"]))  # repeated: each once, in order

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = evaluate_speech(
        items,
        backends,
        whisper,
        progress=None if args.json else progress,
        baseline=args.baseline,
    )
    print(report_json(report) if args.json else format_speech_report(report))
    return 0


def add_parser(eval_actions) -> None:
    """The `speech` action of `callqa eval`."""
    from callqa.evaluation.speech import BACKENDS, COLLAR_EACH_SIDE_S

    speech = eval_actions.add_parser(
        "speech",
        help="measure speech-to-text and diarization on a labelled speech set",
        description=(
            "Run the speech pipeline (decode, faster-whisper, diarization) on every file of a "
            "labelled speech set (<id>.flac with <id>.rttm speaker turns and <id>.json "
            "reference lines; default: the bundled synthetic set) and print per file and "
            "overall: WER on normalised text, diarization error rate with overlap scored at "
            f"collar 0 and ±{COLLAR_EACH_SIDE_S} s, the share of words given to the right "
            "speaker role, whether the operator was identified, and speed (audio seconds per "
            "wall second) for transcription and each diarization backend."
        ),
    )
    speech.add_argument(
        "dir", nargs="?", default=None, metavar="DIR", help="speech set folder (default: bundled)"
    )
    speech.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        default=None,
        help="diarization backend; repeat to compare several (default: auto)",
    )
    speech.add_argument(
        "--model", default="tiny.en", help="faster-whisper model (default: tiny.en, bundled)"
    )
    speech.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where whisper runs"
    )
    speech.add_argument("--files", nargs="+", metavar="ID", help="only these call ids")
    speech.add_argument("--limit", type=int, default=None, help="only the first N calls")
    speech.add_argument(
        "--baseline",
        action="store_true",
        help="also transcribe each file with the bare model (mixed to mono, no VAD) and "
        "print its WER, to compare with the pipeline's",
    )
    speech.add_argument("--json", action="store_true", help="print the figures as JSON")
    speech.set_defaults(func=cmd_eval_speech)

#!/usr/bin/env python3
"""Write pyannote.audio's bundled sample — a real two-speaker telephone conversation, 30 s,
with reference speaker turns (RTTM) and a transcript (STM) — as a labelled speech set
folder for `callqa eval speech`. Needs pyannote.audio installed (`./dev pyannote`); the
recording is read from that package, not copied into this repository.

    .venv/bin/python scripts/real_speech_sample.py /tmp/real-set
    .venv/bin/callqa eval speech /tmp/real-set --backend embedding --backend pause

The call has no operator: the first speaker is labelled "operator" so that the role
figures mean "the speaker who opened the call was found"; read them with that in mind.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import wave
from pathlib import Path

CALL_ID = "real-phone-sample"


def sample_dir() -> Path:
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pyannote.audio is not installed: run ./dev pyannote first")
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


def write_set(out: Path) -> Path:
    src = sample_dir()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "sample.wav", out / f"{CALL_ID}.wav")
    lines = []
    for row in (src / "sample.stm").read_text().splitlines():
        _, _, speaker, start, end, text = row.split(maxsplit=5)
        lines.append(
            {"speaker": speaker.lower(), "start": float(start), "end": float(end), "text": text}
        )
    first = lines[0]["speaker"]
    for line in lines:
        line["role"] = "operator" if line["speaker"] == first else "customer"
    # The RTTM's anonymous labels, in order of first appearance, are the STM's speakers.
    rttm_labels: list[str] = []
    turns = []
    for row in (src / "sample.rttm").read_text().splitlines():
        fields = row.split()
        if fields[7] not in rttm_labels:
            rttm_labels.append(fields[7])
        turns.append((float(fields[3]), float(fields[4]), fields[7]))
    speakers = list(dict.fromkeys(line["speaker"] for line in lines))
    names = dict(zip(rttm_labels, speakers, strict=True))
    (out / f"{CALL_ID}.rttm").write_text(
        "".join(
            f"SPEAKER {CALL_ID} 1 {start:.3f} {dur:.3f} <NA> <NA> {names[label]} <NA> <NA>\n"
            for start, dur, label in turns
        )
    )
    with wave.open(str(out / f"{CALL_ID}.wav")) as w:
        duration, rate, channels = (
            w.getnframes() / w.getframerate(),
            w.getframerate(),
            w.getnchannels(),
        )
    label = {
        "id": CALL_ID,
        "audio": f"{CALL_ID}.wav",
        "title": "pyannote.audio's sample: a real two-speaker telephone conversation",
        "notes": "real voices; no operator: the first speaker is labelled operator",
        "duration_s": round(duration, 3),
        "sample_rate": rate,
        "channels": "mono" if channels == 1 else "stereo",
        "channel_map": None,
        "telephone_band": True,
        "company": "",  # no company: nobody greets with one
        "roles": {s: ("operator" if s == first else "customer") for s in speakers},
        "voices": {},
        "lines": lines,
    }
    (out / f"{CALL_ID}.json").write_text(json.dumps(label, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the labelled set into")
    print(write_set(parser.parse_args().out))


if __name__ == "__main__":
    main()

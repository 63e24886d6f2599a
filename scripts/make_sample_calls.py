#!/usr/bin/env python3
"""Generate the synthetic stereo sales-call recordings used by the callqa demo.

Each call is a short scripted conversation between an operator of the
fictional company "Northwind Telecom" and a customer.  Every line is spoken by
espeak-ng, the lines are laid out on a timeline with natural pauses (and a few
deliberate interruptions in the poor calls), and the result is written as a
16 kHz, 16-bit stereo FLAC:

    channel 0 (left)  = operator
    channel 1 (right) = customer

This mirrors how call-centre recorders usually store calls (one party per
channel), so the pipeline can tell the parties apart by channel alone.

Alongside the audio the script writes ``manifest.json`` with the call metadata
and the ground-truth script (speaker, text and start/end time of every line),
so tests can compare transcripts and scores against what was actually said.

Only the Python standard library is used; the external tools ``espeak-ng`` and
``sox`` (with FLAC support) must be on PATH.  Output is deterministic: running
the script twice with the same tool versions produces byte-identical files.

Usage:
    python3 scripts/make_sample_calls.py                 # -> callqa/demo/calls
    python3 scripts/make_sample_calls.py --out /tmp/calls
"""

from __future__ import annotations

import argparse
import array
import json
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

# espeak-ng always synthesizes at 22050 Hz; we mix at that rate and let sox
# do a single high-quality resample to the target rate at the very end.
SYNTH_RATE = 22050
TARGET_RATE = 16000
# Linear gain applied before encoding (about -10 dB; see wav_to_flac).
OUTPUT_GAIN = 0.3

# espeak's nominal words per minute.  Measured over whole lines this comes out
# at roughly 150-170 wpm: a normal telephone pace that a small ASR model
# (whisper tiny.en) still transcribes reliably.
SPEECH_WPM = 165

# Silence (in seconds) before the first line: a recording normally starts
# with the line opening, not with the first word.
LEAD_IN_S = 0.5
TAIL_S = 0.6

# Natural pause between turns when a line does not specify its own gap.
MIN_GAP_S = 0.3
MAX_GAP_S = 0.9

# Samples whose absolute value stays below this are treated as silence when
# trimming espeak's built-in leading/trailing padding, so our gaps are exact.
TRIM_THRESHOLD = 300
TRIM_PAD_S = 0.05

# Respellings fed to espeak-ng instead of the written word, where espeak's
# default pronunciation is misheard by the speech model.  The manifest keeps
# the normal spelling, which is what a transcript should contain.
PRONUNCIATIONS = {
    "Telecom": "Tele com",
}

# Resolved from the script's location so the default works from any cwd.
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "callqa" / "demo" / "calls"

OPERATOR_CHANNEL = 0
CUSTOMER_CHANNEL = 1

# Operators speak US English.  Customers use a different accent and/or gender
# in every call so the two parties sound clearly different even without
# looking at the channels.  These variants were among the ones whisper tiny.en
# transcribed best in a comparison of espeak-ng's English voices.
OPERATOR_VOICES = {
    "anna": {"voice": "en-us+f2", "pitch": 45},
    "boris": {"voice": "en-us+m1", "pitch": 45},
}


@dataclass
class Line:
    speaker: str  # "operator" or "customer"
    text: str
    # Seconds between the end of the previous line and the start of this one.
    # Negative values make this line start before the previous one ends
    # (an interruption / overlap).  None picks a natural random pause.
    gap: float | None = None


@dataclass
class Call:
    external_id: str
    operator: str
    started_at: str
    expected_quality: str
    title: str
    customer_voice: str
    customer_pitch: int
    lines: list[Line] = field(default_factory=list)
    category: str = "sales"


def op(text: str, gap: float | None = None) -> Line:
    return Line("operator", text, gap)


def cu(text: str, gap: float | None = None) -> Line:
    return Line("customer", text, gap)


# --------------------------------------------------------------------------
# The scripted calls.  Good calls follow the textbook structure (greeting with
# name and company, open discovery questions, presentation with concrete
# benefits, objection handling, closing with next steps, polite words).  Poor
# calls deliberately miss most of it.  Sentences are kept short and plain so a
# small speech model transcribes them reliably.
# --------------------------------------------------------------------------
CALLS: list[Call] = [
    Call(
        external_id="call-001",
        operator="anna",
        started_at="2026-11-19T09:12:00Z",
        expected_quality="good",
        title="Dental office upgrades to Business Fiber",
        customer_voice="en-gb-x-rp+m2",
        customer_pitch=48,
        lines=[
            op(
                "Good morning, thank you for calling Northwind Telecom, my name is Anna. "
                "How can I help you today?"
            ),
            cu("Hi. Our internet is very slow."),
            op("I am sorry to hear that. How many people work there?"),
            cu("Eight people."),
            op("What do you use the internet for?"),
            cu("Email and video calls."),
            op("Our Business Fiber plan is forty dollars a month, and it includes a free router."),
            cu("That sounds too expensive."),
            op("I understand. However, it includes two phone lines, so you save money."),
            cu("Okay, sounds good."),
            op(
                "Shall we schedule the installation for Tuesday? "
                "I will send you the contract by email today."
            ),
            cu("Yes, please."),
            op("Thank you for your time. Have a great day."),
        ],
    ),
    Call(
        external_id="call-002",
        operator="boris",
        started_at="2026-11-19T10:40:00Z",
        expected_quality="poor",
        title="Curt reply to a store owner asking about phone lines",
        customer_voice="en-gb+f3",
        customer_pitch=60,
        lines=[
            op("Yeah, what do you want?"),
            cu("Hello. I need new phone lines for my store."),
            op("Phone lines are thirty dollars each."),
            cu("That sounds too expensive. Is there a cheaper option, or a package with internet?"),
            # Operator cuts the customer off before the question is finished.
            op("Well, that's the price, take it or leave it.", gap=-1.2),
            cu("What is included?"),
            op("I don't know. It's just a phone line."),
            cu("And the installation?"),
            op("That's not my problem.", gap=0.3),
            cu("So who can help me?"),
            op("Call the technical team, not me."),
            cu("Okay, I will call someone else."),
            op("Whatever."),
        ],
    ),
    Call(
        external_id="call-003",
        operator="anna",
        started_at="2026-11-19T11:05:00Z",
        expected_quality="good",
        title="Law firm switches from another provider",
        customer_voice="en-gb+m1",
        customer_pitch=42,
        lines=[
            op(
                "Good morning, thank you for calling Northwind Telecom, my name is Anna. "
                "How may I help you today?"
            ),
            cu("Hello. We need new phones."),
            op("Happy to help. Could you tell me how many phones you need?"),
            cu("Twelve phones."),
            op("How do you use the phones today?"),
            cu("Mostly calls with clients."),
            op("Our Office Voice plan is ten dollars per phone. It includes unlimited calls."),
            cu("We already have a provider."),
            op(
                "I understand. Actually, you save thirty percent, "
                "and we move your numbers for free."
            ),
            cu("Okay, good."),
            op("Shall we book a setup call for Monday? I will send you the offer by email today."),
            cu("Yes, please."),
            op("Thank you for your time. Have a great day."),
        ],
    ),
    Call(
        external_id="call-004",
        operator="boris",
        started_at="2026-11-20T09:30:00Z",
        expected_quality="good",
        title="Cafe owner buys internet with a backup line",
        customer_voice="en-us+f5",
        customer_pitch=58,
        lines=[
            op(
                "Good morning, thank you for calling Northwind Telecom, my name is Boris. "
                "How can I help you today?"
            ),
            cu("I need internet for my cafe."),
            op("How many guests use your wireless each day?"),
            cu("Maybe fifty."),
            op("Which is more important, the speed or the price?"),
            cu("Speed. Our card machines must work."),
            op(
                "Our Business Plus plan is sixty dollars a month. "
                "It includes guest wireless and a free backup line."
            ),
            cu("That is a bit expensive for me."),
            op("I understand. However, with the backup line you never lose a sale."),
            cu("Okay, let's do it."),
            op(
                "Shall we schedule the installation for Thursday? "
                "I will send you the contract by email today."
            ),
            cu("Yes, Thursday works."),
            op("Thank you, have a great day."),
        ],
    ),
    Call(
        external_id="call-005",
        operator="anna",
        started_at="2026-11-20T11:15:00Z",
        expected_quality="poor",
        title="Unhelpful answer to a shop owner asking about internet",
        customer_voice="en-us+m4",
        customer_pitch=40,
        lines=[
            op("Yes, Northwind."),
            cu("Hello. I want business internet for my shop."),
            op("Internet is fifty dollars."),
            cu("How fast is it?"),
            op("Fast enough."),
            cu("But we already have a provider, and we pay less."),
            op("Then stay with them."),
            cu(
                "Does your plan include a router? Our router is very old, and it breaks every week."
            ),
            # Operator talks over the customer's explanation.
            op("I don't know. Look at the website.", gap=-1.5),
            cu("Can you not check it for me?"),
            op("No. I am busy."),
            # Customer gives up and talks over the operator.
            cu("Okay, forget it. Goodbye.", gap=-0.4),
        ],
    ),
    Call(
        external_id="call-006",
        operator="boris",
        started_at="2026-11-20T15:50:00Z",
        expected_quality="poor",
        title="Dismissive reply to a hotel asking about a price",
        customer_voice="en-gb+f5",
        customer_pitch=62,
        lines=[
            op("Hello."),
            cu("Hi. I run a small hotel, and I have a question about your fiber offer."),
            op("Which offer?"),
            cu(
                "The fiber offer for hotels. The price on the website is different "
                "from the price in your email."
            ),
            # Operator interrupts before the customer has finished.
            op("Well, that's the price. Take it or leave it.", gap=-1.0),
            cu("But which price? The website is cheaper."),
            op("I don't know. That's not my problem."),
            cu("That is not very helpful. Can I speak to someone else?"),
            op("Whatever. They will tell you the same thing.", gap=0.4),
            cu("Fine. Goodbye.", gap=-0.3),
        ],
    ),
]


# --------------------------------------------------------------------------
# Audio helpers
# --------------------------------------------------------------------------
def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"error: missing tools: {', '.join(missing)}. Install them with "
            "'apt-get install -y espeak-ng sox libsox-fmt-all'."
        )


def synthesize(text: str, voice: str, pitch: int, workdir: Path) -> array.array:
    """Speak one line with espeak-ng and return its mono int16 samples."""
    wav_path = workdir / "line.wav"
    for word, spoken in PRONUNCIATIONS.items():
        text = text.replace(word, spoken)
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(SPEECH_WPM),
            "-p",
            str(pitch),
            "-w",
            str(wav_path),
            "--stdin",
        ],
        input=text.encode("utf-8"),
        check=True,
    )
    with wave.open(str(wav_path), "rb") as wav:
        # Guard against an espeak build with a different output format, which
        # would silently corrupt the mix.
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SYNTH_RATE):
            raise RuntimeError(f"unexpected espeak-ng output format for voice {voice}")
        samples = array.array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":  # WAV data is little-endian
        samples.byteswap()
    return trim_silence(samples)


def trim_silence(samples: array.array) -> array.array:
    """Cut espeak's padding so that the configured gaps are the real pauses."""
    loud = [i for i, s in enumerate(samples) if abs(s) >= TRIM_THRESHOLD]
    if not loud:
        return samples
    pad = int(TRIM_PAD_S * SYNTH_RATE)
    return samples[max(0, loud[0] - pad) : min(len(samples), loud[-1] + pad)]


def add_into(track: list[int], samples: array.array, offset: int) -> None:
    """Mix samples into a channel track at the given offset, growing it as needed."""
    needed = offset + len(samples)
    if len(track) < needed:
        track.extend([0] * (needed - len(track)))
    for i, s in enumerate(samples):
        track[offset + i] += s


def write_stereo_wav(path: Path, left: list[int], right: list[int]) -> None:
    length = max(len(left), len(right))
    interleaved = array.array("h", [0] * (2 * length))
    for channel, track in ((0, left), (1, right)):
        for i, s in enumerate(track):
            interleaved[2 * i + channel] = max(-32768, min(32767, s))
    if sys.byteorder == "big":
        interleaved.byteswap()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(SYNTH_RATE)
        wav.writeframes(interleaved.tobytes())


def wav_to_flac(wav_path: Path, flac_path: Path) -> None:
    """Attenuate, resample to 16 kHz and encode as FLAC with sox."""
    subprocess.run(
        [
            "sox",
            "-R",  # repeatable mode: no random seeds, so output bytes are stable
            "-D",  # no dither: keeps output deterministic and silence truly silent
            "-V1",  # errors only
            str(wav_path),
            "--comment",
            "",  # drop sox's default "Processed by SoX" tag
            "-b",
            "16",
            "-C",
            "8",  # strongest FLAC compression keeps the demo assets small
            str(flac_path),
            # espeak peaks near full scale; a real call recording sits lower, and
            # quieter samples compress better.  Attenuate before resampling so
            # the resampler cannot clip.
            "vol",
            str(OUTPUT_GAIN),
            "rate",
            "-v",
            str(TARGET_RATE),
        ],
        check=True,
    )


# --------------------------------------------------------------------------
# Call rendering
# --------------------------------------------------------------------------
def render_call(call: Call, out_dir: Path, workdir: Path) -> dict:
    """Render one call to FLAC and return its manifest entry."""
    # Seed per call so each call's pauses are stable regardless of call order.
    rng = random.Random(call.external_id)
    op_voice = OPERATOR_VOICES[call.operator]
    tracks: dict[int, list[int]] = {OPERATOR_CHANNEL: [], CUSTOMER_CHANNEL: []}

    cursor = int(LEAD_IN_S * SYNTH_RATE)  # end of the previous line, in samples
    script = []
    for index, line in enumerate(call.lines):
        if line.speaker == "operator":
            voice, pitch, channel = op_voice["voice"], op_voice["pitch"], OPERATOR_CHANNEL
        else:
            voice, pitch, channel = call.customer_voice, call.customer_pitch, CUSTOMER_CHANNEL

        samples = synthesize(line.text, voice, pitch, workdir)
        gap = line.gap if line.gap is not None else rng.uniform(MIN_GAP_S, MAX_GAP_S)
        start = cursor if index == 0 else max(0, cursor + int(round(gap * SYNTH_RATE)))
        add_into(tracks[channel], samples, start)
        end = start + len(samples)
        # With overlaps the "previous end" is whichever line finishes last.
        cursor = max(cursor, end)

        script.append(
            {
                "speaker": line.speaker,
                "text": line.text,
                "start_s": round(start / SYNTH_RATE, 2),
                "end_s": round(end / SYNTH_RATE, 2),
            }
        )

    total = cursor + int(TAIL_S * SYNTH_RATE)
    for track in tracks.values():
        track.extend([0] * (total - len(track)))

    wav_path = workdir / f"{call.external_id}.wav"
    flac_name = f"{call.external_id}.flac"
    write_stereo_wav(wav_path, tracks[OPERATOR_CHANNEL], tracks[CUSTOMER_CHANNEL])
    wav_to_flac(wav_path, out_dir / flac_name)
    wav_path.unlink()

    return {
        "external_id": call.external_id,
        "file": flac_name,
        "operator": call.operator,
        "category": call.category,
        "started_at": call.started_at,
        "expected_quality": call.expected_quality,
        "title": call.title,
        "duration_s": round(total / SYNTH_RATE, 2),
        "channels": {"operator": OPERATOR_CHANNEL, "customer": CUSTOMER_CHANNEL},
        "voices": {"operator": op_voice["voice"], "customer": call.customer_voice},
        "script": script,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Synthesize the demo sales calls (operator on the left channel, customer "
            "on the right) as 16 kHz stereo FLAC files plus manifest.json. "
            "Requires espeak-ng and sox on PATH."
        )
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: callqa/demo/calls in this repository)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_tools()
    args.out.mkdir(parents=True, exist_ok=True)

    entries = []
    with tempfile.TemporaryDirectory(prefix="callqa-calls-") as tmp:
        for call in CALLS:
            entry = render_call(call, args.out, Path(tmp))
            entries.append(entry)
            print(
                f"{entry['file']}: {entry['duration_s']:.1f} s, "
                f"{call.operator}, {call.expected_quality}"
            )

    manifest_path = args.out / "manifest.json"
    manifest_path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {manifest_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Generate the labelled speech set used by `callqa eval speech`.

Each call is a short scripted conversation between an operator of the fictional
company "Northwind Telecom" and a customer, spoken by espeak-ng (synthetic
voices, not real people) and laid out on a timeline, like the demo calls of
scripts/make_sample_calls.py, whose synthesis helpers this script reuses.  Unlike
the demo, the calls are built to be hard for speaker attribution:

* short backchannels ("uh-huh", "right") spoken inside the other party's turn,
* overlapping speech (interruptions of about a second),
* two voices of the same espeak family with close pitch,
* 8 kHz telephone band (band-pass 300-3400 Hz),
* long silences (5-10 s) and synthetic hold music (chords from `sox synth`),
* a call where the customer speaks first, one where the operator never names
  the company (and the customer does).

Most calls are mono (both parties mixed), a few are stereo (one party per
channel, one with the customer on the left).  For every call the script writes

    <id>.flac   16-bit FLAC (16 kHz, or 8 kHz for telephone-band calls)
    <id>.rttm   reference speaker turns (standard RTTM, one line per spoken line)
    <id>.json   reference lines [{speaker, role, start, end, text}], roles,
                channel layout and a note on what the call tests

Requires espeak-ng and sox (with FLAC support) on PATH, and numpy.  The output is
deterministic: no random numbers, sox in repeatable mode without dither.

Usage:
    .venv/bin/python scripts/make_speech_set.py          # -> callqa/evaluation/speech_set
    .venv/bin/python scripts/make_speech_set.py --out /tmp/set
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample_calls import SYNTH_RATE, require_tools, synthesize  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "callqa" / "evaluation" / "speech_set"
# Quieter than the demo (0.3): a real line sits well below full scale, and quieter
# samples keep the FLAC files small.
OUTPUT_GAIN = 0.15
LEAD_IN_S = 0.5
TAIL_S = 0.6
DEFAULT_GAP_S = 0.5
# Hold music: a slow I-vi-IV-V progression of sine chords (Hz), one chord per second.
HOLD_CHORDS = [
    (261.63, 329.63, 392.00),
    (220.00, 261.63, 329.63),
    (174.61, 220.00, 261.63),
    (196.00, 246.94, 293.66),
]
HOLD_LEVEL = 0.18  # peak of the music relative to full scale, before OUTPUT_GAIN


@dataclass(frozen=True)
class Voice:
    name: str  # the speaker label in RTTM and JSON
    role: str  # "operator" or "customer"
    espeak: str
    pitch: int


@dataclass(frozen=True)
class Line:
    who: str  # "op" or "cu"
    text: str
    # Seconds between the end of the timeline so far and the start of this line;
    # negative starts it that much before (an interruption).
    gap: float = DEFAULT_GAP_S
    # A backchannel: start this far (0-1) into the previous line instead, without
    # moving the timeline on, so the turn it interrupts simply continues.
    inside: float | None = None


@dataclass(frozen=True)
class Hold:
    seconds: float  # hold music (no speech); not in the reference turns
    gap: float = DEFAULT_GAP_S


@dataclass(frozen=True)
class Call:
    id: str
    title: str
    notes: str  # what the call tests
    operator: Voice
    customer: Voice
    lines: list[Line | Hold] = field(default_factory=list)
    stereo: bool = False
    customer_left: bool = False  # stereo only: customer on channel 0
    telephone: bool = False  # 8 kHz, band-pass 300-3400 Hz


def op(text: str, gap: float = DEFAULT_GAP_S, inside: float | None = None) -> Line:
    return Line("op", text, gap, inside)


def cu(text: str, gap: float = DEFAULT_GAP_S, inside: float | None = None) -> Line:
    return Line("cu", text, gap, inside)


ANNA = Voice("anna", "operator", "en-us+f2", 45)
BORIS = Voice("boris", "operator", "en-us+m1", 45)

CALLS: list[Call] = [
    Call(
        id="sp01-baseline",
        title="Clean mono call, clearly different voices",
        notes="Baseline: operator greets and names the company, tidy turn-taking, no overlap.",
        operator=ANNA,
        customer=Voice("george", "customer", "en-gb-x-rp+m2", 48),
        lines=[
            op(
                "Good morning, thank you for calling Northwind Telecom, my name is Anna. "
                "How can I help you today?"
            ),
            cu("Hi. Our office internet keeps dropping every afternoon."),
            op("I am sorry to hear that. How many people use the connection?"),
            cu("About fifteen people, and we make a lot of video calls."),
            op("Which router do you have? Is it the grey one from three years ago?"),
            cu("Yes, that is the one."),
            op("That model is old. I can send you a new router on Thursday, free of charge."),
            cu("Perfect, thank you very much."),
            op("You are welcome. Have a great day."),
        ],
    ),
    Call(
        id="sp02-backchannels",
        title="Mono call with short backchannels inside the other party's turn",
        notes=(
            "Short 'uh-huh', 'yes', 'right', 'okay' spoken while the other party keeps "
            "talking: a diarizer must not cut the long turn or give it to the listener."
        ),
        operator=BORIS,
        customer=Voice("grace", "customer", "en-us+f5", 58),
        lines=[
            op("Good afternoon, Northwind Telecom, this is Boris speaking. What can I do for you?"),
            cu("Hello. I would like to understand my last bill, it is higher than usual."),
            op(
                "Of course. Let me explain the bill. Your plan costs forty dollars a month, "
                "and last month you also made calls abroad, which are charged by the minute, "
                "and there is a one time fee for the new phone line."
            ),
            cu("Uh-huh.", inside=0.3),
            cu("Right.", inside=0.7),
            cu("I see. So the calls abroad are the extra twenty dollars?"),
            op(
                "Yes, exactly. If you call abroad often, our World Saver option costs five "
                "dollars a month and it makes those calls much cheaper."
            ),
            cu("Yes.", inside=0.45),
            cu(
                "My daughter lives in Spain, so I call her every week, usually on Sunday "
                "evening, and we talk for about an hour."
            ),
            op("Okay.", inside=0.5),
            op("Then the World Saver option will save you money. Shall I add it for you?"),
            cu("Yes, please add it."),
            op("Done. Thank you for calling."),
        ],
    ),
    Call(
        id="sp03-overlap",
        title="Mono call with overlapping speech in both directions",
        notes=(
            "The parties talk over each other for about one second several times; "
            "overlap is scored in the diarization error rate."
        ),
        operator=ANNA,
        customer=Voice("oliver", "customer", "en-gb+m1", 42),
        lines=[
            op("Northwind Telecom, Anna speaking, how can I help you?"),
            cu("I have been waiting for a technician since eight o'clock this morning."),
            op("I am very sorry. Could you give me your account number?"),
            cu("It is four five seven two nine. And nobody called me to say he is late."),
            op("I understand, let me check where the technician is right now.", gap=-1.2),
            cu("This is the second time this month.", gap=-0.8),
            op("I can see that he is on his way and will be there in twenty minutes."),
            cu("Twenty minutes? You said that last time too.", gap=-1.0),
            op("I will call you myself if he is not there by ten.", gap=-0.9),
            cu("Alright. Thank you."),
            op("Thank you for your patience. Goodbye."),
        ],
    ),
    Call(
        id="sp04-similar-voices",
        title="Mono call with two voices of the same espeak family and close pitch",
        notes=(
            "Both parties use espeak-ng voice en-us+m1, pitch 45 and 52: voice embeddings "
            "barely separate them, so words and roles must come from other cues."
        ),
        operator=Voice("boris", "operator", "en-us+m1", 45),
        customer=Voice("frank", "customer", "en-us+m1", 52),
        lines=[
            op("Good morning, Northwind Telecom, my name is Boris. How may I help you?"),
            cu("Good morning. I want to move my internet to a new address."),
            op("Congratulations on the new home. When are you moving?"),
            cu("On the fifteenth of next month."),
            op("And what is the new address, please?"),
            cu("Twelve Station Road, in Millbrook."),
            op("Thank you. Fiber is available there, so you can keep the same plan."),
            cu("Good. Will there be a fee for the move?"),
            op("No, moving is free for customers on a yearly contract."),
            cu("Great, then please book it."),
            op("It is booked for the fifteenth. Have a nice day."),
        ],
    ),
    Call(
        id="sp05-telephone-8k",
        title="Mono call in the 8 kHz telephone band",
        notes=(
            "Resampled to 8 kHz and band-passed to 300-3400 Hz like a classic phone line: "
            "less acoustic detail for speech recognition and for voice embeddings."
        ),
        operator=ANNA,
        customer=Voice("henry", "customer", "en-us+m4", 40),
        telephone=True,
        lines=[
            op("Thank you for calling Northwind Telecom, this is Anna. How can I help?"),
            cu("Hello. My mobile phone has no signal at home since Monday."),
            op("I am sorry about that. What is the postcode of your home?"),
            cu("It is north one, seven, double two."),
            op("Thank you. There is maintenance on a mast near you until Friday."),
            cu("Until Friday? I need my phone for work."),
            op("I understand. I can turn on calling over wireless for your number right now."),
            cu("Yes, please do that."),
            op("It is done. Restart your phone and it will work over your home wireless."),
            cu("Thank you, that helps a lot."),
            op("You are welcome. Goodbye."),
        ],
    ),
    Call(
        id="sp06-hold-silence",
        title="Mono call with hold music and long silences",
        notes=(
            "Eight seconds of synthetic hold music (no speech) and two silences of five and "
            "seven seconds: nothing may be transcribed or attributed there, and a long "
            "pause does not mean the speaker changed."
        ),
        operator=BORIS,
        customer=Voice("emma", "customer", "en-gb+f3", 60),
        lines=[
            op("Northwind Telecom, good afternoon, Boris speaking."),
            cu("Hello, I would like to cancel the sports package on my television plan."),
            op("Of course. Could you read me the customer number on your last letter?"),
            cu("One moment, I need to find the letter."),
            cu("Here it is. Three three eight one zero.", gap=5.0),
            op("Thank you. Please hold while I check your contract."),
            Hold(8.0, gap=0.6),
            op(
                "Thank you for holding. The sports package can be cancelled at the end of "
                "this month.",
                gap=0.8,
            ),
            cu("Good. Will I get a confirmation?"),
            op("Yes. Let me send it now. It can take a moment."),
            op("The confirmation is on its way to your email address.", gap=7.0),
            cu("Thank you. Goodbye."),
        ],
    ),
    Call(
        id="sp07-customer-first",
        title="Mono call where the customer speaks first",
        notes=(
            "An outbound callback: the customer answers the phone and speaks first, so "
            "'the first speaker is the operator' is wrong here; the operator names the "
            "company in the second line."
        ),
        operator=ANNA,
        customer=Voice("peter", "customer", "en-gb-x-rp+m2", 44),
        telephone=True,
        lines=[
            cu("Hello, Peter Walsh speaking."),
            op(
                "Hello Mister Walsh, this is Anna from Northwind Telecom. "
                "You asked us to call you back about your contract."
            ),
            cu("Oh yes, thank you for calling back. My contract ends next month."),
            op("That is right. Would you like to hear about our new plans?"),
            cu("Yes, but I do not want to pay more than now."),
            op("Our Home Fiber plan is thirty five dollars, five dollars less than today."),
            cu("And is it faster?"),
            op("Yes, it is twice as fast as your current connection."),
            cu("Then I will take it."),
            op("Wonderful. I will send you the new contract by email today."),
        ],
    ),
    Call(
        id="sp08-no-company-name",
        title="Mono call where the operator never names the company",
        notes=(
            "The operator answers with a plain 'Hello, how can I help?'; only the customer "
            "says 'Northwind Telecom'. A role cue keyed on the company name points at the "
            "wrong speaker; questions and the offer point at the operator."
        ),
        operator=Voice("rachel", "operator", "en-us+f3", 50),
        customer=Voice("tom", "customer", "en-gb+m3", 44),
        telephone=True,
        lines=[
            op("Hello, how can I help you?"),
            cu("Hi, is this Northwind Telecom? I saw your advert for business phones."),
            op("Yes, it is. How many phones does your business need?"),
            cu("We are a small bakery, so maybe three phones."),
            op("Do you also need internet for the bakery?"),
            cu("No, we already have internet."),
            op("Then the Office Voice plan is the best fit. It is ten dollars per phone."),
            cu("That sounds reasonable. Is there a contract?"),
            op("It is a monthly contract, so you can cancel at any time."),
            cu("Good, I will think about it and call back tomorrow."),
            op("Of course. Thank you for calling."),
        ],
    ),
    Call(
        id="sp09-stereo-overlap",
        title="Stereo call with backchannels and overlapping speech",
        notes=(
            "One party per channel (operator left): the channel map gives perfect speaker "
            "turns even where they overlap; a baseline for the channel backend."
        ),
        operator=BORIS,
        customer=Voice("lucy", "customer", "en-gb+f5", 62),
        stereo=True,
        lines=[
            op("Good morning, Northwind Telecom, my name is Boris. How can I help you today?"),
            cu("Good morning. I run a small hotel and the guest wireless is very slow."),
            op(
                "I see. How many rooms does the hotel have, and do the guests mostly stream "
                "videos in the evening?"
            ),
            cu("Mm-hmm.", inside=0.4),
            cu("Twenty rooms, and yes, in the evening it gets very slow."),
            op("Our Business Plus plan gives you five times the speed for sixty dollars."),
            cu("Sixty dollars is more than we pay now.", gap=-0.9),
            op("That is true, but happy guests leave better reviews, and the first month is free."),
            cu("Right.", inside=0.5),
            cu("Okay, let us try it."),
            op("Great. I will send you the contract by email today. Thank you."),
        ],
    ),
    Call(
        id="sp10-stereo-telephone-reversed",
        title="Stereo 8 kHz call, customer on the left channel, with hold music",
        notes=(
            "Telephone band and the customer on channel 0: the channel map must say "
            "left=customer; hold music plays on the operator's channel."
        ),
        operator=Voice("rachel", "operator", "en-us+f3", 50),
        customer=Voice("henry", "customer", "en-us+m4", 40),
        stereo=True,
        customer_left=True,
        telephone=True,
        lines=[
            op("Thank you for calling Northwind Telecom, my name is Rachel. How can I help?"),
            cu("Hello, I was charged twice for my phone bill this month."),
            op("I am sorry about that. Please hold while I look at your account."),
            Hold(7.0, gap=0.5),
            op("Thank you for holding. I can see the double payment.", gap=0.6),
            cu("Can you give the money back?"),
            op("Yes. The refund will be on your account within five working days."),
            cu("Thank you. Will I get an email about it?"),
            op("Yes, you will get an email today. Is there anything else?"),
            cu("No, that is all. Goodbye."),
        ],
    ),
    Call(
        id="sp11-stereo-customer-first",
        title="Stereo call with similar voices where the customer speaks first",
        notes=(
            "Close voices and the customer speaking first do not matter with one party "
            "per channel: the channel backend should score almost perfectly; any error "
            "here comes from speech recognition timing."
        ),
        operator=Voice("boris", "operator", "en-us+m1", 45),
        customer=Voice("frank", "customer", "en-us+m1", 52),
        stereo=True,
        telephone=True,
        lines=[
            cu("Hello?"),
            op("Hello, this is Boris from Northwind Telecom. Is this a good time to talk?"),
            cu("Yes, go ahead."),
            op("You asked about adding a second phone line to your account."),
            cu("That is right, for my home office."),
            op("The second line costs twelve dollars a month and we can connect it on Monday."),
            cu("Monday is fine."),
            op("Great, I have booked it. Thank you and goodbye."),
        ],
    ),
]


def hold_music(seconds: float, workdir: Path) -> np.ndarray:
    """Synthetic chords from `sox synth`: music-like, with no speech in it."""
    chord_s = 1.0
    pieces = []
    for i in range(int(np.ceil(seconds / chord_s))):
        freqs = HOLD_CHORDS[i % len(HOLD_CHORDS)]
        path = workdir / "chord.wav"
        args = ["sox", "-R", "-D", "-V1", "-n", "-r", str(SYNTH_RATE), "-b", "16", "-c", "1"]
        args += [str(path), "synth", str(chord_s)]
        for f in freqs:
            args += ["sine", str(f)]
        # synth with several tones writes one channel each; remix sums them to mono.
        args += ["remix", "-", "fade", "q", "0.05", str(chord_s), "0.1", "norm", "-1"]
        subprocess.run(args, check=True)
        with wave.open(str(path), "rb") as w:
            pieces.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    music = np.concatenate(pieces)[: int(seconds * SYNTH_RATE)].astype(np.float64)
    return music * HOLD_LEVEL


def add_into(track: np.ndarray, samples: np.ndarray, offset: int) -> np.ndarray:
    needed = offset + len(samples)
    if len(track) < needed:
        track = np.concatenate([track, np.zeros(needed - len(track))])
    track[offset:needed] += samples
    return track


def render(call: Call, workdir: Path) -> tuple[dict[str, np.ndarray], list[dict], int]:
    """Lay the lines out on a timeline: one float track per role, plus the reference lines."""
    voices = {"op": call.operator, "cu": call.customer}
    tracks = {"operator": np.zeros(0), "customer": np.zeros(0)}
    cursor = int(LEAD_IN_S * SYNTH_RATE)  # where the conversation so far ends
    previous: tuple[int, int] | None = None  # the last main line's (start, end)
    lines = []
    for item in call.lines:
        if isinstance(item, Hold):
            start = cursor + int(round(item.gap * SYNTH_RATE))
            tracks["operator"] = add_into(
                tracks["operator"], hold_music(item.seconds, workdir), start
            )
            cursor = start + int(item.seconds * SYNTH_RATE)
            continue
        voice = voices[item.who]
        samples = np.asarray(synthesize(item.text, voice.espeak, voice.pitch, workdir), float)
        if item.inside is not None:
            if previous is None:
                raise ValueError(f"{call.id}: a backchannel needs a line before it")
            start = previous[0] + int(item.inside * (previous[1] - previous[0]))
        elif not lines:
            start = cursor
        else:
            start = max(0, cursor + int(round(item.gap * SYNTH_RATE)))
        end = start + len(samples)
        tracks[voice.role] = add_into(tracks[voice.role], samples, start)
        if item.inside is None:
            previous = (start, end)
        cursor = max(cursor, end)
        lines.append(
            {
                "speaker": voice.name,
                "role": voice.role,
                "start": round(start / SYNTH_RATE, 3),
                "end": round(end / SYNTH_RATE, 3),
                "text": item.text,
            }
        )
    total = cursor + int(TAIL_S * SYNTH_RATE)
    for role, track in tracks.items():
        tracks[role] = np.concatenate([track, np.zeros(total - len(track))])
    lines.sort(key=lambda line: (line["start"], line["end"]))
    return tracks, lines, total


def write_wav(path: Path, channels: list[np.ndarray]) -> None:
    frames = np.stack(channels, axis=1)
    pcm = np.clip(np.round(frames), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(SYNTH_RATE)
        w.writeframes(pcm.tobytes())


def to_flac(wav: Path, flac: Path, telephone: bool) -> None:
    rate = "8000" if telephone else "16000"
    args = ["sox", "-R", "-D", "-V1", str(wav), "--comment", "", "-b", "16", "-C", "8"]
    args += [str(flac), "vol", str(OUTPUT_GAIN)]
    if telephone:
        # A steep FIR band-pass: the classic 300-3400 Hz telephone channel.
        args += ["sinc", "300-3400"]
    args += ["rate", "-v", rate]
    subprocess.run(args, check=True)


def rttm(call_id: str, lines: list[dict]) -> str:
    return "".join(
        f"SPEAKER {call_id} 1 {line['start']:.3f} {line['end'] - line['start']:.3f} "
        f"<NA> <NA> {line['speaker']} <NA> <NA>\n"
        for line in lines
    )


def make_call(call: Call, out: Path, workdir: Path) -> dict:
    tracks, lines, total = render(call, workdir)
    if call.stereo:
        order = ["customer", "operator"] if call.customer_left else ["operator", "customer"]
        channels = [tracks[role] for role in order]
        layout = {"channels": "stereo", "channel_map": {"left": order[0], "right": order[1]}}
    else:
        channels = [tracks["operator"] + tracks["customer"]]
        layout = {"channels": "mono", "channel_map": None}
    wav = workdir / f"{call.id}.wav"
    write_wav(wav, channels)
    to_flac(wav, out / f"{call.id}.flac", call.telephone)
    wav.unlink()
    (out / f"{call.id}.rttm").write_text(rttm(call.id, lines), encoding="utf-8")
    label = {
        "id": call.id,
        "audio": f"{call.id}.flac",
        "title": call.title,
        "notes": call.notes,
        "duration_s": round(total / SYNTH_RATE, 3),
        "sample_rate": 8000 if call.telephone else 16000,
        **layout,
        "telephone_band": call.telephone,
        "company": "Northwind Telecom",
        "roles": {call.operator.name: "operator", call.customer.name: "customer"},
        "voices": {
            v.name: {"espeak": v.espeak, "pitch": v.pitch} for v in (call.operator, call.customer)
        },
        "lines": lines,
    }
    (out / f"{call.id}.json").write_text(json.dumps(label, indent=2) + "\n", encoding="utf-8")
    return label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    require_tools()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="callqa-speech-set-") as tmp:
        for call in CALLS:
            label = make_call(call, args.out, Path(tmp))
            size = (args.out / label["audio"]).stat().st_size
            print(
                f"{label['audio']}: {label['duration_s']:.1f} s, {label['channels']}, "
                f"{label['sample_rate']} Hz, {size / 1024:.0f} KiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

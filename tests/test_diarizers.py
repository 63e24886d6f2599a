"""Diarization backends behind one entry point: choice per preset and environment, the mono
speaker diarizer on a hand-built segmentation (no model), stereo unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from pydantic import ValidationError

from callqa.calls.backends import DiarizationBackends, diarization_backends_from_settings
from callqa.config.models import ChannelMap, RoleHints, SpeechSettings
from callqa.errors import ConfigError
from callqa.settings import load_settings
from callqa.speech.audio import AudioProbe, DecodedAudio
from callqa.speech.diarization import (
    ChannelMapDiarizer,
    DiarizedTranscript,
    PauseHeuristicDiarizer,
    SpeakerDiarizer,
    diarize,
    resolve_backend,
)
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript, Word
from callqa.speech.turns import SpeakerSegmentation, SpeakerTurn

SR = 16_000
TENANT = "Northwind Telecom (demo)"


def audio(channels: int, seconds: float = 10.0) -> DecodedAudio:
    rng = np.random.default_rng(0)
    tracks = [rng.uniform(-0.1, 0.1, int(SR * seconds)).astype(np.float32) for _ in range(channels)]
    probe = AudioProbe(
        sha256="0" * 64,
        size_bytes=1,
        codec="pcm_s16le",
        container="wav",
        channels=channels,
        sample_rate=SR,
        duration_s=seconds,
    )
    return DecodedAudio(probe=probe, channels=tracks)


@dataclass
class HandSegmenter:
    """A segmenter whose answer is written by hand; it keeps the samples it was given."""

    turns: list[SpeakerTurn]
    method: str = "vad-resemblyzer"
    seen: list[np.ndarray] = field(default_factory=list)

    def segment(self, samples: np.ndarray) -> SpeakerSegmentation:
        self.seen.append(samples)
        speakers = len({t.speaker for t in self.turns})
        return SpeakerSegmentation(self.turns, speakers, self.method, {"clusters": speakers})


def words(start: float, text: str, step: float = 0.4) -> list[Word]:
    return [
        Word(start=round(start + i * step, 2), end=round(start + (i + 1) * step, 2), word=f" {t}")
        for i, t in enumerate(text.split())
    ]


def seg(start: float, text: str) -> Segment:
    ws = words(start, text)
    return Segment(start=ws[0].start, end=ws[-1].end, text=text, words=ws)


def mono_transcript() -> Transcript:
    # Whisper folded the customer's "Hello?" and the operator's greeting into one segment.
    return Transcript(
        model="tiny.en",
        duration_s=10,
        channels=[
            ChannelTranscript(
                channel=0,
                language="en",
                segments=[
                    seg(0.0, "Hello? Hi, thank you for calling Northwind, how can I help?"),
                    seg(5.0, "I'm calling about my bill."),
                    seg(7.5, "Let me check."),
                ],
            )
        ],
    )


# Customer (speaker 0) says "Hello?" 0-0.4 s, the operator (speaker 1) greets 0.4-4.0 s.
TURNS = [
    SpeakerTurn(0.0, 0.45, 0),
    SpeakerTurn(0.45, 4.1, 1),
    SpeakerTurn(4.9, 7.1, 0),
    SpeakerTurn(7.4, 8.8, 1),
]


def test_mono_speaker_diarizer_cuts_assigns_and_decides_roles():
    segmenter = HandSegmenter(TURNS)
    diarized = diarize(
        mono_transcript(),
        audio(1),
        backend="auto",
        role_hints=RoleHints(),
        tenant_name=TENANT,
        segmenter=segmenter,
    )
    assert diarized.method == "mono-vad-resemblyzer"
    assert [(s.speaker, s.speaker_id, s.text) for s in diarized.segments] == [
        ("customer", 0, "Hello?"),
        ("operator", 1, "Hi, thank you for calling Northwind, how can I help?"),
        ("customer", 0, "I'm calling about my bill."),
        ("operator", 1, "Let me check."),
    ]
    first, second = diarized.segments[:2]
    assert (first.start, first.end, second.start) == (0.0, 0.4, 0.4)
    assert [w.word for w in first.words] == [" Hello?"]
    assert diarized.speakers == 2
    assert diarized.roles is not None and diarized.roles.operator_speaker == 1
    assert not diarized.roles.low_confidence and diarized.roles.source == "cues"
    assert diarized.details["clusters"] == 2 and diarized.details["turns"] == 4
    # The segmenter's own turns are kept, with roles: diarization error is measured on them.
    assert [(t.start, t.end, t.speaker_id, t.speaker) for t in diarized.voice_turns] == [
        (t.start, t.end, t.speaker, "operator" if t.speaker == 1 else "customer") for t in TURNS
    ]
    # Metrics follow the roles.
    assert diarized.metrics.roles["customer"].words == 6
    assert diarized.metrics.turns == 4
    assert len(segmenter.seen) == 1 and segmenter.seen[0].shape == (SR * 10,)


def test_the_mono_result_round_trips_and_old_stored_transcripts_still_load():
    diarized = diarize(
        mono_transcript(), audio(1), backend="embedding", segmenter=HandSegmenter(TURNS)
    )
    assert DiarizedTranscript.model_validate(diarized.model_dump(mode="json")) == diarized
    old = diarized.model_dump(mode="json", exclude={"speakers", "roles", "details"})
    old["method"] = "mono-pause-heuristic"
    for s in old["segments"]:
        del s["speaker_id"], s["words"]
    loaded = DiarizedTranscript.model_validate(old)
    assert loaded.roles is None and loaded.speakers is None
    assert loaded.segments[0].words == [] and loaded.segments[0].speaker_id is None


def test_the_pyannote_segmenter_labels_the_method_and_tenant_hints_override():
    segmenter = HandSegmenter(TURNS, method="pyannote")
    diarized = diarize(
        mono_transcript(),
        audio(1),
        backend="pyannote",
        role_hints=RoleHints(operator_speaker="first"),
        segmenter=segmenter,
    )
    assert diarized.method == "mono-pyannote"
    assert diarized.roles.source == "override" and diarized.roles.operator_speaker == 0
    assert diarized.segments[0].speaker == "operator"


def test_an_unknown_segmenter_method_is_a_config_error():
    with pytest.raises(ConfigError, match="'kmeans'"):
        SpeakerDiarizer(HandSegmenter(TURNS, method="kmeans"))


def test_a_stereo_file_diarized_by_voice_is_mixed_down_first():
    stereo = audio(2)
    segmenter = HandSegmenter(TURNS)
    diarize(mono_transcript(), stereo, backend="embedding", segmenter=segmenter)
    np.testing.assert_allclose(segmenter.seen[0], (stereo.channels[0] + stereo.channels[1]) / 2)


def _stereo_transcript() -> Transcript:
    return Transcript(
        model="tiny.en",
        duration_s=10,
        channels=[
            ChannelTranscript(channel=0, language="en", segments=[seg(0, "Hello, Northwind.")]),
            ChannelTranscript(channel=1, segments=[seg(2, "Hi, my bill is wrong.")]),
        ],
    )


def test_channel_backend_output_is_the_channel_map_diarizer_unchanged():
    channel_map = ChannelMap(left="customer", right="operator")
    diarized = diarize(_stereo_transcript(), audio(2), backend="auto", channel_map=channel_map)
    expected = ChannelMapDiarizer(channel_map).diarize(_stereo_transcript())
    assert diarized == expected
    assert diarized.method == "stereo-channel-map"
    assert [s.speaker for s in diarized.segments] == ["customer", "operator"]
    assert diarized.roles is None and diarized.speakers is None


def test_channel_backend_on_a_mono_recording_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a stereo recording.*1 channel"):
        diarize(mono_transcript(), audio(1), backend="channel")


def test_pause_backend_is_the_old_heuristic():
    diarized = diarize(mono_transcript(), audio(1), backend="pause")
    assert diarized.method == "mono-pause-heuristic"
    assert diarized.roles is None
    assert diarized == PauseHeuristicDiarizer().diarize(mono_transcript())
    # Pauses under 0.7 s never switch the speaker: the whole call is the operator's.
    assert {s.speaker for s in diarized.segments} == {"operator"}


# backend choice -------------------------------------------------------------------------


def test_auto_is_channel_for_stereo_and_embedding_for_mono():
    assert resolve_backend("auto", stereo=True) == "channel"
    assert resolve_backend("auto", stereo=False) == "embedding"
    assert resolve_backend("pyannote", stereo=True) == "pyannote"
    with pytest.raises(ConfigError, match="'voices': expected one of auto, channel"):
        resolve_backend("voices", stereo=False)


def test_preset_choice_and_the_environment_override():
    preset_choice = SpeechSettings(diarization="pyannote")
    assert SpeechSettings().diarization == "auto"
    assert DiarizationBackends().for_preset(preset_choice, stereo=False) == "pyannote"
    assert DiarizationBackends().for_preset(SpeechSettings(), stereo=False) == "embedding"
    settings = load_settings({"CALLQA_DIARIZATION": "Pause"})
    backends = diarization_backends_from_settings(settings)
    assert backends.override == "pause"
    # The override wins over every preset, stereo included.
    assert backends.for_preset(preset_choice, stereo=False) == "pause"
    assert backends.for_preset(SpeechSettings(), stereo=True) == "pause"
    assert load_settings({}).diarization is None


def test_a_bad_override_or_preset_value_names_the_setting():
    with pytest.raises(ConfigError, match="CALLQA_DIARIZATION='speakers'"):
        load_settings({"CALLQA_DIARIZATION": "speakers"})
    with pytest.raises(ValidationError, match="diarization"):
        SpeechSettings(diarization="speakers")


def test_pyannote_model_and_token_come_from_the_deployment(monkeypatch):
    monkeypatch.setenv("CALLQA_PYANNOTE_TOKEN", "hf_secret")
    settings = load_settings({"CALLQA_PYANNOTE_MODEL": "/models/pyannote/config.yaml"})
    assert settings.pyannote_model == "/models/pyannote/config.yaml"
    assert "hf_secret" not in settings.model_dump_json()  # the token is never in settings
    backends = diarization_backends_from_settings(settings)
    assert backends.pyannote_token == "hf_secret"
    assert backends.pyannote_model == "/models/pyannote/config.yaml"
    assert backends.segmenter("channel") is None and backends.segmenter("pause") is None

"""Real faster-whisper (bundled tiny.en) on the bundled stereo calls."""

import numpy as np
import pytest

from callqa.scoring.evidence import normalize
from callqa.speech.audio import decode_file
from callqa.speech.whisper import WhisperSettings, transcribe
from tests.paths import DEMO_CALLS

pytestmark = pytest.mark.model


def _word_recall(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference).split(), set(normalize(hypothesis).split())
    return sum(w in hyp for w in ref) / len(ref)


def test_stereo_call_transcribed_per_channel_with_word_timestamps(good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    result = transcribe(audio, WhisperSettings())
    assert [c.channel for c in result.channels] == [0, 1]
    assert result.language == "en"
    for channel in result.channels:
        assert channel.segments, f"channel {channel.channel} has no segments"
        assert channel.speech_s > 1
        for seg in channel.segments:
            assert 0 <= seg.start <= seg.end <= result.duration_s + 0.5
            assert seg.words and all(seg.start - 0.5 <= w.start <= w.end for w in seg.words)
    # Each channel carries its own speaker's words (operator left, customer right).
    for channel, speaker in ((0, "operator"), (1, "customer")):
        reference = " ".join(x["text"] for x in good_call["script"] if x["speaker"] == speaker)
        text = " ".join(s.text for s in result.channels[channel].segments)
        assert _word_recall(reference, text) > 0.7, (speaker, text)


@pytest.mark.slow
def test_mono_recording_is_diarized_by_voice_and_roles_follow_the_script(tmp_path, good_call):
    """A mono downmix through `callqa analyze`: the offline default splits it by voice and
    decides the operator from what is said; each scripted line lands with its speaker."""
    from callqa.cli import analyze_path
    from tests.audio_helpers import write_wav

    left, right = decode_file(DEMO_CALLS / good_call["file"]).channels
    mono = write_wav(tmp_path / "mono.wav", [(left + right) / 2])
    record = analyze_path(mono).record
    assert record.call.audio.channels == 1
    assert record.transcript.diarization == "mono-vad-resemblyzer"
    assert record.transcript.warnings == []
    segments = record.transcript.segments
    assert segments[0].speaker == "operator"

    def role_at(t: float) -> str | None:
        return next((s.speaker for s in segments if s.start - 0.2 <= t <= s.end + 0.2), None)

    lines = good_call["script"]
    right_role = sum(role_at((x["start_s"] + x["end_s"]) / 2) == x["speaker"] for x in lines)
    assert right_role >= 0.9 * len(lines), [(x["speaker"], x["text"]) for x in lines]


# --- STT options: model loading, devices, language, windows, batching --------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "callqa-tests/no-such-whisper-model",
            "speech model 'callqa-tests/no-such-whisper-model' is not in the local Hugging Face "
            "cache (",
        ),
        ("huge", "speech model 'huge' is not a faster-whisper model name"),
        (
            "./no-such-folder",
            "speech model './no-such-folder': no-such-folder is not a CTranslate2",
        ),
    ],
    ids=["not-cached", "unknown-name", "missing-folder"],
)
def test_model_that_cannot_load_is_one_clear_line(model, message):
    from callqa.errors import ConfigError
    from callqa.speech.whisper import load_model

    with pytest.raises(ConfigError) as err:
        load_model(model, "cpu", "int8", 0)
    text = str(err.value)
    assert text.startswith(message)
    assert "\n" not in text and len(text) < 400
    if model.startswith("callqa-tests/"):
        # Names the fix: no download unless allowed.
        assert "set CALLQA_WHISPER_DOWNLOAD=1 to download it once" in text


def test_empty_model_folder_is_refused(tmp_path):
    from callqa.errors import ConfigError
    from callqa.speech.whisper import resolve_model

    with pytest.raises(ConfigError, match="is not a CTranslate2 model folder \\(no model.bin\\)"):
        resolve_model(str(tmp_path))


def test_gpu_settings_on_a_cpu_machine_are_a_clear_error():
    import ctranslate2

    from callqa.errors import ConfigError
    from callqa.speech.whisper import check_device

    assert check_device("cpu", "int8") == ("cpu", 0)
    if ctranslate2.get_cuda_device_count():
        assert check_device("cuda:0", "float16") == ("cuda", 0)
        return
    with pytest.raises(ConfigError) as err:
        check_device("cuda", "float16")
    assert str(err.value).startswith(
        "whisper device 'cuda' (CALLQA_WHISPER_DEVICE) needs a CUDA GPU, but CTranslate2 sees "
        "none on this machine"
    )
    if "float16" not in ctranslate2.get_supported_compute_types("cpu"):
        with pytest.raises(ConfigError, match="compute type 'float16' .* not supported on cpu"):
            check_device("cpu", "float16")
    with pytest.raises(ConfigError, match="expected cpu, cuda, cuda:N or auto"):
        check_device("tpu", "int8")


def test_preset_and_deployment_options_reach_faster_whisper():
    from callqa.calls.backends import SpeechBackends
    from callqa.config.models import SpeechSettings
    from callqa.speech.whisper import WhisperSettings, normalize_language

    preset = SpeechSettings(model="large-v3", language="auto", vad_filter=False, beam_size=2)
    stt = SpeechBackends(
        device="cuda", compute_type="float16", batch_size=8, allow_download=True
    ).for_preset(preset)
    assert stt.settings == WhisperSettings(
        model="large-v3",
        device="cuda",
        compute_type="float16",
        beam_size=2,
        language="auto",
        vad_filter=False,
        batch_size=8,
        allow_download=True,
    )
    assert [normalize_language(x) for x in ("auto", None, "", "EN", "de")] == [
        None,
        None,
        None,
        "en",
        "de",
    ]
    api = SpeechBackends(provider="openai", api_base="http://127.0.0.1:9").for_preset(preset)
    assert api.language is None  # detection: no language field sent


def test_language_detection_records_language_and_probability(good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    result = transcribe(audio, WhisperSettings(language="auto"))
    for channel in result.channels:
        assert channel.language == "en"
        assert 0.5 < channel.language_probability <= 1


@pytest.mark.slow
def test_long_channel_is_transcribed_in_windows_on_the_recording_clock(good_call):
    """Windows of 15 s (as 10 minutes on a long call): same words, same clock."""
    audio = decode_file(DEMO_CALLS / good_call["file"])
    whole = transcribe(audio, WhisperSettings())
    windowed = transcribe(audio, WhisperSettings(window_s=15))
    for a, b in zip(whole.channels, windowed.channels, strict=True):
        assert b.speech_s == a.speech_s
        starts = [s.start for s in b.segments]
        assert starts == sorted(starts) and b.segments[-1].end <= whole.duration_s + 0.5
        assert _word_recall(" ".join(s.text for s in a.segments), _text(b)) > 0.8
        # Words after the first cut sit where the same words are in the whole-call run
        # (a window's own clock would put them 15 s or more too early).
        times = {}
        for w in (w for s in a.segments for w in s.words):
            times.setdefault(normalize(w.word), []).append(w.start)
        moved = [
            min(abs(t - w.start) for t in times[normalize(w.word)])
            for s in b.segments
            for w in s.words
            if w.start > 15 and normalize(w.word) in times
        ]
        assert len(moved) > 10 and np.median(moved) < 0.5


@pytest.mark.slow
def test_batched_pipeline_transcribes_the_call(good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    result = transcribe(audio, WhisperSettings(batch_size=4))
    for channel, speaker in ((0, "operator"), (1, "customer")):
        reference = " ".join(x["text"] for x in good_call["script"] if x["speaker"] == speaker)
        assert _word_recall(reference, _text(result.channels[channel])) > 0.7


def _text(channel) -> str:
    return " ".join(s.text for s in channel.segments)

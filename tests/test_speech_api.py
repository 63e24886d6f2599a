"""The OpenAI-compatible transcription resource against a fake `/v1/audio/transcriptions`
server on loopback that speaks the real multipart request / verbose_json reply shape."""

import io
import wave

import dagster as dg
import numpy as np
import pytest

from callqa.crm.file_drop import StagedFile, stage_files
from callqa.errors import TranscriptionError
from callqa.resources import (
    AudioStoreResource,
    ScorerResource,
    SpeechToTextResource,
    WarehouseResource,
)
from callqa.speech.audio import decode_file
from callqa.speech.openai_api import OpenAITranscriber
from callqa.storage.warehouse import Warehouse
from tests.call_assets import CALL_ASSETS
from tests.fakes import FakeTranscriptionAPI, verbose_json
from tests.paths import DEMO_CALLS


@pytest.fixture
def scripted_api(good_call):
    replies = {
        channel: verbose_json([x for x in good_call["script"] if x["speaker"] == speaker])
        for channel, speaker in ((0, "operator"), (1, "customer"))
    }
    api = FakeTranscriptionAPI(replies)
    yield api
    api.close()


def test_transcriber_sends_each_channel_and_parses_words(scripted_api, good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    result = OpenAITranscriber(
        api_base=scripted_api.api_base, api_key="stt-key", model="whisper-large-v3"
    ).transcribe(audio)
    assert len(scripted_api.requests) == 2
    for channel, request in enumerate(scripted_api.requests):
        fields = request["fields"]
        assert request["path"] == "/v1/audio/transcriptions"
        assert request["auth"] == "Bearer stt-key"
        assert fields["model"] == ["whisper-large-v3"]
        assert fields["response_format"] == ["verbose_json"]
        assert sorted(fields["timestamp_granularities[]"]) == ["segment", "word"]
        filename, wav = fields["file"][0]
        assert filename == f"channel-{channel}.wav"
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getnchannels(), w.getframerate()) == (1, 16000)
            assert w.getnframes() == len(audio.channels[channel])
    operator_lines = [x for x in good_call["script"] if x["speaker"] == "operator"]
    assert [s.text for s in result.channels[0].segments] == [x["text"] for x in operator_lines]
    first = result.channels[0].segments[0]
    assert first.words and first.words[0].word == operator_lines[0]["text"].split()[0]
    assert result.model == "whisper-large-v3" and result.channels[1].speech_s > 1


def test_silent_channel_is_not_sent(scripted_api, good_call):
    audio = decode_file(DEMO_CALLS / good_call["file"])
    audio.channels[1] = np.zeros_like(audio.channels[1])
    result = OpenAITranscriber(api_base=scripted_api.api_base).transcribe(audio)
    assert len(scripted_api.requests) == 1
    assert result.channels[1].segments == []


def test_provider_error_is_clear_and_hides_the_key(good_call):
    api = FakeTranscriptionAPI(status=401)
    try:
        audio = decode_file(DEMO_CALLS / good_call["file"])
        with pytest.raises(TranscriptionError, match="HTTP 401") as err:
            OpenAITranscriber(api_base=api.api_base, api_key="sk-secret-stt").transcribe(audio)
        assert "sk-secret-stt" not in str(err.value)
        assert api.api_base in str(err.value)
    finally:
        api.close()


def test_asset_chain_with_api_transcription(tmp_path, scripted_api, good_call):
    """Swapping the STT resource changes no asset code: the same chain and checks run."""
    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse.from_url(db_url)
    [key] = stage_files(
        wh, "demo", [StagedFile(path=DEMO_CALLS / good_call["file"], external_id="api-1")]
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("calls", [key.partition_key])
    result = dg.materialize(
        [CALL_ASSETS],
        selection=["raw_audio", "transcript", "diarized_transcript"],
        partition_key=key.partition_key,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "audio_store": AudioStoreResource(root=str(tmp_path / "audio")),
            # The operator's override (CALLQA_STT=openai) switches every preset to the API.
            "stt": SpeechToTextResource(
                provider="openai", api_base=scripted_api.api_base, api_model="w-1"
            ),
            "scorer": ScorerResource(),
        },
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    diarized = wh.transcript("demo", "api-1", "diarized")
    expected = [x["text"] for x in good_call["script"]]
    assert sorted(s["text"] for s in diarized["segments"]) == sorted(expected)
    wh.dispose()


def test_cli_analyze_honours_the_same_stt_settings_as_the_assets(
    scripted_api, good_call, monkeypatch, capsys
):
    """`callqa analyze` goes through the same settings and resources as the assets:
    CALLQA_STT=openai sends the recording to the API instead of the local model."""
    import json

    from callqa.cli import main

    monkeypatch.setenv("CALLQA_STT", "openai")
    monkeypatch.setenv("CALLQA_STT_API_BASE", scripted_api.api_base)
    monkeypatch.setenv("CALLQA_STT_API_KEY", "stt-cli-key")
    monkeypatch.setenv("CALLQA_STT_MODEL", "whisper-large-v3")
    assert main(["analyze", str(DEMO_CALLS / good_call["file"]), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(scripted_api.requests) == 2
    assert {r["auth"] for r in scripted_api.requests} == {"Bearer stt-cli-key"}
    assert {r["fields"]["model"][0] for r in scripted_api.requests} == {"whisper-large-v3"}
    assert sorted(s["text"] for s in record["transcript"]["segments"]) == sorted(
        x["text"] for x in good_call["script"]
    )

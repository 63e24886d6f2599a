"""The OpenAI-compatible transcription resource against a fake `/v1/audio/transcriptions`
server on loopback that speaks the real multipart request / verbose_json reply shape."""

import io
import threading
import wave
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import numpy as np
import pytest

from callqa.assets.calls import diarized_transcript, raw_audio, transcript
from callqa.audio import decode_file
from callqa.errors import TranscriptionError
from callqa.intake import StagedFile, stage_files
from callqa.resources import (
    AudioStoreResource,
    OpenAITranscriptionResource,
    RulesScorerResource,
    WarehouseResource,
)
from callqa.speech_api import OpenAITranscriber
from callqa.storage.warehouse import Warehouse
from tests.conftest import DEMO_CALLS, send_json


def verbose_json(lines: list[dict]) -> dict:
    """OpenAI's verbose_json: segments plus a flat word list with timestamps."""
    segments, words = [], []
    for i, line in enumerate(lines):
        start, end = line["start_s"], line["end_s"]
        segments.append(
            {
                "id": i,
                "seek": 0,
                "start": start,
                "end": end,
                "text": " " + line["text"],
                "avg_logprob": -0.2,
                "no_speech_prob": 0.01,
            }
        )
        tokens = line["text"].split()
        step = (end - start) / len(tokens)
        words += [
            {
                "word": w,
                "start": round(start + k * step, 2),
                "end": round(start + (k + 1) * step, 2),
            }
            for k, w in enumerate(tokens)
        ]
    return {
        "task": "transcribe",
        "language": "english",
        "duration": 1.0,
        "text": " ".join(x["text"] for x in lines),
        "segments": segments,
        "words": words,
    }


class FakeTranscriptionAPI:
    def __init__(self, replies_by_channel: dict[int, dict] | None = None, status: int = 200):
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                message = BytesParser(policy=HTTP).parsebytes(
                    f"content-type: {self.headers['content-type']}\r\n\r\n".encode() + body
                )
                fields: dict[str, list] = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    value = part.get_payload(decode=True)
                    fields.setdefault(name, []).append(
                        (part.get_filename(), value) if part.get_filename() else value.decode()
                    )
                fake.requests.append(
                    {"path": self.path, "fields": fields, "auth": self.headers.get("authorization")}
                )
                filename = fields["file"][0][0]
                channel = int(filename.removesuffix(".wav").rsplit("-", 1)[1])
                if status != 200:
                    payload = {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                        }
                    }
                else:
                    payload = (replies_by_channel or {})[channel]
                send_json(self, status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
        [raw_audio, transcript, diarized_transcript],
        partition_key=key.partition_key,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "audio_store": AudioStoreResource(root=str(tmp_path / "audio")),
            "stt": OpenAITranscriptionResource(api_base=scripted_api.api_base, model="w-1"),
            "scorer": RulesScorerResource(),
        },
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    diarized = wh.transcript("demo", "api-1", "diarized")
    expected = [x["text"] for x in good_call["script"]]
    assert sorted(s["text"] for s in diarized["segments"]) == sorted(expected)
    wh.dispose()

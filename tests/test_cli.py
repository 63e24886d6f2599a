"""`callqa analyze` as a user runs it: a subprocess, real audio, real faster-whisper."""

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from callqa.calls.record import published_schema
from tests.audio_helpers import noise, silence, write_wav
from tests.paths import DEMO_CALLS


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "callqa.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})},
    )


@pytest.mark.model
@pytest.mark.slow
def test_analyze_json_validates_against_published_schema(good_call):
    result = run_cli("analyze", str(DEMO_CALLS / good_call["file"]), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    jsonschema.validate(record, published_schema())
    segments = record["transcript"]["segments"]
    assert {s["speaker"] for s in segments} == {"operator", "customer"}
    assert all(s["end"] >= s["start"] >= 0 and s["text"] for s in segments)
    ids = [c["id"] for c in record["scores"]["criteria"]]
    assert ids == [
        "greeting",
        "needs_discovery",
        "presentation",
        "objection_handling",
        "closing",
        "tone",
    ]
    assert all(
        set(e) == {"quote", "start", "speaker"}
        for c in record["scores"]["criteria"]
        for e in c["evidence"]
    )
    assert 0 <= record["scores"]["total"] <= 100
    assert record["metrics"]["roles"]["operator"]["talk_time_s"] > 0
    scoring = record["scoring"]
    assert scoring["scorer"] == "rules" and scoring["valid"] is True
    assert {"model", "prompt_version", "tokens", "cost_usd"} <= set(scoring)
    assert "not by an LLM" in record["summary"]


@pytest.mark.model
@pytest.mark.slow
def test_analyze_text_output_is_readable(poor_call):
    result = run_cli("analyze", str(DEMO_CALLS / poor_call["file"]))
    assert result.returncode == 0, result.stderr
    assert "Total:" in result.stdout and "operator:" in result.stdout
    assert "Objection handling" in result.stdout


@pytest.mark.model
@pytest.mark.slow
def test_analyze_with_llm_scorer_uses_env_endpoint(good_call, fake_llm, tmp_path):
    import re

    from callqa.config.registry import default_registry

    preset = default_registry().preset("sales-default")

    def reply(request: dict) -> str:
        """Scores of 4, each citing the operator's first line of the transcript sent."""
        prompt = request["messages"][-1]["content"]
        start, text = re.search(r"^\[([\d.]+)\] operator: (.+)$", prompt, re.M).groups()
        quote = {"quote": text, "start": float(start), "speaker": "operator"}
        return json.dumps(
            {
                "criteria": [
                    {"id": c, "score": 4, "rationale": "fine", "evidence": [quote]}
                    for c in preset.criterion_ids
                ],
                "summary": "A solid call.",
                "recommendations": ["Ask one more question."],
                "patterns": [],
            }
        )

    fake_llm.replies = [reply]
    result = run_cli(
        "analyze",
        str(DEMO_CALLS / good_call["file"]),
        "--json",
        "--scorer",
        "llm",
        "--model",
        "openai/gpt-4o-mini",
        env={"CALLQA_LLM_API_BASE": fake_llm.api_base, "CALLQA_LLM_API_KEY": "key-for-tests"},
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["scoring"]["scorer"] == "llm"
    assert record["scoring"]["model"] == "openai/gpt-4o-mini"
    assert record["scoring"]["tokens"]["total"] == 1500
    assert record["scores"]["total"] == 75.0  # 4 on a 1-5 scale, computed by code
    assert fake_llm.headers[0].get("Authorization") == "Bearer key-for-tests"
    assert "key-for-tests" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.wav", None, "file not found"),
        (
            "notes.mp3",
            lambda p: p.write_text("meeting notes, not audio"),
            "not a readable audio file",
        ),
        ("empty.ogg", lambda p: p.write_bytes(b""), "file is empty"),
        ("silent.wav", lambda p: write_wav(p, [silence(5), silence(5)]), "silent"),
        (
            "quad.wav",
            lambda p: write_wav(p, [noise(1, seed=i) for i in range(4)]),
            "only mono and stereo",
        ),
    ],
)
@pytest.mark.slow
def test_bad_input_one_line_error_and_nonzero_exit(tmp_path, name, make, message):
    path = tmp_path / name
    if make:
        make(path)
    result = run_cli("analyze", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and message in lines[0]
    assert result.stdout == ""


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("analyze", "demo", "stage", "schema", "db-upgrade"):
        assert command in result.stdout
    analyze = run_cli("analyze", "--help")
    for flag in ("--tenant", "--json", "--scorer", "--model", "CALLQA_LLM_API_BASE"):
        assert flag in analyze.stdout


@pytest.mark.model
@pytest.mark.slow
def test_analyze_mp3(tmp_path, poor_call):
    from tests.audio_helpers import transcode

    mp3 = transcode(DEMO_CALLS / poor_call["file"], tmp_path / "call.mp3", "libmp3lame", 16000)
    result = run_cli("analyze", str(mp3), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["call"]["audio"]["codec"].startswith("mp3")  # FFmpeg says mp3float
    assert {s["speaker"] for s in record["transcript"]["segments"]} == {"operator", "customer"}


@pytest.mark.slow
def test_stage_files_for_the_sensor(tmp_path, manifest):
    from callqa.storage.warehouse import Warehouse

    folder = tmp_path / "drop"
    folder.mkdir()
    for m in manifest[:2]:
        (folder / m["file"]).write_bytes((DEMO_CALLS / m["file"]).read_bytes())
    (folder / "notes.txt").write_text("not a recording")
    env = {"CALLQA_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("stage", str(folder), "--tenant", "demo", "--operator", "anna", env=env)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [
        ["demo__call-001", "staged"],
        ["demo__call-002", "staged"],
    ]
    wh = Warehouse.from_url(f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}")
    rows = wh.staged_calls("demo")
    assert [(r["external_id"], r["status"], r["operator"]) for r in rows] == [
        ("call-001", "staged", "anna"),
        ("call-002", "staged", "anna"),
    ]
    wh.dispose()
    unknown = run_cli("stage", str(folder), "--tenant", "nobody", env=env)
    assert unknown.returncode == 2 and "unknown tenant 'nobody'" in unknown.stderr


@pytest.mark.slow
def test_unloadable_speech_model_is_a_clear_error(good_call, tmp_path):
    result = run_cli(
        "analyze",
        str(DEMO_CALLS / good_call["file"]),
        env={"CALLQA_WHISPER_MODEL": str(tmp_path / "no-such-model")},
    )
    assert result.returncode == 2
    # One line naming the model, the problem and the fix.
    assert result.stderr.startswith(f"callqa: error: speech model '{tmp_path / 'no-such-model'}'")
    assert "not a CTranslate2 model folder" in result.stderr
    assert "name a faster-whisper model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

"""The code location loads fast, lists what the UI shows, and the prod instance config works."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_without_heavy_imports():
    code = (
        "import sys; from callqa.definitions import defs; "
        "heavy = [m for m in ('litellm', 'faster_whisper', 'ctranslate2', 'great_expectations', "
        "'av', 'pandas') if m in sys.modules]; print(','.join(heavy) or 'none')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "none"


def test_definitions_contents():
    from callqa.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_audio",
        "transcript",
        "diarized_transcript",
        "scored_analysis",
        "tenant_daily_aggregates",
    }
    checks = {k.name for k in graph.asset_check_keys}
    assert {
        "recording_decodable",
        "transcript_covers_speech",
        "both_roles_present",
        "analysis_matches_schema",
        "analysis_business_rules",
    } <= checks
    job = defs.resolve_job_def("process_call")
    assert job.partitions_def == dg.DynamicPartitionsDefinition(name="calls")
    assert {s.name for s in defs.sensors} == {"staged_calls_sensor", "tenant_aggregates_sensor"}


def test_scorer_chosen_by_environment(monkeypatch):
    from callqa.definitions import scorer_from_env
    from callqa.resources import LLMScorerResource, RulesScorerResource

    monkeypatch.delenv("CALLQA_SCORER", raising=False)
    assert isinstance(scorer_from_env(), RulesScorerResource)
    monkeypatch.setenv("CALLQA_SCORER", "llm")
    monkeypatch.setenv("CALLQA_LLM_MODEL", "ollama/llama3.1")
    monkeypatch.setenv("CALLQA_LLM_API_KEY", "secret-value-xyz")
    llm = scorer_from_env()
    assert isinstance(llm, LLMScorerResource) and llm.model == "ollama/llama3.1"
    # The key is an EnvVar reference: its value never enters the resource config.
    assert "secret-value-xyz" not in repr(llm.api_key)
    monkeypatch.setenv("CALLQA_SCORER", "gpt")
    with pytest.raises(ValueError, match="CALLQA_SCORER"):
        scorer_from_env()


def test_workspace_points_at_definitions():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    assert entry["python_module"]["module_name"] == "callqa.definitions"


def test_production_instance_config_runs_on_postgres(pg_url, tmp_path, monkeypatch):
    """dagster.yaml, as shipped, gives a working instance on a real PostgreSQL database."""
    import sqlalchemy as sa

    url = sa.engine.make_url(pg_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, value in {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
    }.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("calls", ["demo__x"])
        assert instance.get_dynamic_partitions("calls") == ["demo__x"]
    finally:
        instance.dispose()
    assert os.environ["DAGSTER_PG_DB"] == url.database


def test_stt_chosen_by_environment(monkeypatch):
    from callqa.definitions import stt_from_env
    from callqa.resources import OpenAITranscriptionResource, WhisperResource

    monkeypatch.delenv("CALLQA_STT", raising=False)
    assert isinstance(stt_from_env(), WhisperResource)
    monkeypatch.setenv("CALLQA_STT", "openai")
    with pytest.raises(ValueError, match="CALLQA_STT_API_BASE"):
        stt_from_env()
    monkeypatch.setenv("CALLQA_STT_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CALLQA_STT_API_KEY", "stt-secret-value")
    api = stt_from_env()
    assert isinstance(api, OpenAITranscriptionResource)
    assert "stt-secret-value" not in repr(api.api_key)

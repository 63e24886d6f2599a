"""The code location loads fast, lists what the UI shows, and the prod instance config works."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from callqa.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_definitions_load_without_heavy_imports():
    code = (
        "import sys; from callqa.definitions import defs; defs(); "
        "heavy = [m for m in ('litellm', 'faster_whisper', 'ctranslate2', 'great_expectations', "
        "'av', 'pandas') if m in sys.modules]; print(','.join(heavy) or 'none')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "none"


def test_definitions_contents():
    from callqa.definitions import defs as load_defs

    defs = load_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_audio",
        "transcript",
        "diarized_transcript",
        "scored_analysis",
        "crm_pushback",
        "tenant_daily_aggregates",
        "tenant_report",
        "variant_comparison",
        "grader_agreement",
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
    assert set(defs.resources) == {"warehouse", "audio_store", "stt", "scorer"}


def test_operator_overrides_come_from_the_environment_as_env_var_references(monkeypatch):
    from callqa.resources.deployments import resources_for
    from callqa.settings import load_settings

    monkeypatch.delenv("CALLQA_SCORER", raising=False)
    assert resources_for(load_settings())["scorer"].scorer is None  # the preset decides
    monkeypatch.setenv("CALLQA_SCORER", "llm")
    monkeypatch.setenv("CALLQA_LLM_MODEL", "ollama/llama3.1")
    monkeypatch.setenv("CALLQA_LLM_API_KEY", "secret-value-xyz")
    llm = resources_for(load_settings())["scorer"]
    assert llm.scorer == "llm" and llm.model == "ollama/llama3.1"
    # The key is an EnvVar reference: its value never enters the resource config.
    assert "secret-value-xyz" not in repr(llm.api_key)
    assert llm.process_config_and_initialize().api_key == "secret-value-xyz"
    monkeypatch.setenv("CALLQA_SCORER", "gpt")
    with pytest.raises(ConfigError, match="CALLQA_SCORER='gpt'"):
        load_settings()


def test_preset_picks_scorer_and_speech_provider_per_call():
    from callqa.config.registry import default_registry
    from callqa.resources import ScorerResource, SpeechToTextResource
    from callqa.scoring.llm import LLMScorer
    from callqa.scoring.rules import RulesScorer
    from callqa.speech.openai_api import OpenAITranscriber
    from callqa.speech.whisper import WhisperTranscriber

    sales = default_registry().preset("sales-default")
    llm_preset = sales.model_copy(update={"scorer": "llm"})
    api_preset = sales.model_copy(
        update={"speech": sales.speech.model_copy(update={"provider": "openai"})}
    )
    scorer = ScorerResource()
    assert isinstance(scorer.for_preset(sales), RulesScorer)
    assert isinstance(scorer.for_preset(llm_preset), LLMScorer)
    # The operator's override wins over every preset.
    assert isinstance(ScorerResource(scorer="rules").for_preset(llm_preset), RulesScorer)
    stt = SpeechToTextResource(api_base="http://127.0.0.1:9/v1")
    assert isinstance(stt.for_preset(sales.speech), WhisperTranscriber)
    assert isinstance(stt.for_preset(api_preset.speech), OpenAITranscriber)
    with pytest.raises(ConfigError, match="CALLQA_STT_API_BASE"):
        SpeechToTextResource().for_preset(api_preset.speech)


def test_deployment_switch_picks_the_resource_set(monkeypatch):
    from callqa.resources.deployments import resources_for
    from callqa.settings import load_settings

    monkeypatch.setenv("CALLQA_DEPLOYMENT", "production")
    monkeypatch.delenv("CALLQA_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="CALLQA_DATABASE_URL and CALLQA_AUDIO_STORE"):
        load_settings()
    monkeypatch.setenv("CALLQA_DATABASE_URL", "postgresql+psycopg://u:pw-xyz@db/wh")
    monkeypatch.setenv("CALLQA_AUDIO_STORE", "/srv/audio")
    prod = resources_for(load_settings())
    assert "pw-xyz" not in repr(prod["warehouse"].database_url)
    assert prod["audio_store"].process_config_and_initialize().root == "/srv/audio"
    monkeypatch.setenv("CALLQA_DEPLOYMENT", "staging")
    with pytest.raises(ConfigError, match="CALLQA_DEPLOYMENT='staging'"):
        load_settings()


def test_environment_is_read_when_the_code_location_loads(monkeypatch):
    """Importing the module reads nothing; calling `defs()` (what Dagster does) does."""
    import callqa.definitions as module

    monkeypatch.setenv("CALLQA_SENSOR_INTERVAL_S", "7")
    defs = module.defs()
    sensor = defs.resolve_sensor_def("staged_calls_sensor")
    assert sensor.minimum_interval_seconds == 7
    monkeypatch.setenv("CALLQA_SENSOR_INTERVAL_S", "11")
    assert module.defs().resolve_sensor_def("staged_calls_sensor").minimum_interval_seconds == 11


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

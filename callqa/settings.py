"""The one place that reads callqa's environment.

Everything defaults to a folder under the current directory, so a new user needs no
server. `load_settings()` is called when the code location loads (not on import) and by
the CLI; secrets (database URL, API keys) are never copied into settings: resources
reference them by name with `dg.EnvVar`, so their values stay out of the UI and run config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callqa.errors import ConfigError

DEPLOYMENT_ENV = "CALLQA_DEPLOYMENT"
DATA_DIR_ENV = "CALLQA_DATA_DIR"
DATABASE_URL_ENV = "CALLQA_DATABASE_URL"
AUDIO_STORE_ENV = "CALLQA_AUDIO_STORE"
CONFIG_DIR_ENV = "CALLQA_CONFIG_DIR"
SENSOR_INTERVAL_ENV = "CALLQA_SENSOR_INTERVAL_S"
AGGREGATES_INTERVAL_ENV = "CALLQA_AGGREGATES_INTERVAL_S"
SCORER_ENV = "CALLQA_SCORER"
LLM_MODEL_ENV = "CALLQA_LLM_MODEL"
LLM_API_BASE_ENV = "CALLQA_LLM_API_BASE"
LLM_API_KEY_ENV = "CALLQA_LLM_API_KEY"
STT_ENV = "CALLQA_STT"
STT_API_BASE_ENV = "CALLQA_STT_API_BASE"
STT_API_KEY_ENV = "CALLQA_STT_API_KEY"
STT_MODEL_ENV = "CALLQA_STT_MODEL"
WHISPER_MODEL_ENV = "CALLQA_WHISPER_MODEL"
WHISPER_DEVICE_ENV = "CALLQA_WHISPER_DEVICE"
WHISPER_COMPUTE_TYPE_ENV = "CALLQA_WHISPER_COMPUTE_TYPE"
ALLOW_PRIVATE_URLS_ENV = "CALLQA_ALLOW_PRIVATE_URLS"
REPORTS_DIR_ENV = "CALLQA_REPORTS_DIR"
EXECUTOR_ENV = "CALLQA_EXECUTOR"
CELERY_BROKER_ENV = "CALLQA_CELERY_BROKER"
CELERY_BACKEND_ENV = "CALLQA_CELERY_BACKEND"
CALLS_PER_RUN_ENV = "CALLQA_CALLS_PER_RUN"
CALL_SLOTS_ENV = "CALLQA_CALL_SLOTS"
WHISPER_THREADS_ENV = "CALLQA_WHISPER_THREADS"
WHISPER_BATCH_SIZE_ENV = "CALLQA_WHISPER_BATCH_SIZE"

Deployment = Literal["local", "production"]


class Settings(BaseModel):
    """What the environment says, validated. Overrides left unset defer to each call's preset."""

    model_config = ConfigDict(frozen=True)

    deployment: Deployment = "local"
    has_database_url: bool = False
    has_audio_store: bool = False
    sensor_interval_s: int = Field(30, ge=1)
    aggregates_interval_s: int = Field(120, ge=1)
    # Operator overrides of the preset's choices (scorer, model, speech provider).
    scorer: Literal["rules", "llm"] | None = None
    llm_model: str | None = None
    has_llm_api_base: bool = False
    has_llm_api_key: bool = False
    stt: Literal["whisper", "openai"] | None = None
    whisper_model: str | None = None
    whisper_device: str = "cpu"
    whisper_compute_type: str = "int8"
    has_stt_api_base: bool = False
    has_stt_api_key: bool = False
    stt_api_model: str | None = None
    # Scale: how calls are grouped into runs and how runs share this host's cores.
    executor: Literal["in_process", "multiprocess", "celery"] = "in_process"
    # CALLQA_EXECUTOR=celery: the broker and result backend URLs may hold a password, so
    # only whether they are set (and the broker's scheme) is kept; the executor reads them
    # by name (callqa/executors.py).
    has_celery_broker: bool = False
    celery_broker_scheme: str | None = None
    has_celery_backend: bool = False
    calls_per_run: int = Field(24, ge=1, le=500)
    call_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    whisper_threads: int = Field(0, ge=0)  # 0: this host's cores shared by call_slots
    whisper_batch_size: int = Field(0, ge=0)  # >0: batched inference (a GPU wants 8-16)

    @property
    def effective_whisper_threads(self) -> int:
        """CPU threads per transcription: the cores divided among the calls that run at once,
        so `call_slots` concurrent calls do not oversubscribe the machine."""
        if self.whisper_threads:
            return self.whisper_threads
        return max(1, (os.cpu_count() or 1) // self.call_slots)


def _set(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = {
        "deployment": (_set(env, DEPLOYMENT_ENV) or "local").lower(),
        "has_database_url": bool(_set(env, DATABASE_URL_ENV)),
        "has_audio_store": bool(_set(env, AUDIO_STORE_ENV)),
        "sensor_interval_s": _set(env, SENSOR_INTERVAL_ENV) or 30,
        "aggregates_interval_s": _set(env, AGGREGATES_INTERVAL_ENV) or 120,
        "scorer": (_set(env, SCORER_ENV) or "").lower() or None,
        "llm_model": _set(env, LLM_MODEL_ENV),
        "has_llm_api_base": bool(_set(env, LLM_API_BASE_ENV)),
        "has_llm_api_key": bool(_set(env, LLM_API_KEY_ENV)),
        "stt": (_set(env, STT_ENV) or "").lower() or None,
        "whisper_model": _set(env, WHISPER_MODEL_ENV),
        "whisper_device": _set(env, WHISPER_DEVICE_ENV) or "cpu",
        "whisper_compute_type": _set(env, WHISPER_COMPUTE_TYPE_ENV) or "int8",
        "has_stt_api_base": bool(_set(env, STT_API_BASE_ENV)),
        "has_stt_api_key": bool(_set(env, STT_API_KEY_ENV)),
        "stt_api_model": _set(env, STT_MODEL_ENV),
        "executor": (_set(env, EXECUTOR_ENV) or "in_process").lower().replace("-", "_"),
        "has_celery_broker": bool(_set(env, CELERY_BROKER_ENV)),
        "celery_broker_scheme": _url_scheme(_set(env, CELERY_BROKER_ENV)),
        "has_celery_backend": bool(_set(env, CELERY_BACKEND_ENV)),
        "calls_per_run": _set(env, CALLS_PER_RUN_ENV) or 24,
        "whisper_threads": _set(env, WHISPER_THREADS_ENV) or 0,
        "whisper_batch_size": _set(env, WHISPER_BATCH_SIZE_ENV) or 0,
    }
    if _set(env, CALL_SLOTS_ENV):
        raw["call_slots"] = _set(env, CALL_SLOTS_ENV)
    names = {
        "deployment": DEPLOYMENT_ENV,
        "sensor_interval_s": SENSOR_INTERVAL_ENV,
        "aggregates_interval_s": AGGREGATES_INTERVAL_ENV,
        "scorer": SCORER_ENV,
        "stt": STT_ENV,
        "executor": EXECUTOR_ENV,
        "calls_per_run": CALLS_PER_RUN_ENV,
        "call_slots": CALL_SLOTS_ENV,
        "whisper_threads": WHISPER_THREADS_ENV,
        "whisper_batch_size": WHISPER_BATCH_SIZE_ENV,
    }
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{names.get(str(e['loc'][0]), e['loc'][0])}={raw.get(str(e['loc'][0]))!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid environment: {problems}") from None
    if settings.deployment == "production":
        # Production never falls back to files under the working directory.
        missing = [
            name
            for name, present in (
                (DATABASE_URL_ENV, settings.has_database_url),
                (AUDIO_STORE_ENV, settings.has_audio_store),
            )
            if not present
        ]
        if missing:
            raise ConfigError(
                f"{DEPLOYMENT_ENV}=production needs {' and '.join(missing)} "
                "(the warehouse URL and the audio store folder or URL)"
            )
    if settings.stt == "openai" and not settings.has_stt_api_base:
        raise ConfigError(f"{STT_ENV}=openai needs {STT_API_BASE_ENV}")
    if settings.executor == "celery":
        _check_celery(settings)
    return settings


# Result backends the broker's own URL can serve as; RabbitMQ (amqp://) cannot.
REDIS_SCHEMES = ("redis", "rediss", "sentinel")


def _url_scheme(url: str | None) -> str | None:
    return url.split("://", 1)[0].lower() if url and "://" in url else None


def _check_celery(settings: Settings) -> None:
    """Fail at load, naming the variable, rather than in a run worker that cannot reach a
    broker (Celery's own default is RabbitMQ on localhost)."""
    if not settings.has_celery_broker:
        raise ConfigError(
            f"{EXECUTOR_ENV}=celery needs {CELERY_BROKER_ENV} "
            "(the broker URL the workers listen on, e.g. redis://host:6379/0)"
        )
    if settings.celery_broker_scheme is None:
        raise ConfigError(f"{CELERY_BROKER_ENV} must be a URL such as redis://host:6379/0")
    if not settings.has_celery_backend and settings.celery_broker_scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{CELERY_BACKEND_ENV} is needed when the broker is not Redis "
            f"({CELERY_BROKER_ENV} is {settings.celery_broker_scheme}://...; "
            "e.g. rpc:// for RabbitMQ)"
        )


def secret(name: str) -> str | None:
    """A secret's value, for code outside Dagster (the CLI); Dagster resources get a
    `dg.EnvVar` reference instead, so the value never enters run config or the UI."""
    return _set(os.environ, name)


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, ".callqa")).expanduser().resolve()


def database_url() -> str:
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'warehouse.db'}"


def audio_store_root() -> str:
    return os.environ.get(AUDIO_STORE_ENV) or str(data_dir() / "audio")


def reports_dir() -> Path:
    """Where the tenant reports go (`<folder>/<tenant>/index.html`): CALLQA_REPORTS_DIR, else
    `<data dir>/reports`."""
    value = os.environ.get(REPORTS_DIR_ENV, "").strip()
    return (Path(value).expanduser() if value else data_dir() / "reports").resolve()


def config_dir() -> Path | None:
    value = os.environ.get(CONFIG_DIR_ENV)
    return Path(value) if value else None


def allow_private_urls() -> bool:
    return os.environ.get(ALLOW_PRIVATE_URLS_ENV, "").lower() in ("1", "true", "yes")


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()


def redact_url(url: str) -> str:
    """Hide the password of a database URL before it reaches a log or metadata."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL we can parse: show nothing of it
        return "<unparseable database url>"

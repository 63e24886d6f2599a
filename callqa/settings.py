"""Where callqa keeps its local state, and the environment variables that move it.

Everything defaults to a folder under the current directory so a new user needs no
server; each path or URL can be overridden by an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "CALLQA_DATA_DIR"
DATABASE_URL_ENV = "CALLQA_DATABASE_URL"
AUDIO_STORE_ENV = "CALLQA_AUDIO_STORE"
CONFIG_DIR_ENV = "CALLQA_CONFIG_DIR"
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


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, ".callqa")).expanduser().resolve()


def database_url() -> str:
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'warehouse.db'}"


def audio_store_root() -> str:
    return os.environ.get(AUDIO_STORE_ENV) or str(data_dir() / "audio")


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()


def redact_url(url: str) -> str:
    """Hide the password of a database URL before it reaches a log or metadata."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL we can parse: show nothing of it
        return "<unparseable database url>"

"""The one place that reads callqa's environment.

Everything defaults to a folder under the current directory, so a new user needs no
server. `load_settings()` is called when the code location loads (not on import) and by
the CLI; secrets (database URL, API keys) are never copied into settings: resources
reference them by name with `dg.EnvVar`, so their values stay out of the UI and run config.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
WHISPER_DOWNLOAD_ENV = "CALLQA_WHISPER_DOWNLOAD"
MAX_AUDIO_ENV = "CALLQA_MAX_AUDIO_S"
DIARIZATION_ENV = "CALLQA_DIARIZATION"
PYANNOTE_MODEL_ENV = "CALLQA_PYANNOTE_MODEL"
PYANNOTE_TOKEN_ENV = "CALLQA_PYANNOTE_TOKEN"

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
    # Who spoke when, for every preset (auto: channel for stereo, embedding for mono).
    diarization: Literal["auto", "channel", "embedding", "pyannote", "pause"] | None = None
    pyannote_model: str | None = None  # a local pipeline folder or config.yaml
    has_pyannote_token: bool = False
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
    # Models other than the bundled tiny.en load from the local Hugging Face cache only,
    # unless downloads are allowed (CALLQA_WHISPER_DOWNLOAD=1).
    whisper_download: bool = False
    # Longer recordings are refused before decoding (header) or while decoding.
    max_audio_s: float = Field(4 * 3600.0, gt=0)

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
        "diarization": (_set(env, DIARIZATION_ENV) or "").lower() or None,
        "pyannote_model": _set(env, PYANNOTE_MODEL_ENV),
        "has_pyannote_token": bool(_set(env, PYANNOTE_TOKEN_ENV)),
        "executor": (_set(env, EXECUTOR_ENV) or "in_process").lower().replace("-", "_"),
        "has_celery_broker": bool(_set(env, CELERY_BROKER_ENV)),
        "celery_broker_scheme": _url_scheme(_set(env, CELERY_BROKER_ENV)),
        "has_celery_backend": bool(_set(env, CELERY_BACKEND_ENV)),
        "calls_per_run": _set(env, CALLS_PER_RUN_ENV) or 24,
        "whisper_threads": _set(env, WHISPER_THREADS_ENV) or 0,
        "whisper_batch_size": _set(env, WHISPER_BATCH_SIZE_ENV) or 0,
        "whisper_download": _set(env, WHISPER_DOWNLOAD_ENV) or False,
        "max_audio_s": _set(env, MAX_AUDIO_ENV) or 4 * 3600.0,
    }
    if _set(env, CALL_SLOTS_ENV):
        raw["call_slots"] = _set(env, CALL_SLOTS_ENV)
    names = {
        "deployment": DEPLOYMENT_ENV,
        "sensor_interval_s": SENSOR_INTERVAL_ENV,
        "aggregates_interval_s": AGGREGATES_INTERVAL_ENV,
        "scorer": SCORER_ENV,
        "stt": STT_ENV,
        "diarization": DIARIZATION_ENV,
        "executor": EXECUTOR_ENV,
        "calls_per_run": CALLS_PER_RUN_ENV,
        "call_slots": CALL_SLOTS_ENV,
        "whisper_threads": WHISPER_THREADS_ENV,
        "whisper_batch_size": WHISPER_BATCH_SIZE_ENV,
        "whisper_download": WHISPER_DOWNLOAD_ENV,
        "max_audio_s": MAX_AUDIO_ENV,
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
    private_url_allow_list(env)  # a malformed list fails at load, naming the variable
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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _with_ipv4_mapped(networks: list[IPNetwork]) -> tuple[IPNetwork, ...]:
    """The networks, plus each IPv4 one written as IPv4-mapped IPv6 (::ffff:a.b.c.d/n+96)."""
    mapped = [
        ipaddress.ip_network(f"::ffff:{n.network_address}/{96 + n.prefixlen}")
        for n in networks
        if n.version == 4
    ]
    return (*networks, *mapped)


# Link-local: where clouds serve instance metadata and credentials. Never fetched, and an
# error to list in CALLQA_ALLOW_PRIVATE_URLS.
LINK_LOCAL = _with_ipv4_mapped(
    [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10")]
)
# Never fetched, whatever CALLQA_ALLOW_PRIVATE_URLS lists: link-local and the metadata
# addresses outside it (inside networks people do list, such as 100.64.0.0/10).
NEVER_FETCHED = LINK_LOCAL + _with_ipv4_mapped(
    [
        ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
        ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
        ipaddress.ip_network("168.63.129.16/32"),  # Azure host endpoint (public-looking)
    ]
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?", re.I)
_SWITCH_VALUES = {"0", "1", "true", "false", "yes", "no", "on", "off"}


def plain_address(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped ::ffff:a.b.c.d, or NAT64
    64:ff9b::a.b.c.d), else the address itself: the checks must see where it leads."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def never_fetched(address: IPAddress) -> bool:
    address = plain_address(address)
    return any(address in network for network in NEVER_FETCHED)


@dataclass(frozen=True)
class UrlAllowList:
    """The non-public destinations recording URLs may reach (CALLQA_ALLOW_PRIVATE_URLS):
    host names (matched against the URL's host) and IP networks (matched against the
    address the host resolved to). Link-local and metadata addresses are never allowed."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> UrlAllowList:
        """`127.0.0.1,10.20.0.0/16,crm.internal`; ConfigError naming the bad entry."""
        name = ALLOW_PRIVATE_URLS_ENV
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if any(e.lower() in _SWITCH_VALUES for e in entries):
            raise ConfigError(
                f"{name}={value.strip()!r}: this is no longer an on/off switch; list the hosts "
                f"or networks to allow, e.g. {name}=127.0.0.1 or {name}=10.20.0.0/16,crm.internal "
                "(leave it unset to allow none)"
            )
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                network = None
            if network is not None:
                if any(network.overlaps(n) for n in LINK_LOCAL if n.version == network.version):
                    raise ConfigError(
                        f"{name}: {entry!r} covers link-local addresses (169.254.0.0/16, "
                        "fe80::/10: cloud metadata), which are never fetched; "
                        "list a narrower network"
                    )
                networks.append(network)
            elif _HOST_NAME.fullmatch(entry) and not entry.replace(".", "").isdigit():
                hosts.add(entry.lower().rstrip("."))
            else:
                raise ConfigError(
                    f"{name}: {entry!r} is neither a host name nor an IP network "
                    "(one address such as 127.0.0.1, or CIDR such as 10.20.0.0/16)"
                )
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether `address`, which `host` resolved to, may be fetched from."""
        if never_fetched(address):
            return False
        address = plain_address(address)
        return host.lower().rstrip(".") in self.hosts or any(
            address in network for network in self.networks
        )


def private_url_allow_list(environ: Mapping[str, str] | None = None) -> UrlAllowList:
    """CALLQA_ALLOW_PRIVATE_URLS, parsed (empty when unset: no non-public address allowed)."""
    env = os.environ if environ is None else environ
    return UrlAllowList.parse(env.get(ALLOW_PRIVATE_URLS_ENV, ""))


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()


def redact_url(url: str) -> str:
    """Hide the password of a database URL before it reaches a log or metadata."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL we can parse: show nothing of it
        return "<unparseable database url>"


REPORT_STORE_ENV = "CALLQA_REPORT_STORE"
REPORT_BASE_URL_ENV = "CALLQA_REPORT_BASE_URL"
REPORT_LINK_KEY_ENV = "CALLQA_REPORT_LINK_KEY"


def call_reports_dir() -> Path:
    """Where each call's HTML report is written (`<folder>/<tenant>/<call>.html`):
    CALLQA_REPORT_STORE, else `<reports dir>/calls`."""
    value = os.environ.get(REPORT_STORE_ENV, "").strip()
    return (Path(value).expanduser() if value else reports_dir() / "calls").resolve()


def report_base_url() -> str:
    """What a call report's link starts with, in CRM notes and alerts: CALLQA_REPORT_BASE_URL
    (the web server that serves the report store), else the store's own file:// URL."""
    value = os.environ.get(REPORT_BASE_URL_ENV, "").strip()
    return value or call_reports_dir().as_uri()

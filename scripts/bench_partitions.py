"""Dagster at 100,000 `calls` partitions: what adding, listing, sensing, viewing and retiring
them costs on the production instance storage (PostgreSQL). Figures printed, never asserted.

    .venv/bin/python scripts/bench_partitions.py [--keys 100000] [--batch 200]
        [--materialized 1000] [--staged 200] [--retire 10000] [--repeat 3]

Creates a throwaway database on the PostgreSQL server (CALLQA_TEST_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres, trust auth) and a temporary
DAGSTER_HOME with the repository's own dagster.yaml (dagster-postgres storage), then:
1. adds --keys `calls` partition keys in batches of --batch, as the staged-calls sensor does;
2. times `instance.get_dynamic_partitions("calls")`;
3. evaluates the production `staged_calls_sensor` (built by its factory) with --staged newly
   staged calls in a throwaway SQLite warehouse, and applies its add request;
4. records --materialized runless materializations of `scored_analysis`;
5. starts `dagster-webserver -w workspace.yaml` on that instance and times the GraphQL
   queries the UI sends for a partitioned asset (their text is copied from the webserver's
   own bundle, dagster-webserver 1.13): the Partitions tab, the asset graph's live data, a
   check's Partitions tab and one partition's detail;
6. runs the `retire_call_partitions` job with --retire calls old and scored;
and prints peak RSS of this process and of the webserver. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the production-path helpers live in tests/

from tests.production_path import Webserver as TestWebserver  # noqa: E402
from tests.production_path import dagster_pg_env, pg_databases  # noqa: E402

ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TENANT = "demo"  # the bundled tenant: auto_process on, retention_days 90
ASSET = "scored_analysis"
CHECK = "analysis_matches_schema"
# Run logs at WARNING: the figures are the output (the job's own log says the same counts).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# The UI's own queries (dagster-webserver 1.13 bundle), trimmed to the asset's fields.
PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses { primaryDimensionName }
      }
    }
  }
}"""
ASSET_GRAPH_LIVE = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id opNames repository { id } assetKey { path }
    assetMaterializations(limit: 1) { timestamp runId stepKey }
    assetObservations(limit: 1) { timestamp runId stepKey }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name canExecuteIndividually
          executionForLatestMaterialization { id runId status timestamp stepKey }
          partitionDefinition { name description }
          partitionStatuses {
            ... on AssetCheckDefaultPartitionStatuses {
              succeededPartitions failedPartitions inProgressPartitions
              skippedPartitions executionFailedPartitions
            }
          }
        }
      }
    }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
  assetsLatestInfo(assetKeys: $assetKeys) {
    id assetKey { path } unstartedRunIds inProgressRunIds
    latestRun { id status startTime endTime }
  }
}"""
CHECK_PARTITION_HEALTH = """
query AssetCheckPartitionHealthQuery($assetKey: AssetKeyInput!, $checkName: String!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      assetCheckOrError(checkName: $checkName) {
        ... on AssetCheck {
          name
          partitionKeysByDimension { name type partitionKeys }
          partitionStatuses {
            ... on AssetCheckDefaultPartitionStatuses {
              succeededPartitions failedPartitions inProgressPartitions
              skippedPartitions executionFailedPartitions
            }
          }
        }
      }
    }
  }
}"""
PARTITION_DETAIL = """
query AssetPartitionDetailQuery($assetKey: AssetKeyInput!, $partitionKey: String!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      definition { id opNames latestRunForPartition(partition: $partitionKey) { id status } }
      assetEventHistory(
        partitions: [$partitionKey]
        limit: 1000
        eventTypeSelectors: [MATERIALIZATION, OBSERVATION, FAILED_TO_MATERIALIZE]
      ) { results { ... on MaterializationEvent { runId partition timestamp } } }
    }
  }
}"""


def key(i: int) -> str:
    return f"{TENANT}__bench-{i:07d}"


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def line(label: str, text: str) -> None:
    print(f"{label:<58} {text}", flush=True)


def bench_add(instance, n: int, batch: int) -> None:
    times = []
    for start in range(0, n, batch):
        seconds, _ = timed(
            instance.add_dynamic_partitions,
            "calls",
            [key(i) for i in range(start, min(n, start + batch))],
        )
        times.append(seconds)
    total = sum(times)
    tail = times[-max(1, len(times) // 10) :]
    line(
        f"add {n:,} keys, {len(times)} batches of {batch}",
        f"{total:7.1f} s total, {n / total:,.0f} keys/s; per batch median "
        f"{statistics.median(times) * 1e3:.0f} ms, first {times[0] * 1e3:.0f} ms, "
        f"last 10% median {statistics.median(tail) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms",
    )


def bench_list(instance, repeat: int) -> None:
    times = []
    for _ in range(repeat):
        seconds, keys = timed(instance.get_dynamic_partitions, "calls")
        times.append(seconds)
    line(
        f"get_dynamic_partitions('calls') -> {len(keys):,} keys",
        f"{min(times) * 1e3:7.0f} ms best, {max(times) * 1e3:.0f} ms worst of {repeat}",
    )


def bench_sensor(instance, data: Path, staged: int, repeat: int) -> None:
    import dagster as dg

    from callqa.resources import WarehouseResource
    from callqa.sensors.staged_calls import build_staged_calls_sensor
    from callqa.storage.warehouse import Warehouse

    url = f"sqlite:///{data / 'sensor-warehouse.db'}"
    wh = Warehouse.from_url(url)
    for i in range(staged):
        wh.stage_call(
            tenant=TENANT,
            external_id=f"staged-{i:05d}",
            source="file",
            source_uri=f"/calls/staged-{i:05d}.wav",
        )
    wh.dispose()
    sensor = build_staged_calls_sensor()
    resources = {"warehouse": WarehouseResource(database_url=url)}
    times, result = [], None
    for _ in range(repeat):  # no cursor each time: every evaluation sees all staged calls
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            seconds, result = timed(sensor, context)
        times.append(seconds)
    runs = len(result.run_requests or [])
    adds = [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys]
    line(
        f"staged_calls_sensor evaluation, {staged} staged calls",
        f"{min(times) * 1e3:7.0f} ms best, {times[0] * 1e3:.0f} ms first of {repeat}; "
        f"{runs} run request(s), {len(adds)} key(s) to add",
    )
    if adds:
        seconds, _ = timed(instance.add_dynamic_partitions, "calls", adds)
        line("  applying its add request (what the daemon does)", f"{seconds * 1e3:7.0f} ms")


def bench_materializations(instance, n: int, total_keys: int) -> None:
    import dagster as dg

    step = max(1, total_keys // n)
    seconds, _ = timed(
        lambda: [
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=ASSET, partition=key(i))
            )
            for i in range(0, step * n, step)
        ]
    )
    line(f"report {n:,} runless materializations of {ASSET}", f"{seconds:7.1f} s")


class Webserver(TestWebserver):
    """The production-path tests' webserver, timed."""

    def wait_ready(self, timeout_s: float) -> float:
        import requests

        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {self.proc.returncode}")
            with suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{self.port}/server_info", timeout=2).ok:
                    return time.perf_counter() - started
            time.sleep(0.5)
        raise RuntimeError(f"dagster-webserver not ready after {timeout_s:.0f} s")

    def timed_graphql(self, query: str, variables: dict) -> tuple[float, int, dict]:
        import requests

        started = time.perf_counter()
        response = requests.post(
            f"http://127.0.0.1:{self.port}/graphql",
            json={"query": query, "variables": variables},
            timeout=600,
        )
        seconds = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors'][:2]}")
        return seconds, len(response.content), body["data"]

    def peak_rss_mib(self) -> float | None:
        with suppress(OSError):
            for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if row.startswith("VmHWM:"):
                    return int(row.split()[1]) / 1024
        return None


def ui_queries(web: Webserver, repeat: int, sample_key: str) -> None:
    asset_key = {"path": [ASSET]}
    queries = [
        ("Partitions tab: PartitionHealthQuery", PARTITION_HEALTH, {"assetKey": asset_key}),
        ("graph live data: AssetGraphLiveQuery", ASSET_GRAPH_LIVE, {"assetKeys": [asset_key]}),
        (
            "check Partitions tab: AssetCheckPartitionHealthQuery",
            CHECK_PARTITION_HEALTH,
            {"assetKey": asset_key, "checkName": CHECK},
        ),
        (
            "one partition: AssetPartitionDetailQuery",
            PARTITION_DETAIL,
            {"assetKey": asset_key, "partitionKey": sample_key},
        ),
    ]
    for label, query, variables in queries:
        runs = [web.timed_graphql(query, variables) for _ in range(repeat)]
        times = [r[0] for r in runs]
        line(
            f"  {label}",
            f"{times[0]:7.2f} s first, {min(times):.2f} s best of {repeat}; "
            f"{runs[0][1] / 1e6:.1f} MB reply",
        )
        if label.startswith("Partitions tab"):
            node = runs[0][2]["assetNodeOrError"]
            if "partitionKeysByDimension" not in node:
                raise RuntimeError(f"{ASSET} not found: {node}")
            [dim] = node["partitionKeysByDimension"]
            status = node["assetPartitionStatuses"]
            line(
                "    (keys listed, materialized)",
                f"{len(dim['partitionKeys']):,}, {len(status.get('materializedPartitions', [])):,}",
            )
        if label.startswith("graph live"):
            stats = runs[0][2]["assetNodes"][0]["partitionStats"]
            line("    (partitionStats)", str(stats))


def web_log_tail(log: Path, lines: int = 40) -> list[str]:
    with suppress(OSError):
        return log.read_text(errors="replace").splitlines()[-lines:]
    return []


def bench_retention(instance, data: Path, retire: int) -> None:
    from callqa.resources import WarehouseResource
    from callqa.retention import retire_call_partitions
    from callqa.storage import tables as t
    from callqa.storage.warehouse import Warehouse

    url = f"sqlite:///{data / 'retention-warehouse.db'}"
    wh = Warehouse.from_url(url)
    old = (datetime.now(UTC) - timedelta(days=200)).date()
    # Fixture rows written in bulk (the pipeline's save_analysis is per call): only what
    # retention reads, an analysis with its call day, matters here.
    rows = [
        {
            "tenant": TENANT,
            "external_id": key(i).split("__", 1)[1],
            "call_day": old,
            "preset": "sales-default",
            "prompt_version": "bench",
            "scorer": "rules",
            "total": 50.0,
            "weakest_criterion": "greeting",
            "summary": "",
            "cost_usd": 0.0,
            "record": {},
            "updated_at": datetime.now(UTC),
        }
        for i in range(retire)
    ]
    with wh.engine.begin() as conn:
        conn.execute(t.analyses.insert(), rows)

    def run_job():
        return retire_call_partitions.execute_in_process(
            instance=instance,
            resources={"warehouse": WarehouseResource(database_url=url)},
            run_config=QUIET,
        )

    before = len(instance.get_dynamic_partitions("calls"))
    seconds, result = timed(run_job)
    counts = result.output_for_node("retire_old_call_partitions")[TENANT]
    after = len(instance.get_dynamic_partitions("calls"))
    line(
        f"retire_call_partitions job, {retire:,} old scored calls",
        f"{seconds:7.1f} s, {counts['retired']:,} retired ({counts['retired'] / seconds:,.0f}/s); "
        f"partitions {before:,} -> {after:,}",
    )
    seconds, result = timed(run_job)
    counts = result.output_for_node("retire_old_call_partitions")[TENANT]
    line(
        "  the same job again (nothing left to retire)",
        f"{seconds:7.1f} s, {counts['retired']:,} retired",
    )
    wh.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="partition keys to add")
    parser.add_argument("--batch", type=int, default=200, help="keys per add (a sensor tick)")
    parser.add_argument("--materialized", type=int, default=1000, help="keys materialized")
    parser.add_argument("--staged", type=int, default=200, help="staged calls for the sensor")
    parser.add_argument("--retire", type=int, default=10_000, help="partitions to retire")
    parser.add_argument("--repeat", type=int, default=3, help="timings per query")
    args = parser.parse_args()

    started = time.perf_counter()
    data = Path(tempfile.mkdtemp(prefix="callqa-bench-partitions-"))
    home = data / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")  # the production instance
    try:
        with pg_databases(ADMIN_URL, "bench_partitions") as (db_url,):
            db = sa.engine.make_url(db_url)
            env = {
                **dagster_pg_env(db_url),
                "DAGSTER_HOME": str(home),
                "CALLQA_DATA_DIR": str(data / "callqa"),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            }
            os.environ.update(env)  # dagster.yaml reads DAGSTER_PG_* in this process too
            os.environ.pop("CALLQA_CONFIG_DIR", None)
            import logging

            import dagster as dg

            logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's info lines
            print(
                f"Dagster {dg.__version__}, instance storage PostgreSQL database {db.database} "
                f"({db.host}:{db.port}), {os.cpu_count()} CPU cores",
                flush=True,
            )
            instance = dg.DagsterInstance.from_config(str(home))
            try:
                bench_add(instance, args.keys, args.batch)
                bench_list(instance, args.repeat)
                bench_sensor(instance, data, args.staged, args.repeat)
                bench_materializations(instance, args.materialized, args.keys)
                web = Webserver({**os.environ, **env}, data / "webserver.log")
                try:
                    line(
                        "dagster-webserver start until /server_info answers",
                        f"{web.wait_ready(180):7.1f} s",
                    )
                    ui_queries(web, args.repeat, key(0))
                    bench_retention(instance, data, args.retire)
                    print("UI queries after retention:", flush=True)
                    ui_queries(web, 1, key(args.retire))
                    rss = web.peak_rss_mib()
                    line("dagster-webserver peak RSS (VmHWM)", f"{rss:7.0f} MiB" if rss else "?")
                except Exception:
                    print(
                        "webserver log, last lines:",
                        *web_log_tail(web.log),
                        sep="\n",
                        file=sys.stderr,
                    )
                    raise
                finally:
                    web.stop()
            finally:
                instance.dispose()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line("this script's peak RSS", f"{peak_mib:7.0f} MiB")
    line("wall time", f"{time.perf_counter() - started:7.1f} s")


if __name__ == "__main__":
    main()

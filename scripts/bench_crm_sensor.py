"""A CRM sensor draining a backlog of 10,000 new calls: tick times, cursor, peak memory.

For HubSpot and AmoCRM: each tick's time, the cursor's size and the sensor process's peak
memory. Figures printed; the only check is that every call was staged exactly once (exit
status 1 if not).

    .venv/bin/python scripts/bench_crm_sensor.py [--calls 10000] [--crm hubspot|amocrm|both]
        [--sqlite] [--page-size N] [--no-tracemalloc]

For each CRM this process starts the fake API of tests/fakes/ (FakeHubSpot, FakeAmoCrm) on
loopback and loads --calls call records, modified 30 days ago (well past HubSpot's 60 s
index lag and AmoCRM's 30 s settle delay) with realistic ties: 1 to 8 calls share each
modification time (HubSpot: epoch milliseconds, whole seconds apart; AmoCRM: unix
seconds). HubSpot calls get deals (70%) and contacts (50%) associations; AmoCRM notes sit
on leads (2/3) and contacts (1/3), the default entity_types. A tenant file points at the
fake (token through an env secret ref, CALLQA_ALLOW_PRIVATE_URLS=127.0.0.1, a temporary
CALLQA_CONFIG_DIR), with the config's default page size unless --page-size.

The sensor runs in a fresh child process (this script, re-run with --child): it builds
the production sensor, `build_crm_sensor(tenant)`, and evaluates it with
`dg.build_sensor_context` (a `DagsterInstance.ephemeral()`, `WarehouseResource` on the
warehouse) from an empty cursor, passing each tick's cursor to the next, until a tick
stages nothing new. Per tick: wall time of the whole evaluation (resource set-up
included, and the fake's time to answer, as a real CRM's latency would be), calls
listed / staged, pages, cursor length in characters. Peak RSS is the child's own high-water
mark, VmHWM of /proc/self/status: the Python interpreter, dagster + callqa imports, the
ephemeral instance and every tick; the fake and its records live in this (parent) process
and are not in it. (Not `ru_maxrss`: on Linux a spawned child's ru_maxrss starts from the
parent's peak, which execve keeps.)
A second fresh child then drains the same fake into a second tenant with `tracemalloc`
on (it slows Python allocations, so its tick times are not the ones reported) for the
peak of Python allocations during the ticks.

Warehouse: a throwaway PostgreSQL database (CALLQA_TEST_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres, trust auth), uniquely named and
dropped at the end even on error; --sqlite: a SQLite file in a temporary folder. The
staged calls are counted there afterwards: distinct external ids of the tenant must be
exactly --calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fakes and tenant helpers live in tests/

ADMIN_URL = os.environ.get(
    "CALLQA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CRMS = ("hubspot", "amocrm")
TOKENS = {
    "hubspot": ("BENCH_HUBSPOT_TOKEN", "pat-na1-bench-crm-sensor-token-0001"),
    "amocrm": ("BENCH_AMOCRM_TOKEN", "amo-long-lived-bench-crm-sensor-token-0002"),
}
AGE_S = 30 * 24 * 3600  # modification times 30 days back: settled for both adapters
MAX_TIE = 8  # 1..MAX_TIE calls share each modification time
MAX_TICKS = 500
TICK = re.compile(r"^(\d+) new call\(s\) staged of (\d+) listed in (\d+) page\(s\)")


# --- the child: the sensor, ticked until it stages nothing new ---------------------------


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM), KiB; ru_maxrss where /proc is missing."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(args: argparse.Namespace) -> int:
    """Runs in a fresh process; writes its figures as JSON to --child-out."""
    import logging

    if args.trace:
        import tracemalloc
    import dagster as dg

    from callqa.config.registry import default_registry
    from callqa.resources import WarehouseResource
    from callqa.sensors.crm_sources import build_crm_sensor

    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's info line per tick
    default_registry.cache_clear()
    sensor = build_crm_sensor(default_registry().tenant(args.tenant))
    instance = dg.DagsterInstance.ephemeral()
    out: dict = {"ticks": [], "error": None}
    out["rss_before_kib"] = peak_rss_kib()
    if args.trace:
        tracemalloc.start()
    cursor = None
    try:
        for _ in range(MAX_TICKS):
            resources = {"warehouse": WarehouseResource(database_url=args.db_url)}
            started = time.perf_counter()
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources
            ) as context:
                result = sensor(context)
            seconds = time.perf_counter() - started
            cursor = result.cursor
            message = result.skip_reason.skip_message if result.skip_reason else ""
            match = TICK.match(message)
            if match is None:
                raise RuntimeError(f"unexpected tick result: {message!r}")
            staged, listed, pages = map(int, match.groups())
            out["ticks"].append(
                {
                    "seconds": seconds,
                    "staged": staged,
                    "listed": listed,
                    "pages": pages,
                    "cursor_chars": len(cursor or ""),
                    "maxrss_kib": peak_rss_kib(),
                    "message": message,
                }
            )
            if staged == 0:
                break
        else:
            out["error"] = f"still staging after {MAX_TICKS} ticks"
    except Exception as exc:  # reported by the parent, with the child's stderr
        out["error"] = f"{type(exc).__name__}: {exc}"
    if args.trace:
        out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    out["rss_peak_kib"] = peak_rss_kib()
    out["cursor"] = cursor
    instance.dispose()
    Path(args.child_out).write_text(json.dumps(out))
    return 0 if out["error"] is None else 1


# --- the parent: fakes, tenants, warehouse, figures ---------------------------------------


class _Env:
    """What tests.tenants.use_tenants needs of pytest's monkeypatch, on os.environ."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value


def load_hubspot(fake, n: int, rng: random.Random) -> None:
    t_ms = int((time.time() - AGE_S) * 1000)
    i = 0
    while i < n:
        for _ in range(rng.randint(1, MAX_TIE)):
            if i == n:
                break
            call_id = str(100_000 + i)
            fake.add_call(call_id, t_ms)
            if rng.random() < 0.7:
                fake.associations["deals"][call_id] = [str(500_000 + rng.randrange(3000))]
            if rng.random() < 0.5:
                fake.associations["contacts"][call_id] = [str(900_000 + rng.randrange(8000))]
            i += 1
        t_ms += 1000 * rng.randint(1, 30)


def load_amocrm(fake, n: int, rng: random.Random) -> None:
    t_s = int(time.time() - AGE_S)
    i = 0
    while i < n:
        for _ in range(rng.randint(1, MAX_TIE)):
            if i == n:
                break
            entity = "contacts" if rng.random() < 1 / 3 else "leads"
            fake.add_call(
                entity,
                rng.randrange(1, 40_000),
                t_s,
                note_type=rng.choice(("call_in", "call_out")),
                duration=rng.randint(5, 900),
            )
            i += 1
        t_s += rng.randint(1, 30)


@contextmanager
def fake_crm(crm: str, n: int):
    from tests.fakes.amocrm import FakeAmoCrm
    from tests.fakes.hubspot import FakeHubSpot

    token = TOKENS[crm][1]
    rng = random.Random(20_240_913)
    if crm == "hubspot":
        with FakeHubSpot(token, recordings_need_auth=False) as fake:
            load_hubspot(fake, n, rng)
            yield fake
    else:
        with FakeAmoCrm(token) as fake:
            load_amocrm(fake, n, rng)
            yield fake


def tenant_file(crm: str, tenant_id: str, fake, page_size: int | None) -> dict:
    source: dict = {"adapter": crm, "token": {"env": TOKENS[crm][0]}, "poll_interval_s": 30}
    if crm == "hubspot":
        source["base_url"] = fake.url("")
    else:
        source.update(subdomain="bench", base_url=fake.api_base)
    if page_size:
        source["page_size"] = page_size
    return {"id": tenant_id, "name": tenant_id.title(), "crm": source}


def run_child(tenant_id: str, db_url: str, data: Path, tracemalloc: bool) -> dict:
    out = data / f"{tenant_id}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--tenant",
        tenant_id,
        "--db-url",
        db_url,
        "--child-out",
        str(out),
    ] + (["--trace"] if tracemalloc else [])
    started = time.perf_counter()
    proc = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)
    figures = json.loads(out.read_text()) if out.exists() else {"ticks": []}
    figures["wall_s"] = time.perf_counter() - started
    if proc.returncode != 0 or figures.get("error"):
        figures["error"] = figures.get("error") or f"child exited with {proc.returncode}"
        print(f"sensor process for {tenant_id} failed: {figures['error']}", file=sys.stderr)
        print(*proc.stderr.splitlines()[-40:], sep="\n", file=sys.stderr)
    return figures


def staged_counts(db_url: str, tenant_id: str) -> tuple[int, int]:
    from callqa.storage.warehouse import Warehouse

    wh = Warehouse.from_url(db_url)
    try:
        ids = [r["external_id"] for r in wh.staged_calls(tenant_id)]
    finally:
        wh.dispose()
    return len(ids), len(set(ids))


def mib(kib: float) -> float:
    return kib / 1024


def bench_crm(crm: str, args, db_url: str, data: Path, timeout_s: int) -> bool:
    from callqa.config.registry import default_registry
    from tests.tenants import use_tenants

    tenant_id = f"bench-{crm}"
    loading = time.perf_counter()
    with fake_crm(crm, args.calls) as fake:
        load_s = time.perf_counter() - loading
        tenants = [
            tenant_file(crm, t, fake, args.page_size) for t in (tenant_id, f"{tenant_id}-tm")
        ]
        use_tenants(data / "config", _Env(), *tenants)
        tenant = default_registry().tenant(tenant_id)  # a config error shows here, not in a child
        default_registry.cache_clear()
        print(
            f"\n{crm}: {args.calls:,} calls in the fake (loaded in {load_s:.1f} s), "
            f"tenant {tenant_id}, page_size {tenant.crm.page_size}",
            flush=True,
        )
        timed = run_child(tenant_id, db_url, data, tracemalloc=False)
        traced = (
            run_child(f"{tenant_id}-tm", db_url, data, tracemalloc=True)
            if args.tracemalloc
            else None
        )
    ticks = timed["ticks"]
    print(
        f"{'tick':>4} {'staged':>7} {'listed':>7} {'pages':>5} {'seconds':>8} "
        f"{'cursor chars':>12} {'peak RSS MiB':>12}"
    )
    for n, tick in enumerate(ticks, 1):
        print(
            f"{n:>4} {tick['staged']:>7,} {tick['listed']:>7,} {tick['pages']:>5} "
            f"{tick['seconds']:>8.2f} {tick['cursor_chars']:>12} {mib(tick['maxrss_kib']):>12.0f}"
        )
    rows, distinct = staged_counts(db_url, tenant_id)
    ok = distinct == args.calls and rows == args.calls and not timed.get("error")
    slowest = max((t["seconds"] for t in ticks), default=float("nan"))
    summed = sum(t["staged"] for t in ticks)
    print(
        f"{crm} summary: {distinct:,} distinct calls staged ({rows:,} rows, {summed:,} by the "
        f"ticks' own count; want {args.calls:,}: {'OK' if ok else 'MISMATCH'}), "
        f"{len(ticks)} ticks ({sum(t['seconds'] for t in ticks):.1f} s in all), max tick "
        f"{slowest:.2f} s vs Dagster's {timeout_s} s sensor timeout "
        f"({slowest / timeout_s:.0%}; the sensor's own budget is {args.budget_s:.0f} s), "
        f"peak RSS {mib(timed.get('rss_peak_kib', 0)):.0f} MiB "
        f"({mib(timed.get('rss_before_kib', 0)):.0f} MiB before the first tick), "
        + (
            f"tracemalloc peak {traced.get('tracemalloc_peak', 0) / 2**20:.1f} MiB"
            if traced is not None
            else "tracemalloc not run"
        ),
        flush=True,
    )
    if traced is not None:
        t_rows, t_distinct = staged_counts(db_url, f"{tenant_id}-tm")
        t_ticks = traced["ticks"]
        print(
            f"  (tracemalloc pass, tenant {tenant_id}-tm: {t_distinct:,} distinct staged in "
            f"{len(t_ticks)} ticks, {sum(t['seconds'] for t in t_ticks):.1f} s in all with "
            "tracing on)"
        )
        ok = ok and t_distinct == args.calls and t_rows == args.calls and not traced.get("error")
    return ok


@contextmanager
def warehouse_url(use_sqlite: bool, data: Path):
    if use_sqlite:
        yield f"sqlite:///{data / 'warehouse.db'}", "SQLite file in a temporary folder"
        return
    import sqlalchemy as sa

    from tests.production_path import pg_databases

    with pg_databases(ADMIN_URL, "bench_crm_sensor") as (url,):
        db = sa.engine.make_url(url)
        yield url, f"PostgreSQL database {db.database} ({db.host}:{db.port}), dropped at the end"


def sensor_timeout_s() -> int:
    try:
        from dagster._grpc.utils import default_sensor_grpc_timeout

        return default_sensor_grpc_timeout()
    except ImportError:  # a private helper; 60 s is the documented default
        return 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls in each fake CRM")
    parser.add_argument("--crm", choices=(*CRMS, "both"), default="both")
    parser.add_argument("--sqlite", action="store_true", help="warehouse in a SQLite file")
    parser.add_argument(
        "--page-size", type=int, default=None, help="the tenant's crm.page_size (config default)"
    )
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="skip the second, traced pass",
    )
    # The child's arguments (the script re-runs itself for each measured sensor process).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tenant", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import dagster as dg

    from callqa.config.registry import default_registry
    from callqa.sensors import crm_sources
    from callqa.storage.warehouse import Warehouse

    args.budget_s = crm_sources.TICK_BUDGET_S
    started = time.perf_counter()
    data = Path(tempfile.mkdtemp(prefix="callqa-bench-crm-sensor-"))
    os.environ.update(
        {
            "CALLQA_ALLOW_PRIVATE_URLS": "127.0.0.1",
            "CALLQA_CONFIG_DIR": str(data / "config"),
            "CALLQA_DATA_DIR": str(data / "callqa"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            **{env: token for env, token in TOKENS.values()},
        }
    )
    os.environ.pop("CALLQA_DATABASE_URL", None)
    default_registry.cache_clear()
    timeout_s = sensor_timeout_s()
    ok = True
    try:
        with ExitStack() as stack:
            db_url, where = stack.enter_context(warehouse_url(args.sqlite, data))
            Warehouse.from_url(db_url).dispose()  # migrated once, as a deployed warehouse is
            print(
                f"Dagster {dg.__version__}; warehouse: {where}; {os.cpu_count()} CPU cores\n"
                f"crm sensor limits: MAX_CALLS_PER_TICK {crm_sources.MAX_CALLS_PER_TICK}, "
                f"TICK_BUDGET_S {crm_sources.TICK_BUDGET_S:.0f}; Dagster sensor timeout "
                f"{timeout_s} s\n"
                "seconds: one sensor evaluation (build_sensor_context + sensor), the fake "
                "CRM's answers included; peak RSS: the sensor process's own VmHWM so far "
                "(interpreter, imports, ephemeral instance, ticks; not the fake)",
                flush=True,
            )
            for crm in CRMS if args.crm == "both" else (args.crm,):
                ok = bench_crm(crm, args, db_url, data, timeout_s) and ok
    finally:
        default_registry.cache_clear()
        shutil.rmtree(data, ignore_errors=True)
    print(f"\nwall time {time.perf_counter() - started:.1f} s", flush=True)
    if not ok:
        print("FAILED: not every call was staged exactly once (see above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

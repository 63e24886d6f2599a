"""A call pushed by a CRM reaches its CRM card as users run it: `callqa webhook serve`
stages an AmoCRM push, the Dagster daemon (repository dagster.yaml on PostgreSQL) runs it
from staged_calls_sensor, and crm_pushback writes the score as a note on the lead in a
fake AmoCRM, plus one low-score alert. Prints the push-to-note wall time."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from urllib.parse import urlencode

import dagster as dg
import pytest
import requests
import yaml

from callqa.storage.warehouse import Warehouse
from tests.fakes.alerts import FakeAlertWebhook
from tests.fakes.amocrm import FakeAmoCrm
from tests.paths import ROOT
from tests.production_path import (
    BIN,
    Daemon,
    open_instance,
    pg_databases,
    production_env,
    runs_summary,
    wait_for,
)

TOKEN = "amo-long-lived-token-for-the-e2e-test-0042"
WEBHOOK_SECRET = "whsec-e2e-0123456789abcdef"
LEAD = 4242


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _amocrm_push(note_id: int, lead: int, link: str) -> bytes:
    """A 'note added' push for a call note on a lead, form-encoded as AmoCRM sends it."""
    note = {
        "id": str(note_id),
        "element_id": str(lead),
        "element_type": "2",
        "note_type": "10",  # call_in
        "text": json.dumps(
            {
                "UNIQ": f"uniq-{note_id}",
                "DURATION": 30,
                "SRC": "pbx",
                "LINK": link,
                "PHONE": "+1555",
            }
        ),
        "created_at": "1763800000",
        "updated_at": "1763800000",
        "main_user_id": "504141",
        "account_id": "29001",
    }
    fields = {"account[subdomain]": "acme", "account[id]": "29001"}
    fields.update({f"leads[note][0][note][{k}]": v for k, v in note.items()})
    return urlencode(fields).encode()


@pytest.mark.daemon
@pytest.mark.slow
@pytest.mark.postgres
def test_webhook_push_to_score_on_the_crm_card(pg_server_url, tmp_path, monkeypatch):
    config = tmp_path / "config" / "tenants"
    config.mkdir(parents=True)
    with (
        FakeAmoCrm(TOKEN, subdomain="acme") as amo,
        FakeAlertWebhook() as alerts,
        pg_databases(pg_server_url, "dagster", "warehouse") as (dagster_db, warehouse_db),
    ):
        (config / "acme.yaml").write_text(
            yaml.safe_dump(
                {
                    "id": "acme",
                    "name": "Acme Sales",
                    "crm": {
                        "adapter": "amocrm",
                        "subdomain": "acme",
                        "base_url": amo.api_base,
                        "token": {"env": "ACME_AMO_TOKEN"},
                        "webhook_secret": {"env": "ACME_WEBHOOK_SECRET"},
                        "poll_interval_s": 5,
                    },
                    # Every score is "low" here, so the alert path runs too.
                    "alerts": {
                        "low_score_threshold": 100,
                        "destination": {"type": "webhook", "url": alerts.url("/alerts")},
                    },
                }
            )
        )
        port = _free_port()
        home, env = production_env(
            tmp_path,
            dagster_db,
            warehouse_db,
            monkeypatch,
            CALLQA_CONFIG_DIR=tmp_path / "config",
            CALLQA_SENSOR_INTERVAL_S="1",
            CALLQA_AGGREGATES_INTERVAL_S="3600",
            CALLQA_ALLOW_PRIVATE_URLS="127.0.0.1",
            CALLQA_REPORT_BASE_URL="https://reports.example.com/callqa",
            ACME_AMO_TOKEN=TOKEN,
            ACME_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
        server_log = (tmp_path / "webhook.log").open("wb")
        server = subprocess.Popen(
            [str(BIN / "callqa"), "webhook", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        daemon = Daemon(env, tmp_path / "daemon.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(
                lambda: _up(f"{base}/healthz"), 30, lambda: (tmp_path / "webhook.log").read_text()
            )
            # The daemon has loaded the code location once the tenant's sensor polls AmoCRM.
            with open_instance(home) as instance:
                wait_for(lambda: amo.requests, 120, daemon.tail)
                body = _amocrm_push(7001, LEAD, amo.recording_url("call-006.flac"))
                url = f"{base}/webhooks/acme/{WEBHOOK_SECRET}"
                form = {"content-type": "application/x-www-form-urlencoded"}
                pushed = time.perf_counter()
                answer = requests.post(url, data=body, headers=form, timeout=5)
                answer_ms = (time.perf_counter() - pushed) * 1000
                assert answer.status_code == 202 and answer.json()["staged"] == 1, answer.text

                def noted():
                    return [
                        n
                        for n in amo.notes_on("leads", LEAD)
                        if "callqa score" in n["params"]["text"]
                    ]

                def explain():
                    return f"{runs_summary(instance)}\n{daemon.tail()}"

                notes = wait_for(noted, 240, explain, poll_s=0.2)
                push_to_note_s = time.perf_counter() - pushed
                # A replay of the push changes nothing.
                started = time.perf_counter()
                replay = requests.post(url, data=body, headers=form, timeout=5)
                replay_ms = (time.perf_counter() - started) * 1000
                assert replay.json() == {"received": 1, "staged": 0, "duplicates": 1}
                wait_for(lambda: alerts.posts, 30, explain)
                wait_for(lambda: all(r.is_finished for r in instance.get_runs()), 60, explain)
                runs = instance.get_runs()
                assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), explain()
        finally:
            daemon.stop()
            server.terminate()
            server.wait(10)
            server_log.close()
        [note] = notes
        text = note["params"]["text"]
        assert "https://reports.example.com/callqa/acme/" in text
        warehouse = Warehouse.from_url(warehouse_db, migrate=False)
        staged = warehouse.staged_calls("acme")
        pushback = warehouse.pushback("acme", "leads-7001")
        warehouse.dispose()
        assert [(r["external_id"], r["source"], r["status"]) for r in staged] == [
            ("leads-7001", "webhook", "processed")
        ]
        assert pushback["note_ids"] == {f"leads:{LEAD}": str(note["id"])}
        assert (
            len(alerts.posts) == 1
            and alerts.posts[0]["json"]["partition_key"] == "acme__leads-7001"
        )
        assert not daemon.error_lines(), daemon.tail()
        logged = (tmp_path / "webhook.log").read_text() + daemon.text()
        assert TOKEN not in logged and WEBHOOK_SECRET not in logged
        print(
            f"\n[webhook -> CRM note] push answered in {answer_ms:.0f} ms (replay "
            f"{replay_ms:.0f} ms); "
            f"score on the lead {push_to_note_s:.1f} s after the push"
        )


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False

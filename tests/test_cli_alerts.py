"""``trellis alerts list|ack|resolve|stats|labels`` against a running server."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
from typer.testing import CliRunner, Result

from tests.serving import free_port, serve, wait_until
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.clock import now_ms
from trellis.core.config import load_settings

runner = CliRunner()
RULE = {
    "id": "cli-pressure",
    "model": "pump",
    "metric": "pressure",
    "op": ">",
    "threshold": 50.0,
    "clear_threshold": 40.0,
    "severity": "critical",
}


def _send(client: httpx.Client, pressure: float) -> None:
    body = {"ts": now_ms(), "values": {"pressure": pressure}}
    assert client.post("/api/v1/telemetry/cli-pump", json=body).status_code == 202


def test_the_operator_loop_from_the_terminal(tmp_path: Path) -> None:
    """list shows the alert; ack twice says who was first; resolve refuses a verdict while
    active (exit 1, reason), takes it once cleared; stats and labels show the result."""
    with serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url:
        client = httpx.Client(base_url=url, timeout=10)
        client.put("/api/v1/devices/cli-pump", json={"model": "pump", "site": "north"})
        client.put(f"/api/v1/rules/{RULE['id']}", json=RULE)
        _send(client, 70.0)
        wait_until(lambda: bool(client.get("/api/v1/alerts").json()), what="the alert")
        alert_id = str(client.get("/api/v1/alerts").json()[0]["id"])

        listed = runner.invoke(app, ["alerts", "list", "--url", url, "--site", "north", "--json"])
        assert listed.exit_code == 0, listed.output
        assert [a["id"] for a in msgspec.json.decode(listed.stdout)] == [int(alert_id)]
        table = runner.invoke(app, ["alerts", "list", "--url", url])
        assert "critical" in table.output

        first = runner.invoke(app, ["alerts", "ack", alert_id, "--by", "ana", "--url", url])
        assert first.exit_code == 0
        assert "acknowledged by ana" in first.output
        second = runner.invoke(app, ["alerts", "ack", alert_id, "--by", "bob", "--url", url])
        assert "already acknowledged by ana" in second.output

        judged = [
            "alerts",
            "resolve",
            alert_id,
            "--verdict",
            "false_positive",
            "--url",
            url,
            "--root-cause",
            "sensor fault",
            "--by",
            "ana",
        ]
        refused = runner.invoke(app, judged)
        assert refused.exit_code == 1
        assert "still active" in refused.output
        _send(client, 10.0)
        wait_until(
            lambda: client.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "cleared",
            what="the clear",
        )
        done = runner.invoke(app, judged)
        assert done.exit_code == 0, done.output
        assert "resolved by ana as false positive" in done.output

        stats = runner.invoke(app, ["alerts", "stats", "--url", url, "--json"])
        (overall,) = msgspec.json.decode(stats.stdout)
        assert (overall["alerts"], overall["false_alert_rate"]) == (1, 1.0)
        assert "MTTA" in runner.invoke(app, ["alerts", "stats", "--url", url]).output
        csv_out = runner.invoke(app, ["alerts", "labels", "--format", "csv", "--url", url])
        lines = csv_out.stdout.splitlines()
        assert lines[0].startswith("id,tenant,alert_id,verdict")
        assert len(lines) == 2
        assert "sensor fault" in lines[1]
        client.close()


def test_unreachable_server_and_unknown_alert(tmp_path: Path) -> None:
    """No server: exit 1 naming the address. Unknown alert: exit 1 with the 404 reason."""
    dead = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["alerts", "list", "--url", dead])
    assert result.exit_code == 1
    assert "cannot reach Trellis" in result.output
    with serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url:
        missing = runner.invoke(app, ["alerts", "ack", "424242", "--url", url])
    assert missing.exit_code == 1
    assert "404" in missing.output
    assert "424242" in missing.output


def test_assign_comment_and_snooze_from_the_terminal(tmp_path: Path) -> None:
    """assign (to yourself, to a team, back), comment and snooze each change the alert and
    its timeline; bad input (empty comment, unknown duration, --to with --unassign) exits
    2 before calling the server; acting on a resolved alert exits 1 saying who resolved it."""
    with serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url:
        client = httpx.Client(base_url=url, timeout=10)
        client.put("/api/v1/devices/cli-pump", json={"model": "pump"})
        client.put(f"/api/v1/rules/{RULE['id']}", json=RULE)
        _send(client, 70.0)
        wait_until(lambda: bool(client.get("/api/v1/alerts").json()), what="the alert")
        alert_id = str(client.get("/api/v1/alerts").json()[0]["id"])

        def alerts(*args: str) -> Result:
            return runner.invoke(app, ["alerts", *args, "--url", url])

        mine = alerts("assign", alert_id, "--by", "ana")
        assert mine.exit_code == 0, mine.output
        assert "assigned to ana" in mine.output
        assert "assigned to night-shift" in alerts("assign", alert_id, "--to", "night-shift").output
        assert alerts("assign", alert_id, "--to", "x", "--unassign").exit_code == 2
        assert "unassigned" in alerts("assign", alert_id, "--unassign").output
        assert (
            "comment by ana added" in alerts("comment", alert_id, "on my way", "--by", "ana").output
        )
        assert alerts("comment", alert_id, "  ").exit_code == 2

        before = now_ms()
        snoozed = alerts("snooze", alert_id, "4h", "--json")
        assert snoozed.exit_code == 0, snoozed.output
        until = msgspec.json.decode(snoozed.stdout)["alert"]["snoozed_until_ms"]
        assert before + 4 * 3_600_000 - 1_000 <= until <= now_ms() + 4 * 3_600_000 + 1_000
        forever = alerts("snooze", alert_id, "forever")
        assert forever.exit_code == 2
        assert "use 'tomorrow' or a duration" in forever.output
        assert alerts("snooze", alert_id, "tomorrow").exit_code == 0

        timeline = client.get(f"/api/v1/alerts/{alert_id}/timeline").json()
        assert [e["kind"] for e in timeline] == [
            "raised",
            "assigned",
            "assigned",
            "assigned",
            "commented",
            "snoozed",
            "snoozed",
        ]
        assert timeline[4]["detail"] == {"text": "on my way"}

        client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "bob"})
        late = alerts("snooze", alert_id, "1h")
        assert late.exit_code == 1
        assert "already resolved by bob" in late.output
        assert alerts("comment", alert_id, "post-mortem: seal").exit_code == 0
        client.close()

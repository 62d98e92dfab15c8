"""``trellis rules list|apply|test|disable|export`` against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import msgspec
from typer.testing import CliRunner

from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.cli import app
from trellis.cli.rules import sparkline
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.rules.flows import flow_text, parse_flow

runner = CliRunner()
RULE = {
    "id": "cli-hot",
    "metric": "temperature",
    "severity": "major",
    "select": {"models": ["pump"], "sites": ["north"]},
    "condition": "value > 90.0",
    "for_s": 2,
}


def test_rules_from_files_to_a_dry_run(tmp_path: Path) -> None:
    """apply a file, list it, dry-run it over posted data with a chart, export, disable."""
    rule_file = tmp_path / "rules.json"
    rule_file.write_text(json.dumps([RULE]))
    with (
        serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        client.put("/api/v1/devices/cli-pump", json={"model": "pump", "site": "north"})
        applied = runner.invoke(app, ["rules", "apply", str(rule_file), "--url", url])
        assert applied.exit_code == 0, applied.output
        start = now_ms() - 60_000
        for i, value in enumerate([50, 95, 96, 97, 98, 50]):
            body = {"ts": start + i * 1000, "values": {"temperature": float(value)}}
            assert client.post("/api/v1/telemetry/cli-pump", json=body).status_code == 202
        wait_until(lambda: bool(client.get("/api/v1/alerts").json()), what="the live alert")

        listed = runner.invoke(app, ["rules", "list", "--url", url])
        assert "cli-hot" in listed.output
        assert listed.exit_code == 0

        dry = runner.invoke(app, ["rules", "test", "cli-hot", "--since", "-1h", "--url", url])
        assert dry.exit_code == 0, dry.output
        assert "1 raises, 1 clears" in dry.output
        assert "cli-pump" in dry.output
        assert "▁" in dry.output  # the chart's lowest bar
        assert "█" in dry.output  # and its highest
        as_json = runner.invoke(
            app, ["rules", "test", "cli-hot", "--since", "-1h", "--url", url, "--json"]
        )
        result = msgspec.json.decode(as_json.stdout)
        assert [(s["kind"], s["ts"] - start) for s in result["signals"]] == [
            ("raise", 3000),
            ("clear", 5000),
        ]

        exported = runner.invoke(app, ["rules", "export", "cli-hot", "--url", url])
        assert json.loads(exported.stdout)["condition"] == "value > 90.0"
        assert (
            exported.stdout
            == runner.invoke(app, ["rules", "export", "cli-hot", "--url", url]).stdout
        )

        disabled = runner.invoke(app, ["rules", "disable", "cli-hot", "--url", url])
        assert disabled.exit_code == 0
        assert client.get("/api/v1/rules/cli-hot").json()["enabled"] is False


def test_apply_refuses_a_bad_file_naming_file_and_field(tmp_path: Path) -> None:
    """A malformed file names its line; an invalid rule names the file, index and field."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "x",\n "metric": }')
    result = runner.invoke(app, ["rules", "apply", str(broken), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "broken.json:2:" in result.output
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps([RULE, RULE | {"condition": "value >"}], indent=1))
    result = runner.invoke(app, ["rules", "apply", str(invalid), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "invalid.json[1]" in result.output
    line = invalid.read_text().splitlines().index('  "condition": "value >",') + 1
    assert f"$[1].condition (line {line})" in result.output.replace("\n", "")


def test_sparkline_spans_the_range() -> None:
    """The lowest value is the lowest bar, the highest the highest."""
    assert sparkline([0.0, 5.0, 10.0]) == "▁▄█"
    assert sparkline([]) == ""


FLOW_FILE = Path(__file__).parent / "rules" / "flows" / "chiller.json"


def test_flows_test_runs_the_tests_in_a_file(tmp_path: Path) -> None:
    """`trellis flows test` passes a good file and fails (exit 1) a wrong expectation."""
    passed = runner.invoke(app, ["flows", "test", str(FLOW_FILE)])
    assert passed.exit_code == 0, passed.output
    assert passed.output.count("PASS") == 2
    wrong = json.loads(FLOW_FILE.read_text())
    wrong["tests"][0]["expect"][0][2] = 9
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(wrong))
    failed = runner.invoke(app, ["flows", "test", str(path)])
    assert failed.exit_code == 1
    assert "FAIL" in failed.output
    cyclic = wrong | {"edges": [*wrong["edges"], ["avg", "valid"]]}
    path.write_text(json.dumps(cyclic))
    refused = runner.invoke(app, ["flows", "test", str(path)])
    assert refused.exit_code == 1
    assert "cannot feed" in refused.output


def test_flows_import_deploy_export_and_fire(tmp_path: Path) -> None:
    """import --deploy runs the flow: telemetry trips its alert; export gives the same text back."""
    with (
        serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        client.put("/api/v1/devices/flow-pump", json={"model": "pump"})
        imported = runner.invoke(app, ["flows", "import", str(FLOW_FILE), "--deploy", "--url", url])
        assert imported.exit_code == 0, imported.output
        assert "deployed pump-overheat v1" in imported.output
        start = now_ms() - 30_000
        for i in range(5):
            body = {"ts": start + i * 1000, "values": {"temperature": 95.0}}
            assert client.post("/api/v1/telemetry/flow-pump", json=body).status_code == 202
        wait_until(lambda: bool(client.get("/api/v1/alerts").json()), what="the flow's alert")
        [alert] = client.get("/api/v1/alerts").json()
        assert alert["rule"] == "flow.pump-overheat.hot"
        exported = runner.invoke(app, ["flows", "export", "pump-overheat", "--url", url])
        assert exported.stdout == flow_text(parse_flow(FLOW_FILE.read_text()))
        listed = runner.invoke(app, ["flows", "list", "--url", url])
        assert "pump-overheat" in listed.output
        stats = {s["rule"]: s for s in client.get("/api/v1/rules/stats").json()}
        assert stats["flow.pump-overheat.hot"]["raised"] == 1


YAML_FLOW = Path(__file__).parent / "rules" / "flows" / "vibration.yaml"


def test_yaml_rule_and_flow_files_through_the_cli(tmp_path: Path) -> None:
    """rules apply/export and flows import/export/test take and give YAML; a flow that
    includes a sub-flow is tested on the server (--url), and refused offline."""
    rule_file = tmp_path / "hot.yaml"
    rule_file.write_text(
        "id: hot-yaml\nmetric: temperature\nseverity: minor\ncondition: value > 90.0\n"
        "actions:\n  - type: command\n    name: stop\n    on: [raise, clear]\n"
    )
    local = runner.invoke(app, ["flows", "test", str(YAML_FLOW)])
    assert local.exit_code == 0, local.output
    assert "PASS pump-vibration" in local.output
    with serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url:
        applied = runner.invoke(app, ["rules", "apply", str(rule_file), "--url", url])
        assert applied.exit_code == 0, applied.output
        exported = runner.invoke(
            app, ["rules", "export", "hot-yaml", "--format", "yaml", "--url", url]
        )
        assert "on: [raise, clear]" in exported.stdout.replace("'on'", "on")
        imported = runner.invoke(app, ["flows", "import", str(YAML_FLOW), "--url", url])
        assert imported.exit_code == 0, imported.output
        as_yaml = runner.invoke(
            app, ["flows", "export", "pump-vibration", "--format", "yaml", "--url", url]
        )
        assert as_yaml.stdout == flow_text(parse_flow(YAML_FLOW.read_text()), "yaml")
        outer = tmp_path / "outer.yaml"
        outer.write_text(
            "id: outer\nnodes:\n  - {id: inc, type: subflow, flow: pump-vibration@1}\nedges: []\n"
            "tests:\n  - name: included\n    readings: [[pump-1, 0, 9], [pump-1, 1, 9]]\n"
            "    expect: [[raise, pump-1, 0, inc.high]]\n"
        )
        offline = runner.invoke(app, ["flows", "test", str(outer)])
        assert offline.exit_code == 1
        assert "includes sub-flows" in offline.output
        served = runner.invoke(app, ["flows", "test", str(outer), "--url", url])
        assert served.exit_code == 0, served.output
        assert "PASS outer: included" in served.output

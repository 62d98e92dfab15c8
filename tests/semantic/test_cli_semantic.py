"""``trellis semantic import|tree|points|export`` against a running server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.serving import serve
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.config import load_settings

runner = CliRunner()
BRICK = Path(__file__).parent.parent / "data" / "brick"


def test_import_tree_points_export_and_a_refusal(tmp_path: Path) -> None:
    """A Brick file goes in, the tree and a class query come out, export reads back; a
    file with an unknown class exits 1 with the class and the suggestion."""
    with serve(create_app(load_settings(data_dir=tmp_path / "d"))) as url:
        imported = runner.invoke(
            app, ["semantic", "import", str(BRICK / "building-b2.ttl"), "--url", url]
        )
        assert imported.exit_code == 0, imported.output
        assert "imported 40 nodes, 7 relations" in imported.output

        tree = runner.invoke(app, ["semantic", "tree", "AHU-1", "--url", url])
        assert tree.exit_code == 0, tree.output
        assert "AHU-1-SAT" in tree.output
        assert "ahu-1/sat" in tree.output

        found = runner.invoke(
            app,
            [
                "semantic",
                "points",
                "--class",
                "Temperature_Sensor",
                "--within",
                "zone-201",
                "--json",
                "--url",
                url,
            ],
        )
        assert found.exit_code == 0, found.output
        assert [p["id"] for p in json.loads(found.stdout)] == ["VAV-201-ZAT"]

        out = tmp_path / "b2.ttl"
        exported = runner.invoke(app, ["semantic", "export", "-o", str(out), "--url", url])
        assert exported.exit_code == 0, exported.output
        again = runner.invoke(app, ["semantic", "import", str(out), "--replace", "--url", url])
        assert "replaced the model with 40 nodes, 7 relations" in again.output

        refused = runner.invoke(
            app, ["semantic", "import", str(BRICK / "unknown-class.ttl"), "--url", url]
        )
        assert refused.exit_code == 1
        assert "Supply_Fann" in refused.output
        assert "Supply_Fan'?" in refused.output

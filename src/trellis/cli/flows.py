"""``trellis flows``: flows as text in git: export, import, test, deploy, revert.

Flow files are JSON or YAML; ``export --format yaml`` writes stable, sorted YAML.
``test`` runs locally on a file, with no server: the flow is validated and its unit
tests run through the same runtime the engine uses, so CI can gate a flow change
(a flow that includes sub-flows needs the saved flows: ``test --url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console
from trellis.cli.alerts import UrlOption, _call, _client, _fail
from trellis.rules.flows import Flow, FlowTestResult, flow_text, parse_flow, run_flow_tests
from trellis.rules.text import Format

__all__ = ["app"]

app = typer.Typer(help="Export, import, test, deploy and revert flows.")


def _read(path: Path) -> Flow:
    try:
        text = path.read_text()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")
    try:
        return parse_flow(text)
    except ValueError as exc:
        _fail(f"{path}: {exc}")


@app.command("list")
def list_flows(url: UrlOption = None, config: ConfigOption = None) -> None:
    """Every flow: newest version and whether it is the deployed one."""
    with _client(url, config) as client:
        flows = _call(client, "GET", "/api/v1/flows").json()
    table = Table(title=f"{len(flows)} flows")
    for column in ("id", "version", "deployed", "nodes", "tests"):
        table.add_column(column)
    for f in flows:
        table.add_row(
            f["id"],
            str(f["version"]),
            "yes" if f["deployed"] else "no",
            str(len(f["flow"]["nodes"])),
            str(len(f["flow"].get("tests", []))),
        )
    console.print(table)


@app.command("export")
def export(
    flow_id: str,
    fmt: Annotated[Format, typer.Option("--format", help="json or yaml")] = "json",
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the newest version as stable JSON or YAML (sorted keys) for a file in git."""
    with _client(url, config) as client:
        latest = _call(client, "GET", f"/api/v1/flows/{flow_id}").json()
    typer.echo(flow_text(parse_flow(latest["flow"]), fmt), nl=False)


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="flow JSON or YAML files")],
    deploy: Annotated[bool, typer.Option(help="deploy each after saving")] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate the files, save each as a new version, and optionally deploy it."""
    flows = [_read(path) for path in files]
    with _client(url, config) as client:
        for flow in flows:
            saved = _call(
                client, "PUT", f"/api/v1/flows/{flow.id}", json=msgspec.to_builtins(flow)
            ).json()
            if deploy:
                _call(client, "POST", f"/api/v1/flows/{flow.id}/deploy")
            state = "deployed" if deploy else "saved"
            console.print(f"[green]{state}[/green] {escape(flow.id)} v{saved['version']}")


@app.command("test")
def run_tests(
    files: Annotated[list[Path], typer.Argument(help="flow JSON or YAML files")],
    url: Annotated[
        str | None,
        typer.Option(help="run on this Trellis (saved flows; needed for sub-flows)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the unit tests the flow files carry (locally, or with --url on the server
    after saving the file as a new version); exit 1 when any fails."""
    failed = 0
    for path in files:
        flow = _read(path)
        if url is not None:
            with _client(url, config) as client:
                _call(client, "PUT", f"/api/v1/flows/{flow.id}", json=msgspec.to_builtins(flow))
                answer = _call(client, "POST", f"/api/v1/flows/{flow.id}/tests").json()
            results = msgspec.convert(answer, list[FlowTestResult])
        else:
            try:
                results = run_flow_tests(flow)
            except ValueError as exc:
                _fail(f"{path}: {exc}")
        if not results:
            console.print(f"[yellow]{escape(str(path))}: no tests[/yellow]")
        for result in results:
            if result.passed:
                console.print(f"[green]PASS[/green] {escape(flow.id)}: {escape(result.name)}")
                continue
            failed += 1
            console.print(f"[red]FAIL[/red] {escape(flow.id)}: {escape(result.name)}")
            console.print(f"  expected {result.expected}")
            console.print(f"  actual   {result.actual}")
    if failed:
        raise typer.Exit(1)


@app.command("deploy")
def deploy_flow(
    flow_id: str,
    version: Annotated[int | None, typer.Option(help="default: the newest")] = None,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Run a saved version of a flow."""
    params = {"version": version} if version else {}
    with _client(url, config) as client:
        done = _call(client, "POST", f"/api/v1/flows/{flow_id}/deploy", params=params).json()
    console.print(f"deployed {escape(flow_id)} v{done['version']}")


@app.command("revert")
def revert(flow_id: str, version: int, url: UrlOption = None, config: ConfigOption = None) -> None:
    """Deploy an earlier version again (saved as the newest)."""
    with _client(url, config) as client:
        done = _call(
            client, "POST", f"/api/v1/flows/{flow_id}/revert", params={"version": version}
        ).json()
    console.print(f"reverted {escape(flow_id)} to v{version} (now v{done['version']})")

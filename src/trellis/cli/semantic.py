"""``trellis semantic``: the asset tree of a running Trellis, Brick Turtle in and out.

Through the API (like ``trellis rules``), so the rule engine of the running server
re-resolves its point selectors the moment an import lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from trellis.cli._common import ConfigOption, console
from trellis.cli.alerts import JsonOption, UrlOption, _call, _client, _fail, _print_json

__all__ = ["app"]

app = typer.Typer(help="The semantic model: Brick import/export, the asset tree, points.")

_STYLE = {"location": "bold", "equipment": "cyan", "point": "green", "collection": "magenta"}


@app.command("import")
def import_brick(
    path: Annotated[Path, typer.Argument(help="a Brick model in Turtle (.ttl)")],
    replace: Annotated[
        bool, typer.Option(help="replace the whole model instead of merging into it")
    ] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Import a Brick Turtle file; unknown classes and cycles are refused, naming them."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc}", 2)
    with _client(url, config) as client:
        report = _call(
            client,
            "POST",
            "/api/v1/semantic/import",
            params={"replace": str(replace).lower()},
            content=body,
            headers={"Content-Type": "text/turtle"},
        ).json()
    how = "replaced the model with" if report["replaced"] else "imported"
    console.print(f"{how} {report['nodes']} nodes, {report['relations']} relations from {path}")


@app.command("export")
def export_brick(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """The model as Brick Turtle."""
    with _client(url, config) as client:
        text = _call(client, "GET", "/api/v1/semantic/export").text
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


def _branch(parent: Tree, node: dict[str, Any]) -> None:
    style = _STYLE.get(node["kind"], "")
    label = f"[{style}]{escape(node['id'])}[/{style}] [dim]{escape(node['brick_class'])}[/dim]"
    if node.get("device"):
        label += f" → {escape(node['device'])}/{escape(node['metric'])}"
    if node.get("name"):
        label += f"  {escape(node['name'])}"
    branch = parent.add(label)
    for child in node.get("children", []):
        _branch(branch, child)


@app.command("tree")
def tree(
    root: Annotated[str | None, typer.Argument(help="a node id (default: everything)")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The asset tree: sites, buildings, floors, zones, equipment, points."""
    params = {"root": root} if root else {}
    with _client(url, config) as client:
        forest = _call(client, "GET", "/api/v1/semantic/tree", params=params).json()
    if as_json:
        _print_json(forest)
        return
    top = Tree("[bold]semantic model[/bold]" if root is None else escape(root), hide_root=True)
    for node in forest:
        _branch(top, node)
    console.print(top if forest else "the semantic model is empty")


@app.command("points")
def points(
    brick_class: Annotated[
        str | None, typer.Option("--class", help="a Brick class; subclasses included")
    ] = None,
    within: Annotated[str | None, typer.Option(help="a site, building, zone or asset")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="a tag the points carry")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Points by Brick class and place, with the series that measures each."""
    params: dict[str, Any] = {"tag": tag or []}
    if brick_class:
        params["class"] = brick_class
    if within:
        params["within"] = within
    with _client(url, config) as client:
        found = _call(client, "GET", "/api/v1/semantic/points", params=params).json()
    if as_json:
        _print_json(found)
        return
    table = Table("point", "class", "device", "metric", "in", title=f"{len(found)} points")
    for point in found:
        table.add_row(
            escape(point["id"]),
            escape(point["brick_class"]),
            escape(point.get("device") or ""),
            escape(point.get("metric") or ""),
            escape(point.get("parent") or ""),
        )
    console.print(table)

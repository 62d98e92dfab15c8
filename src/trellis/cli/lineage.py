"""``trellis lineage KIND ID``: where a reading, alert, rollup or prediction came from."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.tree import Tree

from trellis.cli._common import ConfigOption, console
from trellis.lineage.graph import KINDS, LineageGraph

__all__ = ["lineage", "render"]

_SHOWN = ("seq", "contract", "mapping_version", "version", "value", "stage", "sha256")


def render(graph: LineageGraph, max_children: int = 30) -> Tree:
    """The graph as a tree from its root, following each derivation once."""
    nodes = {n.key: n for n in graph.nodes}
    children: dict[str, list[tuple[str, str]]] = {}
    for edge in graph.edges:
        children.setdefault(edge.source, []).append((edge.relation, edge.target))

    def label(key: str) -> str:
        node = nodes[key]
        facts = [f"{k}={node.detail[k]}" for k in _SHOWN if node.detail.get(k) is not None]
        extra = f" [dim]{escape(', '.join(facts))}[/dim]" if facts else ""
        return f"[bold]{node.kind}[/bold] {escape(node.label)}{extra}"

    tree = Tree(label(graph.root))
    seen = {graph.root}

    def grow(branch: Tree, key: str) -> None:
        edges = children.get(key, [])
        for relation, target in edges[:max_children]:
            sub = branch.add(f"[cyan]{relation}[/cyan] {label(target)}")
            if target not in seen:
                seen.add(target)
                grow(sub, target)
        if len(edges) > max_children:
            branch.add(f"[dim]… {len(edges) - max_children} more[/dim]")

    grow(tree, graph.root)
    return tree


def lineage(
    kind: Annotated[str, typer.Argument(help=f"one of {', '.join(KINDS)}")],
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="e.g. pump-0001/temperature/1764042000000, 42")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="the graph as JSON on stdout")] = False,
    config: ConfigOption = None,
) -> None:
    """Walk one item back to its inputs: readings to the archived message, its sequence
    number, contract and mapping version; alerts to rule version and readings window."""
    import msgspec

    from trellis.cli._common import load_or_exit
    from trellis.core.errors import NotFoundError
    from trellis.platform import Platform

    if kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    platform = Platform(load_or_exit(config))
    try:
        graph = platform.lineage_walker.walk(platform.tenant, kind, ident)
    except (NotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        platform.close()
    if as_json:
        typer.echo(msgspec.json.encode(graph).decode())
        return
    console.print(render(graph))
    if graph.truncated:
        console.print("[yellow]truncated:[/yellow] only the newest readings of the window")

"""``trellis rules``: list, apply, test (dry run) and disable rules of a running Trellis.

Rule files are plain JSON or YAML (one rule, or a list of rules; ``export`` writes
either, stable and sorted), so they can live in git and be reviewed as diffs.
``apply`` validates every rule through the API and reports each refusal with its
file and field; nothing half-valid is saved.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console
from trellis.cli.alerts import JsonOption, UrlOption, _call, _client, _fail, _print_json
from trellis.core.clock import to_iso
from trellis.rules.locate import with_line
from trellis.rules.store import parse_rule, rule_text
from trellis.rules.text import Format, is_json, load

__all__ = ["app", "sparkline"]

app = typer.Typer(help="List, apply, dry-run and disable rules.")

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """``values`` resampled to ``width`` columns of block characters."""
    if not values:
        return ""
    step = max(1, len(values) // width)
    sampled = [max(values[i : i + step]) for i in range(0, len(values), step)][:width]
    low, high = min(sampled), max(sampled)
    span = (high - low) or 1.0
    return "".join(_BARS[min(7, int((v - low) / span * 7.999))] for v in sampled)


@app.command("list")
def list_rules(
    url: UrlOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """Every rule with what it did since the engine started."""
    with _client(url, config) as client:
        rules = _call(client, "GET", "/api/v1/rules").json()
        stats = {s["rule"]: s for s in _call(client, "GET", "/api/v1/rules/stats").json()}
    if as_json:
        _print_json(rules)
        return
    table = Table(title=f"{len(rules)} rules")
    for column in ("id", "on", "metric", "condition", "readings", "raised", "errors", "limited"):
        table.add_column(column)
    for rule in rules:
        s = stats.get(rule["id"], {})
        condition = rule.get("condition") or (
            f"{rule['op']} {rule['threshold']}" if "threshold" in rule else "(absence)"
        )
        table.add_row(
            rule["id"],
            "yes" if rule.get("enabled", True) else "no",
            rule["metric"],
            escape(condition),
            str(s.get("readings", 0)),
            str(s.get("raised", 0)),
            str(s.get("errors", 0)),
            str(s.get("suppressed", 0)),
        )
    console.print(table)


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")
    if is_json(text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:  # path:line:col, what editors jump to
            _fail(f"{path}:{exc.lineno}:{exc.colno}: JSON is malformed: {exc.msg}")
    else:
        try:
            data = load(text, "rule file")
        except ValueError as exc:
            _fail(f"{path}: {exc}")
    if not isinstance(data, list):
        try:
            parse_rule(text)
        except ValueError as exc:
            _fail(f"{path}: {exc}")
        return [data]
    for index, item in enumerate(data):
        try:
            parse_rule(item)
        except ValueError as exc:
            # the item's paths, seen from the file: $.condition -> $[1].condition
            message = re.sub(r"\$(?=[.\[])", f"$[{index}]", str(exc), count=1)
            _fail(f"{path}[{index}]: {with_line(message, text)}")
    return data


@app.command("apply")
def apply(
    files: Annotated[list[Path], typer.Argument(help="JSON or YAML rule files (a rule or a list)")],
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate every rule in the files, then create or replace them."""
    rules = [rule for path in files for rule in _load(path)]
    with _client(url, config) as client:
        for rule in rules:
            _call(client, "PUT", f"/api/v1/rules/{rule['id']}", json=rule)
            console.print(f"[green]applied[/green] {escape(rule['id'])}")


@app.command("export")
def export(
    rule_id: str,
    fmt: Annotated[Format, typer.Option("--format", help="json or yaml")] = "json",
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Print one rule as stable, diff-friendly JSON or YAML (sorted keys)."""
    with _client(url, config) as client:
        rule = _call(client, "GET", f"/api/v1/rules/{rule_id}").json()
    typer.echo(rule_text(parse_rule(rule), fmt), nl=False)


@app.command("test")
def dry_run(
    rule_id: str,
    since: Annotated[str, typer.Option(help="how far back: -24h, -30m, -7d")] = "-24h",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Dry run: what the rule would have fired over stored data (nothing is written)."""
    with _client(url, config) as client:
        result = _call(
            client, "POST", f"/api/v1/rules/{rule_id}/test", params={"since": since}
        ).json()
    if as_json:
        _print_json(result)
        return
    signals = result["signals"]
    console.print(
        f"[bold]{escape(rule_id)}[/bold] over {result['readings']} readings of "
        f"{result['devices']} devices, {to_iso(result['start'])} → {to_iso(result['end'])}: "
        f"{sum(s['kind'] == 'raise' for s in signals)} raises, "
        f"{sum(s['kind'] == 'clear' for s in signals)} clears"
        + (f", {result['suppressed']} rate-limited" if result["suppressed"] else "")
    )
    for series in result["series"]:
        values = [point[1] for point in series["points"]]
        console.print(
            f"{escape(series['device']):>16} {sparkline(values)} "
            f"[dim]{min(values):g}…{max(values):g}[/dim]"
        )
    table = Table(title="would have fired")
    for column in ("time", "kind", "device", "value", "message"):
        table.add_column(column)
    for s in signals[:200]:
        value = "" if s["value"] is None else f"{s['value']:g}"
        table.add_row(to_iso(s["ts"]), s["kind"], s["device"], value, escape(s["message"]))
    console.print(table)


@app.command("disable")
def disable(
    rule_id: str,
    enable: Annotated[bool, typer.Option("--enable", help="enable it again instead")] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop a rule judging readings (its open alerts stay open); --enable to restart it."""
    with _client(url, config) as client:
        _call(client, "POST", f"/api/v1/rules/{rule_id}/enabled", params={"enabled": enable})
    console.print(f"{escape(rule_id)}: {'enabled' if enable else 'disabled'}")

"""``trellis alerts``: the operator loop from a terminal, through a running Trellis.

Commands talk to the REST API (``--url``, default the configured ``[http]`` address),
so they act with the same rules, the same conflict answers and the same live updates
as the dashboard. Tables go to stderr; ``--json`` and ``labels`` write data to stdout.
"""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import httpx
import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from trellis.alerts.snooze import snooze_minutes
from trellis.cli._common import ConfigOption, api_headers, console, load_or_exit

__all__ = ["app"]

app = typer.Typer(
    help="List, acknowledge, assign, comment on, snooze and resolve alerts; metrics and labels."
)

UrlOption = Annotated[
    str | None, typer.Option(help="a running Trellis (default: the configured http address)")
]
ByOption = Annotated[str, typer.Option("--by", help="who is acting")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON to stdout instead")]


class VerdictChoice(StrEnum):
    """What the alert was."""

    true_positive = "true_positive"
    false_positive = "false_positive"
    not_actionable = "not_actionable"


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _client(url: str | None, config: Any) -> httpx.Client:
    if url is None:
        http = load_or_exit(config).http
        url = f"http://{http.host}:{http.port}"
    return httpx.Client(base_url=url.rstrip("/"), timeout=30, headers=api_headers())


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach Trellis at {client.base_url}: {exc}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        _fail(f"{response.status_code}: {detail}")
    return response


def _print_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")


def _outcome(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(data)
        return
    colour = "green" if data["changed"] else "yellow"
    console.print(f"[{colour}]alert {data['alert']['id']}: {escape(data['detail'])}[/{colour}]")


@app.command("list")
def list_alerts(
    status: Annotated[
        list[str] | None, typer.Option(help="active, cleared or resolved (repeatable)")
    ] = None,
    site: Annotated[str | None, typer.Option(help="only devices at this site")] = None,
    under: Annotated[
        str | None, typer.Option(help="alerts propagated to this asset or site")
    ] = None,
    device: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Open alerts, most severe first (or filter by status, site, device)."""
    params: dict[str, Any] = {"order": "severity", "limit": limit}
    params["status"] = status or ["active", "cleared"]
    if site:
        params["site"] = site
    if under:
        params["under"] = under
    if device:
        params["device"] = device
    with _client(url, config) as client:
        alerts = _call(client, "GET", "/api/v1/alerts", params=params).json()
    if as_json:
        _print_json(alerts)
        return
    table = Table(title=f"{len(alerts)} alerts")
    for column in ("id", "severity", "status", "ack", "count", "device", "site", "type"):
        table.add_column(column)
    for a in alerts:
        table.add_row(
            str(a["id"]),
            a["severity"],
            a["status"],
            "yes" if a["acknowledged"] else "",
            str(a["count"]),
            a["device"],
            a["site"],
            escape(a["type"]),
        )
    console.print(table)


@app.command("ack")
def acknowledge(
    alert_id: int,
    by: ByOption = "operator",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Acknowledge an alert (a repeat says who was first)."""
    with _client(url, config) as client:
        path = f"/api/v1/alerts/{alert_id}/acknowledge"
        _outcome(_call(client, "POST", path, json={"by": by}).json(), as_json)


@app.command("resolve")
def resolve(
    alert_id: int,
    verdict: Annotated[VerdictChoice | None, typer.Option(help="what it was")] = None,
    root_cause: Annotated[str, typer.Option(help="from the type's list")] = "unknown",
    action: Annotated[str, typer.Option("--action", help="action taken")] = "none",
    note: Annotated[str, typer.Option(help="free text")] = "",
    by: ByOption = "operator",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Resolve an alert, with feedback once its condition has cleared."""
    body: dict[str, Any] = {"by": by}
    if verdict is not None:
        body["feedback"] = {
            "verdict": verdict.value,
            "root_cause": root_cause,
            "action_taken": action,
            "note": note,
        }
    with _client(url, config) as client:
        path = f"/api/v1/alerts/{alert_id}/resolve"
        _outcome(_call(client, "POST", path, json=body).json(), as_json)


@app.command("assign")
def assign(
    alert_id: int,
    to: Annotated[
        str | None, typer.Option("--to", help="a person or team (default: yourself, --by)")
    ] = None,
    unassign: Annotated[bool, typer.Option("--unassign", help="take the alert back")] = False,
    by: ByOption = "operator",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Assign an open alert to a person or team (yourself by default)."""
    if unassign and to is not None:
        _fail("give either --to or --unassign, not both", 2)
    assignee = None if unassign else (to or by)
    with _client(url, config) as client:
        path = f"/api/v1/alerts/{alert_id}/assign"
        body = {"by": by, "assignee": assignee}
        _outcome(_call(client, "POST", path, json=body).json(), as_json)


@app.command("comment")
def comment(
    alert_id: int,
    text: Annotated[str, typer.Argument(help="the note (1-2000 characters)")],
    by: ByOption = "operator",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Add a comment to an alert's timeline."""
    if not text.strip():
        _fail("a comment needs some text", 2)
    with _client(url, config) as client:
        path = f"/api/v1/alerts/{alert_id}/comments"
        _outcome(_call(client, "POST", path, json={"by": by, "text": text}).json(), as_json)


@app.command("snooze")
def snooze(
    alert_id: int,
    duration: Annotated[
        str, typer.Argument(help="'tomorrow' (08:00 local) or a duration: 30m, 1h, 4h, 2d")
    ] = "1h",
    by: ByOption = "operator",
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Keep an open alert from escalating for a while."""
    try:
        minutes = snooze_minutes(duration, datetime.now().astimezone())
    except ValueError as exc:
        _fail(str(exc), 2)
    with _client(url, config) as client:
        path = f"/api/v1/alerts/{alert_id}/snooze"
        body = {"by": by, "minutes": minutes}
        _outcome(_call(client, "POST", path, json=body).json(), as_json)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value * 100:.1f} %"
    return f"{value:.1f}{unit}"


@app.command("stats")
def stats(
    group_by: Annotated[str, typer.Option(help="none, site, rule, model_version or day")] = "none",
    start: Annotated[
        str | None, typer.Option(help="epoch ms or RFC 3339 (default: 7 days ago)")
    ] = None,
    end: Annotated[str | None, typer.Option(help="epoch ms or RFC 3339 (default: now)")] = None,
    site: Annotated[str | None, typer.Option()] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """MTTA, MTTR, mean time to action, false alert rate, HITL ratio (docs/metrics.md)."""
    params = {
        k: v
        for k, v in {"group_by": group_by, "start": start, "end": end, "site": site}.items()
        if v is not None
    }
    with _client(url, config) as client:
        rows = _call(client, "GET", "/api/v1/alerts/metrics", params=params).json()
    if as_json:
        _print_json(rows)
        return
    table = Table(title="alert metrics")
    for column in (
        "group",
        "alerts",
        "MTTA",
        "MTTR",
        "to action",
        "false rate",
        "HITL",
        "per asset-day",
        "never acked",
    ):
        table.add_column(column, justify="right")
    for m in rows:
        table.add_row(
            escape(m["group"] or "(none)"),
            str(m["alerts"]),
            _fmt(m["mtta_s"], " s"),
            _fmt(m["mttr_s"], " s"),
            _fmt(m["mean_time_to_action_s"], " s"),
            _fmt(m["false_alert_rate"], "%"),
            _fmt(m["hitl_resolution_ratio"], "%"),
            _fmt(m["alerts_per_asset_day"]),
            _fmt(m["never_acknowledged_share"], "%"),
        )
    console.print(table)


class LabelFormat(StrEnum):
    """Export format."""

    jsonl = "jsonl"
    csv = "csv"


@app.command("labels")
def labels(
    format: Annotated[LabelFormat, typer.Option(help="jsonl or csv")] = LabelFormat.jsonl,
    since: Annotated[str | None, typer.Option(help="epoch ms or RFC 3339")] = None,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Export operator feedback as training labels to stdout."""
    params = {"format": format.value} | ({"since": since} if since else {})
    with _client(url, config) as client:
        sys.stdout.write(_call(client, "GET", "/api/v1/alerts/labels", params=params).text)

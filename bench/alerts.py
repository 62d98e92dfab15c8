"""Alert loop: state transitions through the REST API, and the metrics query at scale.

Run ``python bench/alerts.py [--quick]``. Prints one JSON line per figure on stdout
(DESIGN.md, Benchmarks: each with its baseline from the same run and the ratio to it) and
progress on stderr:

* ``transitions_per_s_api``: alert state transitions per second (acknowledge, then
  resolve, of pre-raised alerts) sustained through ``POST /api/v1/alerts/{id}/...``
  of a real ``uvicorn`` server in its own process, on the real SQLite metadata store,
  as an operator with a bearer token: every request passes the gate (the token, looked
  up once and then served from the server's token cache for ``auth.token_cache_seconds``;
  the Cedar decision, cached) and every transition writes an audit entry, then its
  conditional UPDATE … RETURNING and timeline event, committed before the answer by the
  alert writer thread together with the other transitions of the same event-loop turn
  (group commit). Three rounds on the same server, each on fresh alerts; the figure is
  the median round, every round's rate is in ``rounds`` (this machine's timings swing by
  a fifth from run to run). Baseline (the raw limit): the same client, requests and
  connections against a trivial asyncio HTTP server that answers at once, in the same
  run: the load generator's own ceiling.
* ``gets_per_s_api``: ``GET /api/v1/health`` through the same gate on the same server,
  the server's rate for a request that does almost nothing; same baseline.
* ``server_cpu_us_per_transition``: the server process's CPU time (user + system) per
  transition (of the median round), against its CPU per gated GET: where the time goes,
  in a unit that barely moves when other processes share the machine.
* ``transitions_per_s_store``: the same transitions through :class:`AlertService` in
  process, no HTTP, one caller waiting for each (so one transaction each): the store's
  share of the API figure. Baseline: bare ``sqlite3``
  doing the conditional UPDATE and the event INSERT per transition, one transaction
  each, same file and pragmas.
* ``mtta_query_ms_1m_events``: median latency of the metrics query behind
  ``/api/v1/alerts/metrics`` (MTTA and every other figure, whole tenant, one period)
  over a database holding 1,000,000 alert events (200,000 alerts, five events each).
  Baseline: bare ``sqlite3`` ``SELECT avg(acknowledged_ms - raised_ms)`` over the
  same rows of the same file, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from _common import Report
from trellis.alerts import AlertService
from trellis.alerts.metrics import GroupBy
from trellis.alerts.reports import alert_metrics
from trellis.auth.users import UserStore
from trellis.core.clock import now_ms
from trellis.core.net import free_port
from trellis.core.types import AlertSeverity, Device
from trellis.devices.registry import DeviceRegistry
from trellis.store.metadata import alert_events, alerts, open_metadata

BENCH = "alerts"
REPORT = Report(BENCH)
log = REPORT.log
emit = functools.partial(REPORT.emit, digits=2)
TENANT = "default"
T0 = 1_764_000_000_000
CONNECTIONS = 16

SERVER = """
import sys, uvicorn
from trellis.api.app import create_app
from trellis.core.config import load_settings
settings = load_settings(data_dir=sys.argv[1], alerts={"storm_limit": None})
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""


# -- transitions through the API ---------------------------------------------------


def operator_token(data_dir: Path) -> str:
    """A bearer token of an operator, so every request takes the real gate: token
    lookup, Cedar decision, and an audit entry per transition."""
    engine = open_metadata(f"sqlite:///{data_dir / 'trellis.db'}")
    users = UserStore(engine)
    users.add("bench", TENANT, "operator", "bench-password-not-secret")
    token = users.issue_token("bench", ["read", "operate"], days=1)
    engine.dispose()
    return token


def raise_alerts(data_dir: Path, n: int) -> list[int]:
    """Open ``n`` alerts on distinct devices, before the server starts."""
    engine = open_metadata(f"sqlite:///{data_dir / 'trellis.db'}")
    service = AlertService(engine)
    now = now_ms()  # recent, so the server's escalation timer leaves them alone
    ids = [
        service.raise_alert(
            tenant=TENANT,
            device=f"pump-{i:06d}",
            rule="bench",
            type="Bench",
            severity=AlertSeverity.MAJOR,
            message="bench",
            value=1.0,
            at_ms=now + i,
        ).id
        for i in range(n)
    ]
    engine.dispose()
    return ids


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    body: bytes,
    token: str,
) -> int:
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    headers = await reader.readuntil(b"\r\n\r\n")
    status = int(headers[9:12])
    length = 0
    for line in headers.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _load(
    port: int, paths: list[list[tuple[str, str]]], body: bytes, token: str = ""
) -> float:
    """Each connection runs its own list of requests in order; seconds for all."""

    async def connection(requests: list[tuple[str, str]]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for method, path in requests:
                status = await _request(reader, writer, method, path, body, token)
                if status != 200:
                    raise RuntimeError(f"{method} {path} answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(requests) for requests in paths))
    return time.perf_counter() - started


TRIVIAL = """
import asyncio, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
REPLY = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: 2\\r\\n\\r\\n{}"
class Trivial(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\\r\\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(REPLY)
async def main():
    server = await asyncio.get_running_loop().create_server(Trivial, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


class ApiFigures(NamedTuple):
    """What one run of the API benchmark measured."""

    transitions_per_s: float
    gets_per_s: float
    client_ceiling_per_s: float
    cpu_us_per_transition: float
    cpu_us_per_get: float
    n: int
    rounds: list[float]  # transitions/s of each round, in order


def _serve(code: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``code`` as a server process on a free port; wait until it listens."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", code, *args, str(port)])
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("a bench server did not start") from None
            time.sleep(0.05)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used: unlike wall time, this barely moves
    when other processes share the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _transitions(ids: list[int]) -> list[list[tuple[str, str]]]:
    """Acknowledge then resolve each alert, the alerts dealt over the connections."""
    return [
        [
            ("POST", f"/api/v1/alerts/{a}/{action}")
            for a in ids[i::CONNECTIONS]
            for action in ("acknowledge", "resolve")
        ]
        for i in range(CONNECTIONS)
    ]


def bench_transitions(data_dir: Path, n_alerts: int, rounds: int) -> ApiFigures:
    """Transitions (``rounds`` rounds of ``n_alerts`` alerts each, the median counts) and
    gated GETs through the real server; the client's own ceiling."""
    log(f"api: raising {n_alerts * rounds:,} alerts")
    ids = raise_alerts(data_dir, n_alerts * rounds)
    token = operator_token(data_dir)
    batches = [_transitions(ids[r * n_alerts : (r + 1) * n_alerts]) for r in range(rounds)]
    n = sum(len(t) for t in batches[0])
    body = b'{"by": "bench"}'
    trivial, port = _serve(TRIVIAL)
    try:
        log(f"api: client ceiling, {n:,} POSTs to a trivial server over {CONNECTIONS} connections")
        ceiling = asyncio.run(_load(port, batches[0], body, token))
    finally:
        trivial.terminate()
        trivial.wait(timeout=30)
    server, port = _serve(SERVER, str(data_dir))
    try:
        gets = [[("GET", "/api/v1/health")] * len(t) for t in batches[0]]
        warm = [[("GET", "/api/v1/health")] * 50] * CONNECTIONS
        asyncio.run(_load(port, warm, b"", token))
        log(f"api: {n:,} GET /api/v1/health over {CONNECTIONS} connections")
        cpu = _cpu_s(server.pid)
        base = asyncio.run(_load(port, gets, b"", token))
        get_cpu = _cpu_s(server.pid) - cpu
        runs: list[tuple[float, float]] = []  # (seconds, server CPU seconds)
        for r, transitions in enumerate(batches, start=1):
            log(f"api: round {r}/{rounds}, {n:,} transitions over {CONNECTIONS} connections")
            cpu = _cpu_s(server.pid)
            took = asyncio.run(_load(port, transitions, body, token))
            runs.append((took, _cpu_s(server.pid) - cpu))
    finally:
        server.terminate()
        server.wait(timeout=30)
    took, transition_cpu = sorted(runs)[len(runs) // 2]
    return ApiFigures(
        transitions_per_s=n / took,
        gets_per_s=n / base,
        client_ceiling_per_s=n / ceiling,
        cpu_us_per_transition=transition_cpu / n * 1e6,
        cpu_us_per_get=get_cpu / n * 1e6,
        n=n,
        rounds=[round(n / seconds, 1) for seconds, _ in runs],
    )


# -- transitions in process (the store's share) ---------------------------------------


def bench_service(data_dir: Path, n_alerts: int) -> tuple[float, float, int]:
    """(AlertService transitions/s, bare sqlite3 transitions/s, transitions)."""
    ids = raise_alerts(data_dir, n_alerts)
    engine = open_metadata(f"sqlite:///{data_dir / 'trellis.db'}")
    service = AlertService(engine)
    began = time.perf_counter()
    for alert_id in ids:
        service.acknowledge(TENANT, alert_id, "bench")
        service.resolve(TENANT, alert_id, "bench")
    took = time.perf_counter() - began
    engine.dispose()
    ids = raise_alerts(data_dir, n_alerts)  # fresh open alerts for the bare run
    connection = sqlite3.connect(data_dir / "trellis.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    event = (
        "INSERT INTO alert_events (tenant, alert_id, kind, actor, at_ms, detail) "
        "VALUES (?, ?, ?, 'bench', ?, '{}')"
    )
    began = time.perf_counter()
    for alert_id in ids:
        for kind, update in (
            (
                "acknowledged",
                "UPDATE alerts SET acknowledged = 1, acknowledged_ms = ?, "
                "acknowledged_by = 'bench' WHERE id = ? AND acknowledged = 0",
            ),
            (
                "resolved",
                "UPDATE alerts SET status = 'resolved', open_key = NULL, "
                "resolved_ms = ? WHERE id = ? AND status != 'resolved'",
            ),
        ):
            now = now_ms()
            connection.execute("BEGIN")
            connection.execute(update, (now, alert_id))
            connection.execute(event, (TENANT, alert_id, kind, now))
            connection.execute("COMMIT")
    bare = time.perf_counter() - began
    connection.close()
    n = 2 * n_alerts
    return n / took, n / bare, n


# -- the metrics query over a million events -----------------------------------------


def build_history(data_dir: Path, n_alerts: int) -> Path:
    """``n_alerts`` resolved alerts with five events each, written in bulk."""
    path = data_dir / "history.db"
    engine = open_metadata(f"sqlite:///{path}")
    registry = DeviceRegistry(engine)
    for d in range(200):
        registry.register(Device(TENANT, f"pump-{d:04d}", "pump", site=f"site-{d % 4}"))
    rows, events = [], []
    verdicts = ("true_positive", "false_positive", "not_actionable")
    for i in range(1, n_alerts + 1):
        raised = T0 + i * 1_000
        ack, action, cleared, resolved = (
            raised + 60_000,
            raised + 90_000,
            raised + 120_000,
            raised + 300_000,
        )
        rows.append(
            {
                "id": i,
                "tenant": TENANT,
                "device": f"pump-{i % 200:04d}",
                "rule": f"rule-{i % 10}",
                "type": "Bench",
                "severity": "major",
                "status": "resolved",
                "dedup_key": f"k{i}",
                "open_key": None,
                "message": "m",
                "value": 1.0,
                "count": 1,
                "raised_ms": raised,
                "updated_ms": resolved,
                "acknowledged": True,
                "acknowledged_ms": ack,
                "acknowledged_by": "ana",
                "cleared_ms": cleared,
                "resolved_ms": resolved,
                "resolved_by": "ana",
                "site": f"site-{i % 4}",
                "metric": "pressure",
                "model_version": None,
                "assignee": None,
                "snoozed_until_ms": None,
                "escalated_ms": None,
                "escalation_level": 0,
                "first_action_ms": action,
                "verdict": verdicts[i % 3],
            }
        )
        for kind, at in (
            ("raised", raised),
            ("acknowledged", ack),
            ("action", action),
            ("cleared", cleared),
            ("resolved", resolved),
        ):
            events.append(
                {
                    "tenant": TENANT,
                    "alert_id": i,
                    "kind": kind,
                    "actor": "ana",
                    "at_ms": at,
                    "detail": {},
                }
            )
        if len(events) >= 100_000:
            with engine.begin() as c:
                c.execute(alerts.insert(), rows)
                c.execute(alert_events.insert(), events)
            rows, events = [], []
    if rows:
        with engine.begin() as c:
            c.execute(alerts.insert(), rows)
            c.execute(alert_events.insert(), events)
    with engine.begin() as c:
        c.exec_driver_sql("ANALYZE")
    engine.dispose()
    return path


def bench_query(path: Path, n_alerts: int, runs: int) -> tuple[float, float, int]:
    """(median ms of the metrics query, median ms of the bare avg query, events)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as c:
        events = int(c.execute(sa.select(sa.func.count()).select_from(alert_events)).scalar_one())
    start, end = T0, T0 + (n_alerts + 1) * 1_000
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        (m,) = alert_metrics(engine, TENANT, GroupBy.NONE, start, end)
        timings.append((time.perf_counter() - began) * 1000)
    assert m.alerts == n_alerts, m
    assert m.mtta_s == 60.0, m
    engine.dispose()
    bare = []
    connection = sqlite3.connect(path)
    for _ in range(runs):
        began = time.perf_counter()
        connection.execute(
            "SELECT avg(acknowledged_ms - raised_ms) FROM alerts "
            "WHERE tenant = ? AND raised_ms >= ? AND raised_ms < ?",
            (TENANT, start, end),
        ).fetchone()
        bare.append((time.perf_counter() - began) * 1000)
    connection.close()
    return statistics.median(timings), statistics.median(bare), events


def main() -> None:
    """Parse arguments, measure, print two figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer transitions (under 60 s)")
    parser.add_argument("--alerts", type=int, help="alerts acknowledged+resolved over HTTP")
    args = parser.parse_args()
    n_api = args.alerts or (3_000 if args.quick else 20_000)
    n_history = 200_000  # five events each: the 1,000,000 events the target names
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        directory = Path(tmp)
        (directory / "api").mkdir()
        api = bench_transitions(directory / "api", n_api, rounds=3)
        (directory / "service").mkdir()
        log(f"store: {2 * n_api:,} transitions in process, then bare sqlite3")
        store_rate, store_base, store_n = bench_service(directory / "service", n_api)
        log(f"query: writing {n_history:,} alerts, {5 * n_history:,} events")
        path = build_history(directory, n_history)
        log("query: timing the metrics query and the bare baseline")
        query_ms, bare_ms, events = bench_query(path, n_history, runs=5 if args.quick else 15)
    ceiling = (
        f"the same client against a trivial asyncio HTTP server answering at once, "
        f"{CONNECTIONS} connections, same run (the load generator's own limit)"
    )
    emit(
        "transitions_per_s_api",
        api.transitions_per_s,
        "transitions/s",
        ceiling,
        api.client_ceiling_per_s,
        ">= 2000 transitions/s",
        api.n,
        rounds=api.rounds,
    )
    emit(
        "gets_per_s_api",
        api.gets_per_s,
        "requests/s",
        ceiling,
        api.client_ceiling_per_s,
        "informational (GET /api/v1/health through the same gate: token, Cedar)",
        api.n,
    )
    emit(
        "server_cpu_us_per_transition",
        api.cpu_us_per_transition,
        "us",
        "server CPU per gated GET /api/v1/health, same server, same run",
        api.cpu_us_per_get,
        "informational (CPU, not wall time: holds on a busy machine)",
        api.n,
    )
    emit(
        "transitions_per_s_store",
        store_rate,
        "transitions/s",
        "bare sqlite3: conditional UPDATE + event INSERT per transition, one transaction "
        "each, same file and pragmas, same run",
        store_base,
        "informational (the API's store share)",
        store_n,
    )
    emit(
        "mtta_query_ms_1m_events",
        query_ms,
        "ms",
        "bare sqlite3 SELECT avg(acknowledged_ms - raised_ms) over the same rows, same run",
        bare_ms,
        "<= 300 ms",
        events,
    )


if __name__ == "__main__":
    main()

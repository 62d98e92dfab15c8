"""OpenLineage run events: shape per the 2-0-2 spec, file and HTTP transports (against a
real local HTTP server), and a consumer that is down never failing the job."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trellis.core.config import FabricSettings
from trellis.core.net import free_port
from trellis.lineage.openlineage import (
    SCHEMA_URL,
    Dataset,
    FileTransport,
    HttpTransport,
    LineageEmitter,
    custom_facet,
    run_event,
)


class _Collector(ThreadingHTTPServer):
    """A real HTTP server that keeps every POSTed body and answers with ``status``."""

    def __init__(self, port: int, status: int = 201) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        assert self.headers["Content-Type"] == "application/json"
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the bodies, not the access log."""


@pytest.fixture
def collector() -> Iterator[_Collector]:
    """A lineage consumer on a free local port, like Marquez's /api/v1/lineage."""
    server = _Collector(free_port())
    thread = threading.Thread(target=server.serve_forever, name="lineage-collector")
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def _check_spec(event: dict[str, Any]) -> None:
    """The RunEvent fields the 2-0-2 spec requires, with their formats."""
    assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
    assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    uuid.UUID(event["run"]["runId"])
    assert event["job"]["namespace"]
    assert event["job"]["name"]
    assert event["producer"].startswith("https://")
    assert event["schemaURL"] == SCHEMA_URL
    for dataset in event["inputs"] + event["outputs"]:
        assert dataset["namespace"]
        assert dataset["name"]
        for facet in dataset.get("facets", {}).values():
            assert {"_producer", "_schemaURL"} <= set(facet)
    for facet in event["run"]["facets"].values():
        assert {"_producer", "_schemaURL"} <= set(facet)


def test_a_run_writes_start_and_complete_lines_with_one_run_id(tmp_path: Path) -> None:
    """The file transport appends one JSON object per line; both events share the runId."""
    path = tmp_path / "lineage" / "events.jsonl"
    emitter = LineageEmitter("trellis-test", [FileTransport(path)])
    window = {"trellis_window": custom_facet("DatasetFacet", since=1, until=2)}
    with emitter.run(
        "reprocess.pump",
        inputs=[Dataset("trellis.archive", "default/messages", window)],
        outputs=[Dataset("trellis.timeseries", "default/readings")],
    ) as run:
        run.facets["trellis_counts"] = custom_facet("RunFacet", stored=3)
    start, complete = (json.loads(line) for line in path.read_text().splitlines())
    for event in (start, complete):
        _check_spec(event)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == run.run_id
    assert complete["job"] == {"namespace": "trellis-test", "name": "reprocess.pump", "facets": {}}
    assert complete["run"]["facets"]["trellis_counts"]["stored"] == 3
    assert emitter.sent == 2


def test_a_failing_job_emits_fail_with_the_error_and_still_raises(tmp_path: Path) -> None:
    """FAIL carries the spec's errorMessage facet; the job's exception is not swallowed."""
    path = tmp_path / "events.jsonl"
    emitter = LineageEmitter("trellis", [FileTransport(path)])
    with pytest.raises(ValueError, match="only 3 rows"), emitter.run("train.pump-anomaly"):
        raise ValueError("only 3 rows")
    fail = json.loads(path.read_text().splitlines()[-1])
    _check_spec(fail)
    assert fail["eventType"] == "FAIL"
    assert fail["run"]["facets"]["errorMessage"]["message"] == "only 3 rows"


def test_the_http_transport_posts_each_event_to_a_real_server(collector: _Collector) -> None:
    """Events arrive as JSON POST bodies, in order, from settings naming the URL."""
    url = f"http://127.0.0.1:{collector.server_address[1]}/api/v1/lineage"
    emitter = LineageEmitter.from_settings(FabricSettings(lineage_url=url, lineage_namespace="x"))
    with emitter.run("ingest", outputs=[Dataset("trellis.timeseries", "default/readings")]):
        pass
    assert [b["eventType"] for b in collector.bodies] == ["START", "COMPLETE"]
    for body in collector.bodies:
        _check_spec(body)
    assert collector.bodies[0]["job"]["namespace"] == "x"


def test_a_consumer_that_refuses_or_is_down_never_fails_the_job(collector: _Collector) -> None:
    """A 500 and a closed port are counted failures; the job's work completes."""
    collector.status = 500
    refusing = HttpTransport(f"http://127.0.0.1:{collector.server_address[1]}/")
    down = HttpTransport(f"http://127.0.0.1:{free_port()}/", timeout_s=2)
    emitter = LineageEmitter("trellis", [refusing, down])
    done = []
    with emitter.run("quarantine.replay"):
        done.append(True)
    assert done == [True]
    assert (emitter.sent, emitter.failures) == (0, 4)
    assert len(collector.bodies) == 2


def test_run_event_refuses_what_the_spec_does_not_allow() -> None:
    """An unknown event type and a run id that is not a UUID are refused before sending."""
    with pytest.raises(ValueError, match="not an OpenLineage event type"):
        run_event("DONE", str(uuid.uuid4()), "trellis", "job")
    with pytest.raises(ValueError, match="badly formed"):
        run_event("START", "run-1", "trellis", "job")

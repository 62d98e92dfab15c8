"""OpenLineage run events for Trellis jobs, sent to a JSON-lines file and/or over HTTP.

Pipeline runs (the ingest process, quarantine replays, reprocessing) and model
training runs each emit a ``START`` and then a ``COMPLETE`` or ``FAIL``
`RunEvent <https://openlineage.io/spec/2-0-2/OpenLineage.json>`_ with the same
``run.runId``, the job's namespace and name, and the datasets read and written, so
Marquez or any other OpenLineage consumer can draw the graph. The event is written
by hand (a dozen fields) rather than through ``openlineage-python``, which would add
a dependency tree for what :func:`run_event` does.

Transports never fail the job: lineage is an observation of the work, so a consumer
that is down costs a logged warning and a counted failure, not a lost training run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec

from trellis._version import __version__
from trellis.core.config import FabricSettings

__all__ = [
    "PRODUCER",
    "SCHEMA_URL",
    "Dataset",
    "FileTransport",
    "HttpTransport",
    "LineageEmitter",
    "LineageRun",
    "Transport",
    "custom_facet",
    "run_event",
    "training_run",
]

#: The spec version the events follow.
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#: Who produced the events (a URI, as the spec asks).
PRODUCER = f"https://github.com/trellis-aiot/trellis/tree/v{__version__}"
_ERROR_FACET = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


def custom_facet(base: str, **fields: Any) -> dict[str, Any]:
    """A Trellis facet of the spec's ``base`` kind (``RunFacet``, ``DatasetFacet``…):
    the spec wants every facet to name its producer and schema."""
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/{base}",
        **fields,
    }


class Dataset(msgspec.Struct, frozen=True):
    """An OpenLineage dataset: ``namespace`` (where) and ``name`` (what), with facets."""

    namespace: str
    name: str
    facets: dict[str, Any] = {}


class Transport(Protocol):
    """Delivers one encoded RunEvent; raises on failure (the emitter counts it)."""

    def send(self, event: bytes) -> None:
        """Deliver ``event`` (one JSON object)."""
        ...


class FileTransport:
    """Appends each event as one line to a file (JSON lines), safe across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, event: bytes) -> None:
        """Append ``event`` and a newline in one write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("ab") as sink:
            sink.write(event + b"\n")


class HttpTransport:
    """POSTs each event as JSON to a URL, as Marquez's ``/api/v1/lineage`` expects."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self._timeout = timeout_s

    def send(self, event: bytes) -> None:
        """POST ``event``; a non-2xx answer raises :class:`httpx.HTTPStatusError`."""
        response = httpx.post(
            self.url,
            content=event,
            headers={"Content-Type": "application/json"},
            timeout=self._timeout,
        )
        response.raise_for_status()


def run_event(
    event_type: str,
    run_id: str,
    namespace: str,
    job: str,
    inputs: Sequence[Dataset] = (),
    outputs: Sequence[Dataset] = (),
    run_facets: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One RunEvent as the spec shapes it (a plain dict, ready to encode)."""
    if event_type not in ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"):
        raise ValueError(f"event type {event_type!r} is not an OpenLineage event type")
    uuid.UUID(run_id)  # the spec requires a UUID; refuse anything else here
    return {
        "eventType": event_type,
        "eventTime": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "run": {"runId": run_id, "facets": run_facets or {}},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": [msgspec.to_builtins(d) for d in inputs],
        "outputs": [msgspec.to_builtins(d) for d in outputs],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


class LineageRun:
    """A run in progress: add the datasets it writes as it learns them."""

    def __init__(self, run_id: str, job: str, inputs: list[Dataset], outputs: list[Dataset]):
        self.run_id = run_id
        self.job = job
        self.inputs = inputs
        self.outputs = outputs
        self.facets: dict[str, Any] = {}

    def lineage(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """``recorded`` (a model version's lineage record) naming this run, so the
        registry and the OpenLineage consumer agree on the run id."""
        return {**recorded, "run": {**recorded.get("run", {}), "runId": self.run_id}}


class LineageEmitter:
    """Emits RunEvents to every configured transport; none configured means no events."""

    def __init__(self, namespace: str, transports: Sequence[Transport] = ()) -> None:
        self.namespace = namespace
        self.transports = list(transports)
        self.sent = 0
        self.failures = 0

    @classmethod
    def from_settings(cls, settings: FabricSettings) -> LineageEmitter:
        """The transports ``[fabric]`` names: ``lineage_file`` and/or ``lineage_url``."""
        transports: list[Transport] = []
        if settings.lineage_file is not None:
            transports.append(FileTransport(settings.lineage_file))
        if settings.lineage_url is not None:
            transports.append(HttpTransport(settings.lineage_url, settings.lineage_timeout_s))
        return cls(settings.lineage_namespace, transports)

    def emit(
        self,
        event_type: str,
        run: LineageRun,
    ) -> dict[str, Any]:
        """Send one event of ``run`` to every transport; return the event."""
        event = run_event(
            event_type, run.run_id, self.namespace, run.job, run.inputs, run.outputs, run.facets
        )
        if not self.transports:
            return event
        encoded = _encode(event)
        for transport in self.transports:
            try:
                transport.send(encoded)
            except (OSError, httpx.HTTPError) as exc:
                self.failures += 1
                log.warning(
                    "OpenLineage event %s of %s not delivered: %s", event_type, run.job, exc
                )
            else:
                self.sent += 1
        return event

    @contextlib.contextmanager
    def run(
        self,
        job: str,
        inputs: Sequence[Dataset] = (),
        outputs: Sequence[Dataset] = (),
        run_id: str | None = None,
    ) -> Iterator[LineageRun]:
        """``START`` now; ``COMPLETE`` when the block ends, ``FAIL`` (with the error) when
        it raises, and the exception propagates."""
        current = LineageRun(run_id or str(uuid.uuid4()), job, list(inputs), list(outputs))
        self.emit("START", current)
        try:
            yield current
        except BaseException as exc:
            current.facets["errorMessage"] = {
                "_producer": PRODUCER,
                "_schemaURL": _ERROR_FACET,
                "message": str(exc) or type(exc).__name__,
                "programmingLanguage": "python",
            }
            self.emit("FAIL", current)
            raise
        self.emit("COMPLETE", current)


def training_run(
    emitter: LineageEmitter,
    tenant: str,
    name: str,
    version: str,
    devices: Sequence[str],
) -> contextlib.AbstractContextManager[LineageRun]:
    """The OpenLineage run of training model ``name@version`` on ``devices``' telemetry."""
    return emitter.run(
        f"train.{name}",
        inputs=[Dataset("trellis.timeseries", f"{tenant}/{device}") for device in devices],
        outputs=[Dataset("trellis.models", f"{tenant}/{name}@{version}")],
    )

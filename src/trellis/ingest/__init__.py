"""Ingest: raw messages become validated readings, or quarantined messages."""

from trellis.ingest.decode import (
    Limits,
    Rejection,
    TelemetryPayload,
    decode_telemetry,
    parse_topic,
    telemetry_topic,
)
from trellis.ingest.pipeline import IngestPipeline, IngestResult, IngestStats
from trellis.ingest.quarantine import Quarantine, QuarantinedMessage

__all__ = [
    "IngestPipeline",
    "IngestResult",
    "IngestStats",
    "Limits",
    "Quarantine",
    "QuarantinedMessage",
    "Rejection",
    "TelemetryPayload",
    "decode_telemetry",
    "parse_topic",
    "telemetry_topic",
]

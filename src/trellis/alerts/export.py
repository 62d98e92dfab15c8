"""Labels exported for retraining: JSON lines or CSV, one label per line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import msgspec

from trellis.alerts.feedback import Label

__all__ = ["CSV_COLUMNS", "labels_csv", "labels_jsonl"]

CSV_COLUMNS = tuple(Label.__struct_fields__)


def labels_jsonl(labels: Iterable[Label]) -> bytes:
    """One JSON object per label and line."""
    encoder = msgspec.json.Encoder()
    return b"".join(encoder.encode(label) + b"\n" for label in labels)


def labels_csv(labels: Iterable[Label]) -> str:
    """CSV with a header row; ``metrics`` (a list) is joined with ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for label in labels:
        row = msgspec.structs.asdict(label)
        row["metrics"] = ";".join(label.metrics)
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()

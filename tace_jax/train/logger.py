"""Per-epoch metric logs: ``metrics.jsonl`` (one JSON object per line) and ``metrics.csv``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

__all__ = ["MetricsLogger", "read_jsonl"]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    """Append rows to ``<dir>/metrics.jsonl`` and ``<dir>/metrics.csv``.

    The CSV header is fixed by the first row ever written (kept across resumes); later keys
    that are not in it go to the JSON lines only.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.directory / "metrics.jsonl"
        self.csv = self.directory / "metrics.csv"
        self._header: list[str] | None = None
        if self.csv.exists() and self.csv.stat().st_size:
            with open(self.csv, newline="") as f:
                self._header = next(csv.reader(f), None)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after optimiser ``step`` (used when resuming from a checkpoint)."""
        if self.jsonl.exists():
            rows = [r for r in read_jsonl(self.jsonl) if r.get("step", 0) <= step]
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if self.csv.exists() and self._header:
            with open(self.csv, newline="") as f:
                body = list(csv.DictReader(f))
            keep = [r for r in body if float(r.get("step") or 0) <= step]
            with open(self.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self._header)
                w.writeheader()
                w.writerows(keep)

    def log(self, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        new = self._header is None
        if new:
            self._header = list(row)
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._header, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

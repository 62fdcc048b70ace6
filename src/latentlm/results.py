"""RUN_DIR/results.json: every evaluation merges its results under its own key ("val", "choice", ...)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def merge_results(run_dir: str | Path, key: str, value) -> Path:
    path = Path(run_dir) / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
    return path


def read_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}

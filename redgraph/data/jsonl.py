"""Reading JSONL files with errors that name the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from redgraph.errors import InputError


def read_jsonl(path: str | os.PathLike[str], *, drop_cut_tail: bool = False) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of ``path``.

    Args:
        drop_cut_tail: a last line that is not JSON (a write cut short by a killed process) is
            removed from the file instead of raising, so an append-only log can be resumed.

    Raises:
        InputError: a line is not a JSON object.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if drop_cut_tail and number == len(lines):
                data = path.read_bytes()
                cut = data.rstrip(b"\n").rfind(b"\n")
                path.write_bytes(data[: cut + 1] if cut >= 0 else b"")
                break
            raise InputError(f"{path}:{number} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number} must be a JSON object, got {type(record).__name__}")
        records.append((number, record))
    return records

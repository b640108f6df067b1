"""An evaluation's output folder: its configuration file, its prediction records, and the summary,
table and plots written from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redgraph.data.files import write_file
from redgraph.data.jsonl import read_jsonl
from redgraph.errors import ConfigError, InputError
from redgraph.eval.report import markdown, plot, summarise

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"


def claim_folder(out: Path, config, *, identity: dict | None = None, name: str = CONFIG,
                 holds: str = "an evaluation") -> None:
    """Record ``config`` (its ``identity()``, or ``identity``) in ``out/name``; refuse a folder that
    holds ``holds`` of other settings. Used by evaluations and by SDRT trace folders."""
    path = out / name
    mine = json.loads(json.dumps(config.identity() if identity is None else identity))  # as it reads back
    if path.exists():
        theirs = json.loads(path.read_text(encoding="utf-8")).get("identity", {})
        if theirs != mine:
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"{out} holds {holds} with other settings ({', '.join(differing)}); "
                              "use a new output folder, or the same settings to resume")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_file(path, json.dumps({"identity": mine, "shard": list(config.shard), "limit": config.limit}, indent=2) + "\n",
               what="evaluation settings")


def load_config(out: Path) -> dict[str, Any]:
    path = Path(out) / CONFIG
    if not path.exists():
        raise InputError(f"{out} has no {CONFIG}; it is not an evaluation output folder")
    return json.loads(path.read_text(encoding="utf-8"))


def read_records(path: Path) -> list[dict]:
    """Records of an output JSONL file; a last line cut short by a killed run is dropped (it is redone)."""
    return [record for _, record in read_jsonl(path, drop_cut_tail=True)] if path.exists() else []


def run_record(saved: dict[str, Any]) -> dict[str, Any]:
    """What produced these figures: redgraph's version, the git commit where known, the date, the
    command line and the settings."""
    import datetime
    import subprocess
    import sys

    from redgraph import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None  # not a git checkout, or no git
    return {"redgraph_version": __version__, "git_commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv), "settings": saved.get("identity", {})}


def write_outputs(out: Path) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``plots/`` for the predictions in ``out``."""
    saved = load_config(out)
    summary = summarise(read_records(out / PREDICTIONS), saved)
    summary["run"] = run_record(saved)
    write_file(out / "summary.json", json.dumps(summary, indent=2) + "\n", what="summary")
    write_file(out / "summary.md", markdown(summary), what="summary")
    plot(summary, out / "plots")
    return summary

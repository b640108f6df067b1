"""Data-parallel evaluation under a real launcher: ``torchrun`` (torch's own) starts two processes of
``redgraph eval run --shard auto``; each answers its share, process 0 merges, and the result equals
the same evaluation in one process. Running it again resumes and merges again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data import export_dataset

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--mode", "direct", "--mode", "red", "--lambdas", "1", "--limit", "6", "--json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    export_dataset(folder, {"test": 6})
    return folder


def _torchrun(data: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "redgraph.cli", "eval", "run", str(data), str(out), "--shard", "auto", *ARGS]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _rows(summary: dict) -> list[tuple]:
    return sorted((r["mode"], r["lambda"], r["n"], r["accuracy"]) for r in summary["accuracy"])


def test_two_launched_processes_give_the_one_process_result(data, tmp_path):
    launched = _torchrun(data, tmp_path / "launched")
    assert launched.returncode == 0, launched.stderr[-3000:]
    merged = json.loads((tmp_path / "launched" / "summary.json").read_text())
    assert sorted(p.name for p in (tmp_path / "launched").glob("shard-*")) == ["shard-0-of-2", "shard-1-of-2"]
    single = CliRunner().invoke(app, ["eval", "run", str(data), str(tmp_path / "single"), *ARGS])
    assert single.exit_code == 0, single.output
    assert _rows(merged) == _rows(json.loads(single.stdout))
    predictions = lambda folder: sorted(  # noqa: E731
        (r["key"], r["prediction"]) for r in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines()))
    assert predictions(tmp_path / "launched") == predictions(tmp_path / "single")
    again = _torchrun(data, tmp_path / "launched")  # every shard is finished: nothing is answered, all is merged again
    assert again.returncode == 0, again.stderr[-3000:]
    assert _rows(json.loads((tmp_path / "launched" / "summary.json").read_text())) == _rows(merged)


def test_auto_shards_need_a_launcher(data, tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(app, ["eval", "run", str(data), str(tmp_path / "o"), "--shard", "auto"])
    assert result.exit_code == 2 and "sets RANK and WORLD_SIZE (torchrun, accelerate launch)" in result.output

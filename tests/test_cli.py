"""The `redgraph` command, run as a user runs it."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from redgraph.cli import app
from tests.conftest import scene, tiny

runner = CliRunner()


def test_import_is_light_and_quiet():
    code = "import sys, redgraph; print(sorted(m for m in ('torch', 'transformers', 'langgraph') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]" and done.stderr == ""


def test_decode_prints_answer_and_attribution_as_json(tmp_path):
    tiny("llava_clip").save(tmp_path / "model")
    scene().save(tmp_path / "scene.png")
    result = runner.invoke(app, [
        "decode", str(tmp_path / "scene.png"), "what color is the circle?", "--model", str(tmp_path / "model"),
        "-r", "the circle is red", "-r", "the square is blue", "--lambda", "0.8", "--max-new-tokens", "5", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rationale_lambdas"] == [0.4, 0.4]
    assert len(payload["tokens"]) == 5 and len(payload["tokens"][0]["rationale_logprobs"]) == 2


def test_decode_errors_exit_2_and_name_the_value(tmp_path):
    scene().save(tmp_path / "scene.png")
    missing = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    tiny("llava_clip").save(tmp_path / "model")
    negative = runner.invoke(app, ["decode", str(tmp_path / "scene.png"), "q?", "--model", str(tmp_path / "model"),
                                   "--lambda", "-1"])
    assert negative.exit_code == 2 and "-1" in negative.output


def test_demo_runs_offline():
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"lambda=0.0", "lambda=1.0"}
    assert all(len(run["tokens"]) == 8 for run in payload.values())

"""Every file redgraph writes is a regular file, written atomically: never over a device, a pipe or a
folder, never a traceback or a temporary file left behind (issue 37's reproducers)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redgraph.cli import app
from redgraph.data.files import write_file
from redgraph.errors import InputError
from redgraph.trace import Trace

runner = CliRunner()


def _device(tmp_path):
    """A character device like /dev/null (mknod x c 1 3), where this user may make one."""
    path = tmp_path / "device"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def _fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_write_file_refuses_what_is_not_a_regular_file_and_leaves_it_as_it_was(tmp_path, kind):
    target = {"device": _device, "fifo": _fifo, "folder": lambda p: p}[kind](tmp_path)
    before = os.stat(target).st_mode
    with pytest.raises(InputError, match="not a regular file|is a folder") as caught:
        write_file(target, "text", what="trace")
    assert str(target) in str(caught.value)
    assert os.stat(target).st_mode == before and _leftovers(tmp_path) == []


def test_write_file_makes_a_missing_folder_and_refuses_a_path_under_a_file(tmp_path):
    written = write_file(tmp_path / "new" / "deeper" / "run.json", "{}\n", what="trace")
    assert Path(written).read_text() == "{}\n" and oct(os.stat(written).st_mode & 0o777) == "0o644"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(InputError, match="plain"):
        write_file(tmp_path / "plain" / "run.json", "{}", what="trace")
    assert _leftovers(tmp_path) == [] and (tmp_path / "plain").read_text() == "x"


def test_an_exclusive_write_never_overwrites_and_keeps_its_mode(tmp_path):
    key = write_file(tmp_path / "signer.key", b"secret", what="private key", mode=0o600, exclusive=True)
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    with pytest.raises(InputError, match="exists"):
        write_file(key, b"other", what="private key", mode=0o600, exclusive=True)
    assert Path(key).read_bytes() == b"secret" and _leftovers(tmp_path) == []


def test_a_trace_is_never_saved_over_a_device(tmp_path):
    device = _device(tmp_path)
    with pytest.raises(InputError, match="not a regular file"):
        Trace.from_events("t", []).save(device)
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_cli_outputs_refuse_devices_fifos_and_folders_without_a_traceback(tmp_path):
    from redgraph.examples import example_path, load_examples

    example = load_examples()[0]
    for target in (_fifo(tmp_path), tmp_path):
        for option in ("--trace", "--report"):
            result = runner.invoke(app, ["ask", str(example_path(example)), example["question"], option, str(target)])
            assert result.exit_code != 0 and "Traceback" not in result.output and str(target) in result.output
    (tmp_path / "signer.key").write_text("kept")
    result = runner.invoke(app, ["trace", "keygen", str(tmp_path / "signer")])
    assert result.exit_code != 0 and "exists" in result.output and (tmp_path / "signer.key").read_text() == "kept"
    assert _leftovers(tmp_path) == []


def test_resume_json_nested_past_pythons_limit_is_refused_without_a_traceback(tmp_path):
    from redgraph.examples import example_path, load_examples

    example = load_examples()[0]
    deep = "[" * 5000 + "]" * 5000
    result = runner.invoke(app, ["ask", str(example_path(example)), example["question"], "--resume", deep])
    assert result.exit_code != 0 and "nested too deep" in result.output and "Traceback" not in result.output

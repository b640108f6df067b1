"""Shared fixtures: tiny random models of every supported family, built offline, and test images."""

from __future__ import annotations

import os

# Tests never touch a network (DESIGN invariant 6). Set before transformers / huggingface_hub
# are imported, which read it once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# scripts/test.sh runs the suite in one pytest-xdist worker per core: each worker's torch (and the
# programs its tests start) then takes one thread, so two workers do not fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import functools  # noqa: E402

import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from redgraph.models import FAMILIES, build_tiny_lvlm  # noqa: E402


def json_paths(value, path=()):
    """Every location in parsed JSON, depth first: each dict key and list position as a path tuple
    (the trace tampering tests and benchmarks/fuzz.py edit a trace at each)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from json_paths(item, (*path, index))


def reference_checkpoint():
    """The 570k reference model (trained outside CI; see BENCHMARKS.md) when this machine has it:
    ``REDGRAPH_REFERENCE_MODEL``, else a sibling ``shared/checkpoints`` folder of the checkout. None
    when absent (CI), and the tests that need it are skipped."""
    from pathlib import Path

    named = os.environ.get("REDGRAPH_REFERENCE_MODEL")
    found = Path(named) if named else Path(__file__).resolve().parents[2] / "shared" / "checkpoints" / "embedded-gpu-570k"
    return found if found.is_dir() else None


NO_REFERENCE = "needs the 570k reference checkpoint: set REDGRAPH_REFERENCE_MODEL to its folder"


@functools.cache
def tiny(family: str):
    """One tiny model per family for the whole session (they are never mutated)."""
    return build_tiny_lvlm(family)


def scene(colour: str = "red", size: tuple[int, int] = (64, 48)) -> Image.Image:
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((4, 4, 28, 28), fill=colour)
    draw.rectangle((34, 10, 58, 40), fill="blue")
    return picture


@pytest.fixture(scope="session", autouse=True)
def redgraph_home(tmp_path_factory):
    """Stored images, checkpoints and traces go to a temporary folder, not the user's cache."""
    previous = os.environ.get("REDGRAPH_HOME")
    os.environ["REDGRAPH_HOME"] = str(tmp_path_factory.mktemp("redgraph-home"))
    yield os.environ["REDGRAPH_HOME"]
    if previous is None:
        os.environ.pop("REDGRAPH_HOME", None)
    else:
        os.environ["REDGRAPH_HOME"] = previous


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server's URL for the checkpoint tests (see tests/postgres_server.py)."""
    from tests import postgres_server

    if os.environ.get("REDGRAPH_TEST_POSTGRES"):
        yield os.environ["REDGRAPH_TEST_POSTGRES"]
        return
    bin_dir = postgres_server.binaries()
    if bin_dir is None:
        if os.environ.get("REDGRAPH_REQUIRE_POSTGRES"):
            pytest.fail("REDGRAPH_REQUIRE_POSTGRES is set but no PostgreSQL binaries (initdb) are installed")
        pytest.skip("no PostgreSQL binaries here (install Debian's postgresql package, or set REDGRAPH_TEST_POSTGRES)")
    server = postgres_server.Server(postgres_server.new_folder())
    try:
        url = server.start(bin_dir)
    except Exception:
        server.stop()
        raise
    yield url
    server.stop()


@pytest.fixture(params=FAMILIES)
def family_lvlm(request):
    return tiny(request.param)


@pytest.fixture
def qwen():
    return tiny("qwen2_vl")


@pytest.fixture
def llava():
    return tiny("llava_clip")

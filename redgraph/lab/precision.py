"""Where and how precisely a run trains: the device check, ``--precision auto`` (bf16 only where it
is measured faster), and the process a run trains in (its threads and random state)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time

import torch

from redgraph.errors import ConfigError
from redgraph.lab.checkpoints import resumed_setting
from redgraph.lab.train_config import PRECISIONS


def auto_precision(device: str | torch.device, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The precision ``--precision auto`` trains with: a resumed run's own (``out_dir`` holds one);
    else bfloat16 on CUDA, and on a CPU only where a bf16 matrix product is measured faster than a
    float32 one (CPUs with native bf16); float32 elsewhere. On an AVX2-only CPU bf16 trains about 30x
    slower than float32 (measured, BENCHMARKS.md)."""
    saved = resumed_setting(out_dir, "precision", PRECISIONS)
    if saved is not None:
        return saved
    if check_device(device).type == "cuda":
        return "bfloat16"
    return "bfloat16" if bf16_speedup() > 1.0 else "float32"



@functools.cache
def bf16_speedup(side: int = 256, repeats: int = 5) -> float:
    """How many times faster a bf16 ``side`` x ``side`` matrix product runs than a float32 one on this CPU.

    Measured once per process (every run in it then decides alike), each dtype's fastest of
    ``repeats`` products, so that other work on the machine does not flip the answer."""
    generator = torch.Generator().manual_seed(0)
    timings = []
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(side, side, generator=generator).to(dtype)
        a @ a  # warm-up
        fastest = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            a @ a
            fastest = min(fastest, time.perf_counter() - started)
        timings.append(fastest)
    return timings[0] / max(timings[1], 1e-9)



def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device if this machine can train on it, else a ConfigError saying what to use."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be cpu or cuda (cuda:N), got {device!r}") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise ConfigError(f"device must be cpu or cuda (cuda:N), got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
    return parsed



@contextlib.contextmanager
def training_process(threads: int, device: torch.device):
    """Run a training with ``threads`` CPU threads and its own random state: seeding happens inside,
    and the caller's thread count and global RNG state (CPU, and ``device``'s on CUDA) are left as
    they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield
    finally:
        torch.set_num_threads(before)


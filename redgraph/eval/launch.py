"""Data-parallel evaluation under an existing launcher (``torchrun``, ``accelerate launch``, or any
that sets ``RANK`` and ``WORLD_SIZE``): each process answers its shard into ``OUT/shard-i-of-n``
(resumable, as any shard), on ``cuda:LOCAL_RANK`` when asked for CUDA; process 0 then waits for the
other shards to finish and merges them into ``OUT``.

Example (2 GPUs of one machine, or ``--nnodes`` machines)::

    torchrun --nproc_per_node 2 -m redgraph.cli eval run data/ out/ --shard auto --device cuda
    accelerate launch --num_processes 2 -m redgraph.cli eval run data/ out/ --shard auto --device cuda
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redgraph.errors import ConfigError


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int

    def folder(self, out: Path, rank: int | None = None) -> Path:
        return out / f"shard-{self.rank if rank is None else rank}-of-{self.world_size}"


def from_environment() -> Launch:
    """This process's place among the launcher's processes.

    Raises:
        ConfigError: no launcher set ``RANK`` and ``WORLD_SIZE``.
    """
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise ConfigError("--shard auto takes its share from a launcher that sets RANK and WORLD_SIZE (torchrun, "
                          "accelerate launch); without one, give --shard i/n and merge after") from None
    if not 0 <= rank < world:
        raise ConfigError(f"the launcher's RANK {rank} is outside WORLD_SIZE {world}")
    return Launch(rank, world, local)


def device_for(device: str, launch: Launch) -> str:
    """``cuda`` becomes this process's own GPU, ``cuda:LOCAL_RANK``; anything else is kept."""
    return f"cuda:{launch.local_rank}" if device == "cuda" else device


def run_launched(
    run_shard: Callable[[tuple[int, int], Path], Any],
    out: Path,
    launch: Launch,
    *,
    poll_seconds: float = 1.0,
) -> dict[str, Any] | None:
    """Run this process's shard with ``run_shard((rank, n), folder)``; on process 0, then wait for the
    others (a shard is finished when its ``summary.json`` exists) and merge them into ``out``.

    Returns:
        The merged summary on process 0; None on the others.
    """
    from redgraph.eval.merge import merge

    out.mkdir(parents=True, exist_ok=True)
    mine = launch.folder(out)
    (mine / "summary.json").unlink(missing_ok=True)  # written again when this run finishes
    run_shard((launch.rank, launch.world_size), mine)
    if launch.rank != 0:
        return None
    folders = [launch.folder(out, rank) for rank in range(launch.world_size)]
    while not all((folder / "summary.json").exists() for folder in folders):
        time.sleep(poll_seconds)  # a launcher ends every process when one fails, this one included
    _clear_merged(out)
    return merge(out, [str(folder) for folder in folders])


def _clear_merged(out: Path) -> None:
    """Remove what an earlier merge wrote into ``out`` (all of it derived from the shards)."""
    config = out / "config.json"
    if config.exists() and "merged_from" not in json.loads(config.read_text(encoding="utf-8")):
        raise ConfigError(f"{out} holds an evaluation that is not a merge of launched shards; use a new folder")
    for name in ("config.json", "predictions.jsonl", "rationales.self.jsonl", "summary.json", "summary.md"):
        (out / name).unlink(missing_ok=True)
    for name in ("plots", "traces"):
        shutil.rmtree(out / name, ignore_errors=True)

"""Merging the output folders of several shards of one evaluation into one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redgraph.data.files import write_file
from redgraph.data.jsonl import read_jsonl
from redgraph.errors import ConfigError, InputError
from redgraph.eval.datasets import load_dataset
from redgraph.eval.outputs import CONFIG, PREDICTIONS, load_config, write_outputs
from redgraph.eval.plan import EvalConfig, plan, select_items


def merge(out: str | Path, shards: list[str | Path]) -> dict[str, Any]:
    """Combine the folders of several shards (same settings) into ``out`` and summarise them."""
    if not shards:
        raise InputError("nothing to merge; name the shard folders")
    configs = [load_config(Path(s)) for s in shards]
    identity = configs[0]["identity"]
    for shard, config in zip(shards[1:], configs[1:]):
        if config["identity"] != identity:
            raise ConfigError(f"{shard} was run with other settings than {shards[0]}; only shards of one evaluation merge")
    have = {tuple(c["shard"]) for c in configs}
    count = configs[0]["shard"][1]
    if any(n != count for _, n in have) or {i for i, _ in have} != set(range(count)):
        raise InputError(f"the shards do not make up one whole: have {sorted('%d/%d' % c for c in have)}, "
                         f"need 0/{count} to {count - 1}/{count}")
    items = load_dataset(identity["dataset"], split=identity["split"])
    records: dict[str, dict] = {}
    for shard, config in zip(shards, configs):
        found = [record for _, record in read_jsonl(Path(shard) / PREDICTIONS)] if (Path(shard) / PREDICTIONS).exists() else []
        settings = EvalConfig(**{**identity, "shard": tuple(config["shard"]), "limit": config["limit"]})
        wanted = {unit.key for unit in plan(select_items(items, settings), settings)}
        missing = wanted - {record["key"] for record in found}
        if missing:
            raise InputError(f"{shard} is unfinished: {len(missing)} of its {len(wanted)} answers are missing; "
                             "run the same `redgraph eval run` on it again to finish it, then merge")
        for record in found:
            if record["key"] in records and records[record["key"]].get("prediction") != record.get("prediction"):
                raise InputError(f"{record['key']} was answered differently in two shards; they overlap and disagree")
            records[record["key"]] = record
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / PREDICTIONS).exists():
        raise InputError(f"{folder} already holds predictions; merge into a new folder")
    write_file(folder / CONFIG, json.dumps({"identity": identity, "shard": [0, 1], "limit": configs[0]["limit"],
                                            "merged_from": [str(s) for s in shards]}, indent=2) + "\n",
               what="evaluation settings")
    with open(folder / PREDICTIONS, "w", encoding="utf-8") as handle:
        for record in records.values():
            handle.write(json.dumps(record) + "\n")
    for shard in shards:  # keep the self-written rationales and traces together with the answers
        for name in ("rationales.self.jsonl",):
            source = Path(shard) / name
            if source.exists():
                with open(folder / name, "a", encoding="utf-8") as handle:
                    handle.write(source.read_text(encoding="utf-8"))
        traces = Path(shard) / "traces"
        if traces.is_dir():
            (folder / "traces").mkdir(exist_ok=True)
            for trace in traces.iterdir():
                (folder / "traces" / trace.name).write_bytes(trace.read_bytes())
    return write_outputs(folder)

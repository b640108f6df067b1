"""What an evaluation runs: the modes, the rationale sources, its configuration and its units (one
answer each), in the order they are answered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redgraph.errors import ConfigError, check_whole_number
from redgraph.eval.datasets import EvalItem

MODES = ("direct", "cot", "red", "red_multi", "graph", "critic")
SOURCES = ("self", "gold", "irrelevant", "misleading", "lying")


@dataclass(frozen=True)
class EvalConfig:
    """What one evaluation runs. Folders resumed or merged must hold the same configuration."""

    dataset: str
    modes: tuple[str, ...] = ("direct", "cot", "red")
    sources: tuple[str, ...] = ("gold",)
    lambdas: tuple[float, ...] = (0.0, 0.3, 0.5, 1.0, 2.0)
    graph_lambda: float = 1.0
    rounds: int = 2
    max_new_tokens: int = 16
    model: str | None = None
    split: str | None = None
    shard: tuple[int, int] = (0, 1)
    limit: int | None = None
    critic_accept_at: float = 0.5
    critic_scoring: str = "probes"  # how the critic checks claims: probes, p_yes or both

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "lambdas", tuple(float(x) for x in self.lambdas))
        object.__setattr__(self, "shard", tuple(self.shard))
        for mode in self.modes:
            if mode not in MODES:
                raise ConfigError(f"unknown mode {mode!r}; choose among {', '.join(MODES)}")
        for source in self.sources:
            if source not in SOURCES and not source.startswith("file:"):
                raise ConfigError(f"unknown rationale source {source!r}; choose among {', '.join(SOURCES)} or file:PATH")
        needs_source = {"cot", "red", "red_multi", "graph"} & set(self.modes)
        if needs_source and not self.sources:
            raise ConfigError(f"modes {sorted(needs_source)} need at least one rationale source (--source)")
        if not self.lambdas or any(not (x >= 0) or x == float("inf") for x in self.lambdas):
            raise ConfigError(f"lambdas must be finite numbers >= 0, got {self.lambdas}")
        index, count = self.shard
        if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
            raise ConfigError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        if self.limit is not None:
            check_whole_number("limit", self.limit)
        for name in ("rounds", "max_new_tokens"):
            check_whole_number(name, getattr(self, name))
        from redgraph.agents.critic import SCORINGS

        if self.critic_scoring not in SCORINGS:
            raise ConfigError(f"critic scoring {self.critic_scoring!r} is not known; choose among {', '.join(SCORINGS)}")

    def identity(self) -> dict[str, Any]:
        """The settings that must agree between runs writing to one folder (not shard or limit)."""
        data = asdict(self)
        for name in ("shard", "limit"):
            data.pop(name)
        data["lambdas"] = list(self.lambdas)
        return data


@dataclass(frozen=True)
class Unit:
    """One answer to produce."""

    item: EvalItem
    mode: str
    source: str
    weight: float | None

    @property
    def key(self) -> str:
        return record_key(self.item.question_id, self.mode, self.source, self.weight)


def record_key(question_id: str, mode: str, source: str, weight: float | None) -> str:
    return f"{question_id}|{mode}|{source}|{'-' if weight is None else format(weight, 'g')}"


def select_items(items: list[EvalItem], config: EvalConfig) -> list[EvalItem]:
    """``limit`` first, then this shard's share (every n-th item), so shards of one limit add up to it."""
    chosen = items[: config.limit] if config.limit else items
    index, count = config.shard
    return chosen[index::count]


def plan(items: list[EvalItem], config: EvalConfig) -> list[Unit]:
    units: list[Unit] = []
    joined = "+".join(config.sources)
    for item in items:
        for mode in config.modes:
            if mode == "direct":
                units.append(Unit(item, mode, "-", None))
            elif mode == "cot":
                units += [Unit(item, mode, source, None) for source in config.sources]
            elif mode == "red":
                units += [Unit(item, mode, source, w) for source in config.sources for w in config.lambdas]
            elif mode == "red_multi":
                units += [Unit(item, mode, joined, w) for w in config.lambdas]
            elif mode == "graph":
                units += [Unit(item, mode, source, config.graph_lambda) for source in config.sources]
            elif mode == "critic" and item.claims:
                units.append(Unit(item, mode, "-", None))
    return units

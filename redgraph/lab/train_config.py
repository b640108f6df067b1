"""A training run's settings (:class:`TrainConfig`) and the constants they take: precisions, rope
layouts, attentions, what a run saved before a setting existed was trained with, and the
command-line forms of the task and category weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from redgraph.data.posing import ALL_CATEGORIES
from redgraph.data.scenes import IMAGE_SIDE
from redgraph.data.vocabulary import VOCABULARIES, Vocabulary
from redgraph.errors import ConfigError, check_whole_number
from redgraph.lab.architecture import CELL, ROPE_LAYOUTS, Dimensions
from redgraph.lab.batches import STREAMS
from redgraph.lab.tasks import LEGACY_TASKS, TASKS

PRECISIONS = ("float32", "bfloat16")
AUTO_PRECISION = "auto"  # bfloat16 where the device runs it faster than float32, else float32
AUTO_LAYOUT = "auto"  # the rope layout of the run's base (init_from, or a resumed run's own), else blocks
ATTENTIONS = ("eager", "sdpa")
# What a run saved before these settings existed was trained with.
LEGACY_SETTINGS = {"precision": "float32", "data_stream": 1, "accumulate": 1, "cell_weight": 0.0, "init_from": None,
           "position_weight": 0.0, "rope_layout": "blocks", "category_weights": [1.0] * len(ALL_CATEGORIES),
           "tool_share": 0.0, "augment": 0.0, "chart_shards": None, "image_side": 128, "tool_cells": False,
           "cell_head_init": "random", "vocabulary": "standard", "standard_share": 0.0, "freeze_vision": False,
           "copy_prompt_weight": 0.0, "copy_short_share": 0.0}
CELL_HEAD_INITS = ("random", "zero")
EMBEDDED_BASE = "embedded"  # init_from's name for the model shipped in the package


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The shipped model used the defaults except ``steps`` (see its manifest)."""

    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2  # results are reproducible for a fixed thread count
    dimensions: Dimensions = Dimensions()
    # Weight of the auxiliary loss: a linear head reads the scene's facts from the mean image token
    # (see scene_labels.py); 0 trains on the language-model loss alone.
    aux_weight: float = 0.0
    # Weight of the cell loss: a linear head reads each image token's own square's facts from it.
    cell_weight: float = 0.0
    # Weight of the position loss: a linear head reads each image token's own row and column of the
    # grid from it (the language model's M-RoPE barely tells image tokens apart by place; see
    # benchmarks/vision_probe.py), so left of / above can be read from the tokens.
    position_weight: float = 0.0
    # How often each task is drawn, in the order of TASKS (answer, rationale, cot, rationale_answer,
    # verify, copy); equal weights draw uniformly, as the shipped model was trained. Five weights (the
    # tasks before copy existed) draw no copy examples; six with copy at 0 are kept as those five.
    task_weights: tuple[float, ...] = (1.0,) * len(LEGACY_TASKS)
    # bfloat16: forward and backward under bf16 autocast (weights and optimiser stay float32);
    # auto: bfloat16 where the training device runs it faster than float32, decided by train()
    # (auto_precision) and recorded resolved.
    precision: str = "auto"
    # 2: each example from its own seed (the same stream for any worker count); 1: the shipped
    # model's in-order draw, made in-process only.
    data_stream: int = 2
    # Micro-batches per step, examples grouped by length (less padding); the same loss up to rounding.
    accumulate: int = 1
    # Start from this checkpoint's weights (a folder of the same dimensions, or "embedded": the shipped
    # model) instead of random ones; optimiser, schedule and the training-only heads start fresh.
    init_from: str | None = None
    # How the rotary frequencies are shared among time, height and width (ROPE_LAYOUTS in
    # architecture.py): "blocks", Qwen2-VL's own, or "interleaved". It has no weights, so --init-from
    # may start a run of either layout from a checkpoint of the other; auto keeps the base's (blocks
    # from scratch), decided by train() (auto_rope_layout) and recorded resolved.
    rope_layout: str = AUTO_LAYOUT
    # How often each question category is asked, relative to the others of its scene kind, in the
    # order of ALL_CATEGORIES (a kind whose categories all weigh 0 is not drawn); equal weights give
    # the generator's own items (the shipped model's stages 1-4; stages 5 and 6 weighed them).
    category_weights: tuple[float, ...] = (1.0,) * len(ALL_CATEGORIES)
    # The share of bar and document examples shown another tool's drawing of their scene (matplotlib's
    # charts, documents in real fonts; redgraph.data.tools' "train" look) instead of the own renderer's.
    tool_share: float = 0.0
    # The share of pictures given a scan or screenshot's degradation (redgraph.data.tools.degrade).
    augment: float = 0.0
    # A folder of charts drawn ahead (redgraph.lab.pictures.render_shards); None: drawn as needed.
    chart_shards: str | None = None
    # The side of the square whose pixel count every picture is resized to, its aspect ratio kept (a
    # multiple of 16: one merged image token covers 16 x 16 pixels), so about (side / 16)^2 image tokens a
    # picture. The own renderer draws 128 x 128; a larger side gives a drawing's text and bars more
    # tokens. The cell head labels the grid at any side; the position head the 128-pixel grid only.
    image_side: int = IMAGE_SIDE
    # Label other tools' undegraded drawings for the cell loss too, from the layout of where each tool
    # drew what (redgraph.data.tools.Layout); without it only the own renderer's pictures have cell labels.
    tool_cells: bool = False
    # How the training-only cell head starts: "random" (PyTorch's default), or "zero": zero weights and a
    # bias of -4 (a fact holds in a few per cent of squares), so a fresh head sends no gradient into the
    # vision tower until it has learned something; a fine-tune then does not pay for its random start.
    cell_head_init: str = "random"
    # The words and numbers of the run's scenes (redgraph.data.vocabulary): "standard", the shipped
    # model's, or "wide" (11 colours, 50 titles, 50 field names, bars 1-100, written values). The scene
    # and cell heads read that vocabulary's facts.
    vocabulary: str = "standard"
    # In a run on another vocabulary, the share of items drawn from the standard one instead (the
    # shipped model's world, which the wide vocabulary all but never draws: charts of values up to 9,
    # two-digit fields), each item's draw seeded by its index. Labels stay in the run's vocabulary.
    standard_share: float = 0.0
    # Train the language model only: the vision tower (patch embedding, its blocks and the merger) keeps
    # the base's weights exactly (no gradient, no optimiser state, no weight decay), so the image
    # branch's eyes stay as they are; for fine-tunes of the text skills (e.g. the copy task).
    freeze_vision: bool = False
    # In copy examples, also learn the rationale's own tokens (a reader's rationale names each label two
    # or three times, so predicting its repeats trains copying), weighed this much against the answer;
    # 0: the answer alone, as every other task.
    copy_prompt_weight: float = 0.0
    # The share of copy examples cut to the sentence that answers and 0-2 others (an easier start: the
    # answer's place is found at once); the rest are whole rationales.
    copy_short_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "accumulate", "warmup_steps"):
            check_whole_number(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay must be a number from 0 to 1, got {self.weight_decay!r}")
        if self.precision not in PRECISIONS + (AUTO_PRECISION,):
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS + (AUTO_PRECISION,))}, "
                              f"got {self.precision!r}")
        if isinstance(self.data_stream, bool) or self.data_stream not in STREAMS:
            raise ConfigError(f"data_stream must be 1 (the shipped model's) or 2, got {self.data_stream!r}")
        if self.accumulate > self.batch_size:
            raise ConfigError(f"accumulate ({self.accumulate}) cannot exceed batch_size ({self.batch_size}): "
                              "each micro-batch needs at least one example")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"learning_rate must be between 0 and 1, got {self.learning_rate!r}")
        for name in ("aux_weight", "cell_weight", "position_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
                raise ConfigError(f"{name} must be a number from 0 to 100, got {value!r}")
        weights = self.task_weights
        if isinstance(weights, (tuple, list)) and len(weights) == len(TASKS) and weights[-1] == 0 \
                and not isinstance(weights[-1], bool):
            object.__setattr__(self, "task_weights", tuple(weights[:len(LEGACY_TASKS)]))  # no copy: the five
        for name, names, each in (("task_weights", TASKS, "task"), ("category_weights", ALL_CATEGORIES, "category")):
            weights = getattr(self, name)
            lengths = (len(LEGACY_TASKS), len(TASKS)) if name == "task_weights" else (len(names),)
            if (not isinstance(weights, (tuple, list)) or len(weights) not in lengths
                    or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf
                           for w in weights)
                    or not any(weights)):
                count = (f"{len(LEGACY_TASKS)} numbers (or {len(TASKS)}, with copy)" if name == "task_weights"
                         else f"{len(names)} numbers")
                raise ConfigError(f"{name} must be {count} of at least 0, not all 0 (one per {each}: "
                                  f"{', '.join(names)}), got {weights!r}")
            object.__setattr__(self, name, tuple(float(w) for w in weights))
        if self.rope_layout not in ROPE_LAYOUTS + (AUTO_LAYOUT,):
            raise ConfigError(f"rope_layout must be one of {', '.join(ROPE_LAYOUTS + (AUTO_LAYOUT,))}, "
                              f"got {self.rope_layout!r}")
        for name in ("tool_share", "augment"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{name} must be a share from 0 to 1, got {value!r}")
            object.__setattr__(self, name, float(value))
        if (self.tool_share or self.augment) and self.data_stream != 2:
            raise ConfigError("tool_share and augment need data_stream 2 (stream 1 is the shipped model's own draw)")
        if self.chart_shards is not None and (not isinstance(self.chart_shards, str) or not self.chart_shards.strip()):
            raise ConfigError(f"chart_shards must be a folder of chart shards, got {self.chart_shards!r}")
        if self.chart_shards is not None and not self.tool_share:
            raise ConfigError(f"chart_shards ({self.chart_shards}) shows charts only to a run with a tool_share above 0; "
                              "set tool_share, or leave chart_shards out")
        check_whole_number("image_side", self.image_side, minimum=64, maximum=512)
        if self.image_side % CELL:
            raise ConfigError(f"image_side must be a multiple of {CELL} (the pixels one merged image token covers), "
                              f"got {self.image_side}")
        if self.image_side != IMAGE_SIDE and self.position_weight:
            raise ConfigError(f"the position head labels the {IMAGE_SIDE}-pixel grid; with image_side "
                              f"{self.image_side} set position_weight to 0")
        if not isinstance(self.tool_cells, bool):
            raise ConfigError(f"tool_cells must be true or false, got {self.tool_cells!r}")
        if self.tool_cells and not (self.cell_weight and self.tool_share):
            raise ConfigError("tool_cells labels other tools' drawings for the cell loss; it needs a cell_weight and a "
                              f"tool_share above 0 (got {self.cell_weight:g} and {self.tool_share:g})")
        if self.cell_head_init not in CELL_HEAD_INITS:
            raise ConfigError(f"cell_head_init must be one of {', '.join(CELL_HEAD_INITS)}, got {self.cell_head_init!r}")
        if not isinstance(self.vocabulary, str) or self.vocabulary not in VOCABULARIES:
            raise ConfigError(f"vocabulary must be one of {', '.join(VOCABULARIES)}, got {self.vocabulary!r}")
        share = self.standard_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ConfigError(f"standard_share must be a share from 0 to 1, got {share!r}")
        object.__setattr__(self, "standard_share", float(share))
        if share and self.vocabulary == "standard":
            raise ConfigError(f"standard_share ({share:g}) mixes standard items into a run on another vocabulary; "
                              "this run is on the standard one: set --vocabulary wide, or leave it out")
        value = self.copy_prompt_weight
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
            raise ConfigError(f"copy_prompt_weight must be a number from 0 to 100, got {value!r}")
        object.__setattr__(self, "copy_prompt_weight", float(value))
        value = self.copy_short_share
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"copy_short_share must be a share from 0 to 1, got {value!r}")
        object.__setattr__(self, "copy_short_share", float(value))
        if not isinstance(self.freeze_vision, bool):
            raise ConfigError(f"freeze_vision must be true or false, got {self.freeze_vision!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ConfigError(f"init_from must be a checkpoint folder or {EMBEDDED_BASE!r}, got {self.init_from!r}")

    @property
    def scene_vocabulary(self) -> Vocabulary:
        """The :class:`~redgraph.data.vocabulary.Vocabulary` called ``vocabulary``."""
        return VOCABULARIES[self.vocabulary]

    @property
    def uniform_tasks(self) -> bool:
        """The five tasks before copy, drawn alike (the shipped model's draw)."""
        return len(self.task_weights) == len(LEGACY_TASKS) and len(set(self.task_weights)) == 1

    @property
    def category_weight_map(self) -> dict[str, float] | None:
        """The category weights by name, or None where they are equal (the generator's own items)."""
        if len(set(self.category_weights)) == 1:
            return None
        return dict(zip(ALL_CATEGORIES, self.category_weights))


def parse_task_weights(text: str) -> tuple[float, ...]:
    """``"verify=3,cot=0.5"`` -> weights in TASKS order; tasks not named keep weight 1, but copy, which
    weighs 0 unless named (then the five weights of the tasks before it are given)."""
    weights = _parse_weights(text, TASKS, "--task-weights", "TASK", defaults={"copy": 0.0})
    return weights if weights[-1] else weights[:len(LEGACY_TASKS)]


def parse_category_weights(text: str) -> tuple[float, ...]:
    """``"relation_lr=3,field=0"`` -> weights in ALL_CATEGORIES order; categories not named keep weight 1."""
    return _parse_weights(text, ALL_CATEGORIES, "--category-weights", "CATEGORY")


def _parse_weights(text: str, names: tuple[str, ...], option: str, what: str,
                   defaults: dict[str, float] | None = None) -> tuple[float, ...]:
    weights = {**dict.fromkeys(names, 1.0), **(defaults or {})}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise ConfigError(f"{option}: cannot read {part!r}; write {what}=WEIGHT pairs separated by commas, "
                              f"with {what} one of {', '.join(names)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"{option}: the weight of {name} must be a number, got {value.strip()!r}") from None
    return tuple(weights.values())


def format_task_weights(weights: tuple[float, ...]) -> str:
    return ",".join(f"{task}={weight:g}" for task, weight in zip(TASKS, weights))


def format_category_weights(weights: tuple[float, ...]) -> str:
    """The categories whose weight is not 1 (those not named weigh 1)."""
    return ",".join(f"{name}={weight:g}" for name, weight in zip(ALL_CATEGORIES, weights) if weight != 1.0)


ProgressCallback = Callable[[int, float], None]


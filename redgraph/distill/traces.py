"""SDRT's reasoning traces: for each item, the teacher writes one trace per prompt style (two-step
styles analyse first, then write the rationale from the analysis), then answers from the trace; the
critic scores each trace's claims against the image.

Items come from the synthetic generator (``synthetic:SPLIT``; seed 1 by default, scenes the
embedded model was not trained on), from a dataset folder or file that ``redgraph eval`` reads
(GQA-style, ScienceQA-style or a ``redgraph data export``), or from a folder of a user's own
unlabelled pictures (``pictures:DIR``) with the questions a file or a kind of picture gives
(:mod:`redgraph.distill.pictures`). The teacher is any reasoner: the local
model, an OpenAI-compatible model, or a LangChain chat model. Every trace is one line of
``traces.jsonl``; an item's traces are written together as soon as they exist, so running again on
the same folder skips what is there (resume), and ``--shard i/n`` splits the items between
processes whose folders :func:`read_traces` reads together.

Example:
    >>> config = TraceConfig(source="synthetic:train", limit=200, styles=("facts",), per_style=4)  # doctest: +SKIP
    >>> generate_traces(config, "runs/traces")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redgraph.distill.items import TraceItem
from redgraph.errors import ConfigError, InputError, check_whole_number

TRACES = "traces.jsonl"
CONFIG = "traces_config.json"
SYNTHETIC = "synthetic:"


@dataclass(frozen=True)
class TraceConfig:
    """What one trace folder holds. Folders resumed or read together must agree on all but
    ``shard`` and ``limit``.

    Attributes:
        source: ``synthetic:SPLIT``, a dataset folder / file, or ``pictures:DIR`` (unlabelled pictures).
        split: the split of a dataset folder with several files.
        limit: the first this many items (before sharding).
        seed: the synthetic generator's seed.
        styles: prompt-library styles, one trace each (per sample).
        per_style: traces per style; the first is greedy, the others sampled (temperature 0.7).
        teacher: ``"local"`` (the model below) or ``"openai:MODEL"``.
        model: the local model: teacher when ``teacher`` is local, and the critic; None: the
            embedded model.
        base_url: the OpenAI-compatible server of an ``openai:`` teacher.
        max_new_tokens: longest analysis, rationale or answer.
        critic_scoring: how the critic checks claims (``probes``, ``p_yes`` or ``both``).
        shard: ``(i, n)``: every n-th item from the i-th.
        questions: a ``pictures:`` source's questions file (``.txt`` or ``.jsonl``).
        kind: a ``pictures:`` source's kind of picture, whose own questions are asked of each
            (see :data:`redgraph.distill.pictures.KIND_QUESTIONS`).
        holdout, part: a ``pictures:`` source's share of pictures kept out of adaptation, and which
            part these traces are of: "all", "adapt" (the others) or "heldout" (those).
        experts: the critic's experts (``"lvlm"``, or ``"lvlm,ocr"``: :mod:`redgraph.agents.experts`); what
            each expert beside the model read for a claim is kept in its trace (``readings``).
    """

    source: str = "synthetic:train"
    split: str | None = None
    limit: int = 300
    seed: int = 1
    styles: tuple[str, ...] = ("facts",)
    per_style: int = 1
    teacher: str = "local"
    model: str | None = None
    base_url: str | None = None
    max_new_tokens: int = 64
    critic_scoring: str = "probes"
    shard: tuple[int, int] = (0, 1)
    questions: str | None = None
    kind: str | None = None
    holdout: float = 0.0
    part: str = "all"
    experts: str = "lvlm"

    def __post_init__(self) -> None:
        from redgraph.agents.critic import SCORINGS
        from redgraph.agents.experts import parse_experts
        from redgraph.agents.prompt_library import get_style

        object.__setattr__(self, "experts", ",".join(parse_experts(self.experts)))
        object.__setattr__(self, "styles", tuple(self.styles))
        object.__setattr__(self, "shard", tuple(self.shard))
        if not self.styles:
            raise ConfigError("styles must name at least one prompt style")
        for name in self.styles:
            get_style(name)
        if len(set(self.styles)) != len(self.styles):
            raise ConfigError(f"styles must not repeat ({', '.join(self.styles)}); use per_style for more samples")
        for name in ("limit", "per_style", "max_new_tokens"):
            check_whole_number(name, getattr(self, name))
        check_whole_number("seed", self.seed, minimum=0)
        if self.teacher != "local" and not self.teacher.startswith("openai:"):
            raise ConfigError(f"teacher {self.teacher!r} is not understood; use 'local' or 'openai:MODEL' "
                              "(or pass a reasoner object to generate_traces)")
        if self.critic_scoring not in SCORINGS:
            raise ConfigError(f"critic scoring {self.critic_scoring!r} is not known; choose among {', '.join(SCORINGS)}")
        index, count = self.shard
        if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
            raise ConfigError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        from redgraph.distill.pictures import KIND_QUESTIONS, PARTS, PICTURES

        if self.part not in PARTS:
            raise ConfigError(f"part must be one of {', '.join(PARTS)}, got {self.part!r}")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) or not 0 <= self.holdout < 1:
            raise ConfigError(f"holdout must be a share from 0 to below 1, got {self.holdout!r}")
        if (self.part != "all" or self.holdout) and not self.source.startswith(PICTURES):
            raise ConfigError("holdout and part split a pictures:DIR source's pictures; "
                              f"{self.source!r} is not one")
        if self.part != "all" and not self.holdout:
            raise ConfigError(f"part {self.part!r} needs a holdout share above 0")
        if self.source.startswith(PICTURES):
            if self.questions is None and self.kind is None:
                raise ConfigError(f"source {self.source!r} needs questions: a questions file (--questions) or the kind "
                                  f"of pictures, for the model's own questions (--kind {'|'.join(KIND_QUESTIONS)})")
            if self.kind is not None and self.kind not in KIND_QUESTIONS:
                raise ConfigError(f"kind {self.kind!r} has no questions of its own; choose one of "
                                  f"{', '.join(KIND_QUESTIONS)}")
        elif self.questions is not None or self.kind is not None:
            raise ConfigError(f"questions and kind are for a pictures:DIR source; {self.source!r} brings its own "
                              "questions")
        if self.source.startswith(SYNTHETIC):
            from redgraph.data.synthetic import SPLITS

            if self.source[len(SYNTHETIC):] not in SPLITS:
                raise ConfigError(f"source {self.source!r}: the synthetic split must be one of {', '.join(SPLITS)}")

    def identity(self) -> dict[str, Any]:
        """The settings every folder of one trace set shares (not ``shard`` or ``limit``)."""
        data = json.loads(json.dumps(asdict(self)))
        for name in ("shard", "limit"):
            data.pop(name)
        # the pictures source's settings only where set, so folders written before they existed resume
        for name, unset in (("questions", None), ("kind", None), ("holdout", 0.0), ("part", "all"), ("experts", "lvlm")):
            if data[name] == unset:
                data.pop(name)
        return data


def trace_items(config: TraceConfig) -> list[TraceItem]:
    """This shard's items: the first ``limit``, then every n-th from the i-th."""
    from redgraph.distill.pictures import PICTURES, picture_items

    index, count = config.shard
    if config.source.startswith(PICTURES):
        chosen = picture_items(config.source[len(PICTURES):], questions_file=config.questions, kind=config.kind,
                               holdout=config.holdout, part=config.part)[: config.limit]
    elif config.source.startswith(SYNTHETIC):
        from redgraph.data.synthetic import generate_items

        split = config.source[len(SYNTHETIC):]
        chosen = [TraceItem(item.question_id, item.question, item.answer, item.kind,
                            {"synthetic": split, "index": number, "seed": config.seed})
                  for number, item in enumerate(generate_items(split, config.limit, seed=config.seed))]
    else:
        from redgraph.eval.datasets import load_dataset

        chosen = [TraceItem(item.question_id, item.prompt, item.answer, item.category, {"image": item.image})
                  for item in load_dataset(config.source, split=config.split)[: config.limit]]
    return chosen[index::count]


def claim_folder(out: Path, config: TraceConfig, teacher=None) -> None:
    """Record ``config`` (and the name of a ``teacher`` object given instead of ``config.teacher``)
    in a new folder; refuse a folder that holds traces of other settings."""
    from redgraph.eval.outputs import claim_folder as claim

    mine = config.identity()
    if teacher is not None:
        mine["teacher"] = f"given:{getattr(teacher, 'model_name', type(teacher).__name__)}"
    claim(out, config, identity=mine, name=CONFIG, holds="traces")


def generate_traces(
    config: TraceConfig,
    out_dir: str | os.PathLike[str],
    *,
    teacher=None,
    critic=None,
    lvlm=None,
    on_progress: Callable[[int, int], None] | None = None,
    items: list[TraceItem] | None = None,
) -> dict[str, Any]:
    """Write (or resume) the traces of ``config``'s items into ``out_dir``.

    Args:
        teacher: a reasoner (``write`` and ``complete``, as every redgraph reasoner has); None
            builds the one ``config.teacher`` names.
        critic: a critic (``review``); None: the local critic on ``lvlm``, with ``config.experts``.
        lvlm: the local model; None loads ``config.model``.
        on_progress: called with ``(items done, items)`` after each item.
        items: ``trace_items(config)``, where the caller has made them already.

    Returns:
        ``{"items": ..., "traces": ..., "written": ...}`` (written: traces made by this call).
    """
    from redgraph.data.jsonl import read_jsonl

    out = Path(out_dir)
    claim_folder(out, config, teacher)
    items = trace_items(config) if items is None else items
    path = out / TRACES
    done = {record["question_id"] for _, record in read_jsonl(path, drop_cut_tail=True)} if path.exists() else set()
    todo = [item for item in items if item.question_id not in done]
    written = 0
    if todo:
        if lvlm is None and (teacher is None and config.teacher == "local" or critic is None):
            from redgraph.models.loading import load_lvlm

            lvlm = load_lvlm(config.model)
        teacher = teacher if teacher is not None else make_teacher(config, lvlm)
        if critic is None:
            from redgraph.agents.critic import LocalCritic
            from redgraph.agents.experts import make_experts

            critic = LocalCritic(lvlm, scoring=config.critic_scoring, experts=make_experts(config.experts))
        with open(path, "a", encoding="utf-8") as handle:
            for count, item in enumerate(todo, len(items) - len(todo) + 1):
                records = item_traces(item, config, teacher, critic)
                handle.write("".join(json.dumps(r) + "\n" for r in records))
                handle.flush()
                written += len(records)
                if on_progress is not None:
                    on_progress(count, len(items))
    elif on_progress is not None:
        on_progress(len(items), len(items))
    total = sum(1 for _ in read_jsonl(path)) if path.exists() else 0
    return {"folder": str(out), "items": len(items), "traces": total, "written": written}


def make_teacher(config: TraceConfig, lvlm):
    if config.teacher == "local":
        from redgraph.agents.reasoner import LocalReasoner

        return LocalReasoner(lvlm, styles=config.styles, max_new_tokens=config.max_new_tokens)
    from redgraph.agents.remote import OpenAIReasoner

    return OpenAIReasoner(config.teacher.split(":", 1)[1], base_url=config.base_url, styles=config.styles,
                          max_new_tokens=config.max_new_tokens)


def item_traces(item: TraceItem, config: TraceConfig, teacher, critic) -> list[dict]:
    """The item's traces: the teacher's rationale per style and sample, its answer from each, and the
    critic's support of each rationale's claims."""
    from redgraph.models.prompts import PromptFormat

    picture = item.image()
    rationales = teacher.write(picture, item.question, k=len(config.styles) * config.per_style)
    answers = []
    for rationale in rationales:
        text = rationale.text.strip()
        answers.append(teacher.complete(PromptFormat().with_rationale.format(rationale=text, question=item.question),
                                        picture).strip() if text else "")
    written = [i for i, r in enumerate(rationales) if r.text.strip()]
    reviews = dict(zip(written, critic.review(picture, item.question, [rationales[i].text for i in written]).reviews)) \
        if written else {}
    records = []
    for number, (rationale, answer) in enumerate(zip(rationales, answers)):
        review = reviews.get(number)
        records.append({
            "question_id": item.question_id, "question": item.question, "gold_answer": item.gold_answer,
            "kind": item.kind, "item": item.ref, "style": rationale.style, "sample": number // len(config.styles),
            "sampled": rationale.sampled, "teacher": rationale.model, "analysis": rationale.analysis,
            "rationale": rationale.text, "answer": answer,
            "support": None if review is None else review.support,
            "status": None if review is None else review.status,
            "claims": [] if review is None else [_claim(c) for c in review.claims],
            "injections": 0 if review is None else len(review.injections),
        })
    return records


def _claim(check) -> dict:
    """A claim as a trace record keeps it; with experts beside the critic's own eyes, also what each of
    them read for each of the claim's questions (``readings``: its own answer, and whether it counts)."""
    claim = {"text": check.text, "support": round(check.support, 4), "method": check.method, "status": check.status}
    readings = [{"expert": r.expert, "question": check.probes[r.probe].question, "answer": r.answer, "sure": r.sure}
                for r in check.experts if r.expert != "lvlm" and r.probe < len(check.probes)]
    if readings:
        claim["readings"] = readings
    return claim


def read_traces(folders: list[str | os.PathLike[str]]) -> tuple[list[dict], dict[str, Any]]:
    """The trace records of one or more folders (shards of one trace set) and their shared settings.

    Raises:
        InputError: a folder holds no traces, or the folders hold traces of different settings.
    """
    from redgraph.data.jsonl import read_jsonl

    if not folders:
        raise InputError("give at least one trace folder (written by `redgraph distill traces`)")
    records: list[dict] = []
    identity = None
    seen: set[str] = set()
    for folder in folders:
        config_path, path = Path(folder) / CONFIG, Path(folder) / TRACES
        if not config_path.is_file() or not path.is_file():
            raise InputError(f"{os.fspath(folder)!r} is not a trace folder: it needs {CONFIG} and {TRACES} "
                             "(written by `redgraph distill traces`)")
        mine = json.loads(config_path.read_text(encoding="utf-8"))["identity"]
        if identity is not None and mine != identity:
            raise InputError(f"{os.fspath(folder)!r} holds traces of other settings than {os.fspath(folders[0])!r}; "
                             "read together only shards of one trace set")
        identity = mine
        for _, record in read_jsonl(path):
            key = f"{record['question_id']}|{record['style']}|{record['sample']}"
            if key not in seen:  # a shard folder given twice, or overlapping shards, counts once
                seen.add(key)
                records.append(record)
    return records, identity


def iter_items(records: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    """``(question_id, its traces)`` in the order the items first appear."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["question_id"], []).append(record)
    yield from groups.items()

"""One command from a folder of a user's own unlabelled pictures to an SDRT adapter and a report of
what it changed (``redgraph distill adapt``).

1. The folder's pictures are split by name (:func:`redgraph.distill.pictures.held_out`): a
   ``holdout`` share is kept out of adaptation to measure on.
2. The model writes traces of the others (``traces/``: per question, one per style and sample,
   with the critic's support), weighed without labels (:mod:`redgraph.distill.weights`), and an
   adapter is distilled from them (``adapter/``); the base weights stay as they are.
3. The base model and the adapted one each write traces of the held-out pictures
   (``heldout-base/``, ``heldout-adapted/``), checked by the same critic, the base model's. The
   report gives, for each and for the change, with 95% intervals (bootstrap over questions,
   paired for the change): self-agreement (the share of a question's traces that give its
   most common answer), the critic's support (from the claims it was sure of) and the share of
   traces with no claim it was sure of. With a labelled check set (``check``: a dataset as
   ``redgraph eval`` reads), also accuracy there, base and adapted (Wilson intervals).

Every stage resumes: traces already written are kept, a finished adapter is loaded instead of
trained again, and a training run cut short goes on from its last save (every 25 steps).
``report.json`` is written last.

Example:
    >>> report = adapt(AdaptConfig(pictures="my_charts", kind="bars"), "runs/adapt")  # doctest: +SKIP
    >>> report["heldout"]["change"]["self_agreement"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from redgraph.errors import ConfigError, RedgraphError, check_whole_number

REPORT = "report.json"
BOOTSTRAP = 2000  # resamples behind each interval


@dataclass(frozen=True)
class AdaptConfig:
    """What ``adapt`` does (see the module).

    Attributes:
        pictures: the folder of pictures (images, PDF and TIFF documents).
        questions, kind: what to ask of them (see :mod:`redgraph.distill.pictures`).
        holdout: the share of pictures kept out of adaptation, to measure on.
        styles, per_style, max_new_tokens, critic_scoring: the traces' settings
            (:class:`redgraph.distill.traces.TraceConfig`).
        limit: at most this many questions to adapt on (and as many held out).
        model: the local model adapted (and the critic); None: the embedded model.
        experts: the critic's experts (``"lvlm"``, or ``"lvlm,ocr"``: the OCR expert beside the model's
            own eyes, :mod:`redgraph.agents.experts`), on the adapted pictures and the held-out ones.
        check: a labelled check set (a dataset folder or file); ``check_limit`` of its items.
        distill: the adapter's training (:class:`redgraph.distill.student.DistillConfig`).
        seed: seeds the bootstrap.
    """

    pictures: str
    questions: str | None = None
    kind: str | None = None
    holdout: float = 0.2
    styles: tuple[str, ...] = ("facts",)
    per_style: int = 4
    max_new_tokens: int = 64
    critic_scoring: str = "probes"
    limit: int = 5000
    model: str | None = None
    experts: str = "lvlm"
    check: str | None = None
    check_limit: int = 200
    distill: Any = None  # DistillConfig; None: its defaults
    seed: int = 0

    def __post_init__(self) -> None:
        from redgraph.distill.student import DistillConfig

        if self.distill is None:
            object.__setattr__(self, "distill", DistillConfig())
        if not 0 < self.holdout < 1 or isinstance(self.holdout, bool):
            raise ConfigError(f"holdout must be a share above 0 and below 1 (the pictures measured on), "
                              f"got {self.holdout!r}")
        if self.distill.targets != "traces":
            raise ConfigError("adapting to unlabelled pictures learns from traces; its pictures have no gold answers")
        check_whole_number("check_limit", self.check_limit)
        from redgraph.agents.experts import parse_experts

        object.__setattr__(self, "experts", ",".join(parse_experts(self.experts)))
        self.traces("adapt")  # checks the trace settings before anything runs

    def traces(self, part: str):
        """The trace settings of ``part`` ("adapt" or "heldout") of the pictures."""
        from redgraph.distill.traces import TraceConfig

        return TraceConfig(source=f"pictures:{self.pictures}", questions=self.questions, kind=self.kind,
                           holdout=self.holdout, part=part, limit=self.limit, styles=tuple(self.styles),
                           per_style=self.per_style, model=self.model, max_new_tokens=self.max_new_tokens,
                           critic_scoring=self.critic_scoring, experts=self.experts)


Stage = Callable[[str, int, int], None]  # (stage, done, total)


def adapt(config: AdaptConfig, out_dir: str | os.PathLike[str], *, lvlm=None, on_stage: Stage | None = None
          ) -> dict[str, Any]:
    """Adapt ``config.model`` (or ``lvlm``) to ``config.pictures`` and report (see the module).

    Returns:
        The report, also written to ``out_dir/report.json``.

    Raises:
        InputError: as the pictures, questions or check set are refused, or no trace survives the
            weighting (the report of what was dropped and why is then in the message).
    """
    from redgraph.agents.critic import LocalCritic
    from redgraph.distill.student import distill
    from redgraph.distill.traces import generate_traces, make_teacher, read_traces, trace_items
    from redgraph.errors import InputError
    from redgraph.models import load_lvlm
    from redgraph.models.adapter import ADAPTER_CONFIG, load_adapter

    out = Path(out_dir)

    def progress(stage: str):
        return None if on_stage is None else (lambda done, total: on_stage(stage, done, total))

    # each part's items once: listing the folder opens every document to count its pages
    items = {part: trace_items(config.traces(part)) for part in ("adapt", "heldout")}
    for part in ("adapt", "heldout"):
        if not items[part]:
            raise InputError(f"no picture of {config.pictures!r} falls in the {'held-out' if part == 'heldout' else 'adapted'} "
                             f"share (holdout {config.holdout}; the split goes by file name): "
                             + ("raise --holdout" if part == "heldout" else "lower --holdout") + " or add pictures")
    out.mkdir(parents=True, exist_ok=True)
    base = lvlm if lvlm is not None else load_lvlm(config.model)
    from redgraph.agents.experts import make_experts

    critic = LocalCritic(base, scoring=config.critic_scoring, experts=make_experts(config.experts))
    adapting = config.traces("adapt")
    generate_traces(adapting, out / "traces", lvlm=base, critic=critic, on_progress=progress("traces"),
                    items=items["adapt"])
    records, identity = read_traces([out / "traces"])
    adapted = copy_lvlm(base)
    folder = out / "adapter"
    if (folder / ADAPTER_CONFIG).is_file():
        manifest = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("manifest", {})
        saved, wanted = manifest.get("config") or {}, json.loads(json.dumps(asdict(config.distill)))
        if wanted["precision"] == "auto":  # the run decided it for its machine
            wanted["precision"] = saved.get("precision")
        if _as_written_now(saved) != wanted:
            raise InputError(f"{os.fspath(folder)!r} holds an adapter trained with other settings "
                             f"({manifest.get('command', 'unknown')}); use a new output folder, or the same settings")
        load_adapter(adapted, folder)
        adapted.adapter_path = os.fspath(folder)
    else:
        steps = config.distill.steps
        _, manifest = distill(adapted, records, config.distill, out_dir=folder,
                              extra={"traces": [os.fspath(out / "traces")], "traces_settings": identity},
                              on_progress=None if on_stage is None else lambda step, _: on_stage("adapter", step, steps))
    heldout = config.traces("heldout")
    generate_traces(heldout, out / "heldout-base", lvlm=base, critic=critic, on_progress=progress("held out, base"),
                    items=items["heldout"])
    generate_traces(heldout, out / "heldout-adapted", teacher=make_teacher(heldout, adapted), critic=critic,
                    lvlm=base, on_progress=progress("held out, adapted"), items=items["heldout"])
    before, _ = read_traces([out / "heldout-base"])
    after, _ = read_traces([out / "heldout-adapted"])
    report: dict[str, Any] = {
        "settings": json.loads(json.dumps(asdict(config), default=str)),
        "pictures": {"adapt_questions": len({r["question_id"] for r in records}), "adapt_traces": len(records),
                     "heldout_questions": len({r["question_id"] for r in before})},
        "weighting": manifest.get("weighting"),
        "adapter": os.fspath(folder),
        "heldout": compare(before, after, seed=config.seed),
    }
    if config.check is not None:
        from redgraph.distill.traces import TraceConfig

        checking = TraceConfig(source=config.check, limit=config.check_limit, styles=tuple(config.styles[:1]),
                               per_style=1, model=config.model, max_new_tokens=config.max_new_tokens,
                               critic_scoring=config.critic_scoring, experts=config.experts)
        generate_traces(checking, out / "check-base", lvlm=base, critic=critic, on_progress=progress("check, base"))
        generate_traces(checking, out / "check-adapted", teacher=make_teacher(checking, adapted), critic=critic,
                        lvlm=base, on_progress=progress("check, adapted"))
        report["check"] = check_accuracy(read_traces([out / "check-base"])[0], read_traces([out / "check-adapted"])[0],
                                         seed=config.seed)
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _as_written_now(saved: dict) -> dict:
    """A saved distillation config as this version writes it: settings added since it was saved take
    their defaults. One that is not a config of ours is returned as it is (it differs, and is reported so)."""
    from redgraph.distill.student import DistillConfig
    from redgraph.distill.weights import WeightConfig
    from redgraph.models.adapter import AdapterConfig

    try:
        config = DistillConfig(**{**saved, "adapter": AdapterConfig(**saved["adapter"]),
                                  "weighting": WeightConfig(**saved["weighting"])})
    except (TypeError, KeyError, RedgraphError):
        return saved
    return json.loads(json.dumps(asdict(config)))


def copy_lvlm(lvlm):
    """A second copy of ``lvlm`` (its model deep-copied) for an adapter, the base left as it is."""
    import copy

    return replace(lvlm, model=copy.deepcopy(lvlm.model))


@dataclass
class _Question:
    answers: list[str] = field(default_factory=list)
    supports: list[float] = field(default_factory=list)
    unsure: int = 0


def _questions(records: list[dict]) -> dict[str, _Question]:
    from redgraph.distill.weights import sure_support
    from redgraph.eval.normalize import normalize_answer

    questions: dict[str, _Question] = {}
    for record in records:
        mine = questions.setdefault(record["question_id"], _Question())
        if (record.get("answer") or "").strip():
            mine.answers.append(normalize_answer(record["answer"]))
        if (record.get("rationale") or "").strip():
            support = sure_support(record)
            if support is None:
                mine.unsure += 1
            else:
                mine.supports.append(support)
    return questions


def _figures(question: _Question) -> dict[str, float | None]:
    traces = len(question.supports) + question.unsure
    return {
        "self_agreement": max(Counter(question.answers).values()) / len(question.answers) if question.answers else None,
        "support": sum(question.supports) / len(question.supports) if question.supports else None,
        "unsure_share": question.unsure / traces if traces else None,
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _interval(samples: list[float]) -> list[float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return [round(ordered[int(0.025 * (len(ordered) - 1))], 4), round(ordered[int(0.975 * (len(ordered) - 1))], 4)]


def compare(before: list[dict], after: list[dict], *, seed: int = 0) -> dict[str, Any]:
    """Self-agreement, sure support and unsure share of two trace sets of the same questions, each with
    a 95% bootstrap interval over questions, and their change (paired: the same resampled questions)."""
    first, second = _questions(before), _questions(after)
    shared = sorted(set(first) & set(second))
    figures = {name: {q: _figures(group[q]) for q in shared} for name, group in (("base", first), ("adapted", second))}
    rng = random.Random(f"redgraph-adapt:{seed}")
    draws = [[rng.choice(shared) for _ in shared] for _ in range(BOOTSTRAP)] if shared else []
    report: dict[str, Any] = {"questions": len(shared)}
    for name in ("base", "adapted"):
        report[name] = {}
        for figure in ("self_agreement", "support", "unsure_share"):
            values = {q: v[figure] for q, v in figures[name].items() if v[figure] is not None}
            mean = _mean(list(values.values()))
            report[name][figure] = None if mean is None else round(mean, 4)
            report[name][f"{figure}_ci95"] = _interval(
                [m for draw in draws if (m := _mean([values[q] for q in draw if q in values])) is not None])
    report["change"] = {}
    for figure in ("self_agreement", "support", "unsure_share"):
        paired = {q: figures["adapted"][q][figure] - figures["base"][q][figure] for q in shared
                  if figures["adapted"][q][figure] is not None and figures["base"][q][figure] is not None}
        mean = _mean(list(paired.values()))
        report["change"][figure] = None if mean is None else round(mean, 4)
        report["change"][f"{figure}_ci95"] = _interval(
            [m for draw in draws if (m := _mean([paired[q] for q in draw if q in paired])) is not None])
    return report


def check_accuracy(before: list[dict], after: list[dict], *, seed: int = 0) -> dict[str, Any]:
    """Accuracy on a labelled check set, base and adapted (each question's greedy trace against its gold
    answer; Wilson intervals), the paired change with a bootstrap interval, and both per category."""
    from redgraph.eval.normalize import answers_match
    from redgraph.eval.report import wilson_interval

    def hits(records: list[dict]) -> dict[str, int]:
        return {r["question_id"]: int(answers_match(r.get("answer") or "", r["gold_answer"]))
                for r in records if r.get("sample", 0) == 0 and r.get("gold_answer")}

    first, second = hits(before), hits(after)
    shared = sorted(set(first) & set(second))
    if not shared:
        raise ConfigError("the check set's items have no gold answers; give a labelled check set, or leave it out")
    report: dict[str, Any] = {"items": len(shared)}
    for name, hit in (("base", first), ("adapted", second)):
        right = sum(hit[q] for q in shared)
        report[name] = {"accuracy": round(right / len(shared), 4), "ci95": wilson_interval(right, len(shared))}
    rng = random.Random(f"redgraph-adapt-check:{seed}")
    changes = []
    for _ in range(BOOTSTRAP):
        draw = [rng.choice(shared) for _ in shared]
        changes.append(sum(second[q] - first[q] for q in draw) / len(draw))
    report["change"] = round(report["adapted"]["accuracy"] - report["base"]["accuracy"], 4)
    report["change_ci95"] = _interval(changes)
    kinds = {r["question_id"]: r.get("kind") or "all" for r in before}
    report["per_kind"] = {}
    for kind in sorted({kinds[q] for q in shared}):
        mine = [q for q in shared if kinds[q] == kind]
        report["per_kind"][kind] = {"items": len(mine), "base": round(sum(first[q] for q in mine) / len(mine), 4),
                                    "adapted": round(sum(second[q] for q in mine) / len(mine), 4)}
    return report

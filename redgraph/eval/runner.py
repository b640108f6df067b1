"""``redgraph eval``: answer a dataset in several modes with several rationale sources, resumably.

Modes:
    ``direct``: the image and question only (greedy).
    ``cot``: image + rationale + question in one sequence (plain multimodal chain of thought).
    ``red``: RED, image branch + lambda x rationale branch, for every lambda in ``lambdas``.
    ``red_multi``: RED over the rationales of all chosen sources at once (equal shares of lambda).
    ``graph``: the whole graph (critic, revision, policy); the reasoner is the local one for
        ``self`` and otherwise returns the source's rationale every round.
    ``critic``: the local critic scores each labelled claim (synthetic data), for precision/recall.

Rationale sources: ``self`` (the local reasoner, written once per item and kept in
``rationales.self.jsonl``), ``gold`` and ``misleading`` (from the data), ``irrelevant`` (the data's
irrelevant rationale, else the next item's gold one), ``lying`` (misleading for half the items,
chosen by question id, gold for the rest), and ``file:PATH`` (JSONL of ``question_id`` +
``rationale``, e.g. GPT-4 rationales written elsewhere).

Every answer is one line of ``predictions.jsonl``, written as soon as it exists; running again on
the same folder skips what is there, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redgraph.data.jsonl import read_jsonl
from redgraph.errors import ConfigError, InputError
from redgraph.eval.datasets import EvalItem
from redgraph.eval.outputs import PREDICTIONS, claim_folder, read_records, write_outputs
from redgraph.eval.plan import MODES, SOURCES, EvalConfig, Unit, plan, record_key, select_items


class Rationales:
    """Each item's rationale from each source; self-written ones are kept in the output folder."""

    def __init__(self, items: list[EvalItem], all_items: list[EvalItem], config: EvalConfig, out: Path, lvlm) -> None:
        self.config, self.lvlm = config, lvlm
        # For ``irrelevant`` without the data's own: the next item's gold rationale, in dataset order.
        self.next_item = {item.question_id: all_items[(i + 1) % len(all_items)] for i, item in enumerate(all_items)}
        self.files: dict[str, dict[str, str]] = {}
        for source in config.sources:
            if source.startswith("file:"):
                self.files[source] = _read_rationale_file(source[5:], [i.question_id for i in items])
        self.self_path = out / "rationales.self.jsonl"
        self.written = {r["question_id"]: r["rationale"] for r in read_records(self.self_path)}
        self._reasoner = None
        for source in config.sources:
            self._check_available(source, items)

    def _check_available(self, source: str, items: list[EvalItem]) -> None:
        need = {"gold": ("gold_rationale",), "misleading": ("misleading_rationale",),
                "lying": ("gold_rationale", "misleading_rationale")}.get(source, ())
        if source == "irrelevant" and not all(i.irrelevant_rationale for i in items):
            need = ("gold_rationale",)
        for attribute in need:
            missing = [i.question_id for i in items if not getattr(i, attribute)]
            if missing:
                raise InputError(f"rationale source {source!r} needs {attribute} on every item; {len(missing)} items lack "
                                 f"it (first: {missing[0]!r}); use another source or a file:PATH of rationales")

    def get(self, item: EvalItem, source: str) -> str:
        if source == "gold":
            return item.gold_rationale
        if source == "misleading":
            return item.misleading_rationale
        if source == "lying":
            return item.misleading_rationale if lies(item) else item.gold_rationale
        if source == "irrelevant":
            if item.irrelevant_rationale:
                return item.irrelevant_rationale
            return self.next_item[item.question_id].gold_rationale
        if source.startswith("file:"):
            return self.files[source][item.question_id]
        if source == "self":
            if item.question_id not in self.written:
                text = self._write(item)
                with open(self.self_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"question_id": item.question_id, "rationale": text}) + "\n")
                self.written[item.question_id] = text
            return self.written[item.question_id]
        raise ConfigError(f"unknown rationale source {source!r}")

    def _write(self, item: EvalItem) -> str:
        from redgraph.agents.reasoner import LocalReasoner

        if self._reasoner is None:
            self._reasoner = LocalReasoner(self.lvlm)
        [rationale] = self._reasoner.write(image_of(item), item.prompt, 1)
        return rationale.text if rationale.text.strip() else "(the reasoner wrote nothing)"


def lies(item: EvalItem) -> bool:
    """Whether the ``lying`` source gives this item the misleading rationale (half the items, by id)."""
    return hashlib.sha256(item.question_id.encode()).digest()[0] % 2 == 0


def image_of(item: EvalItem):
    """The item's image, or a blank white one for a text-only multiple-choice question."""
    if item.image is not None:
        return item.image
    from PIL import Image

    return Image.new("RGB", (224, 224), "white")


def run_eval(
    config: EvalConfig,
    out_dir: str | os.PathLike[str],
    *,
    lvlm=None,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the evaluation into ``out_dir`` and return the summary (also written there).

    Args:
        config: what to run.
        out_dir: the output folder; a folder with a run of other settings is refused.
        lvlm: a loaded model; None loads ``config.model`` (the embedded model when None) on ``device``.
        on_progress: called with ``(done, total)`` after each answer.
    """
    from redgraph.eval.datasets import load_dataset
    from redgraph.eval.report import pyplot

    pyplot()  # before hours of work, not after
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim_folder(out, config)
    all_items = load_dataset(config.dataset, split=config.split)
    items = select_items(all_items, config)
    if "critic" in config.modes and not any(item.claims for item in items):
        raise InputError(f"mode 'critic' needs labelled claims, and {config.dataset} has none; "
                         "use a `redgraph data export` folder or leave the mode out")
    done = {record["key"] for record in read_records(out / PREDICTIONS)}
    units = [u for u in plan(items, config) if u.key not in done]
    total = len(units) + len(done)
    if units:
        if lvlm is None:
            from redgraph.models.loading import load_lvlm

            lvlm = load_lvlm(config.model, device=device)
        rationales = Rationales(items, all_items, config, out, lvlm)
        with open(out / PREDICTIONS, "a", encoding="utf-8") as handle:
            for count, unit in enumerate(units, len(done) + 1):
                record = answer_unit(unit, config, lvlm, rationales, out)
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                if on_progress is not None:
                    on_progress(count, total)
    elif on_progress is not None:
        on_progress(total, total)
    return write_outputs(out)


def answer_unit(unit: Unit, config: EvalConfig, lvlm, rationales: Rationales, out: Path) -> dict[str, Any]:
    """Produce one prediction record."""
    from redgraph.decoding import REDConfig, REDDecoder

    item, started = unit.item, time.perf_counter()
    record: dict[str, Any] = {"key": unit.key, "question_id": item.question_id, "category": item.category,
                              "mode": unit.mode, "source": unit.source, "lambda": unit.weight, "answer": item.answer,
                              "blank_image": item.image is None}
    image, question = image_of(item), item.prompt
    if unit.mode == "critic":
        from redgraph.agents.critic import LocalCritic

        critic = LocalCritic(lvlm, accept_at=config.critic_accept_at, scoring=config.critic_scoring)
        checks = critic.score_claims(image, [text for text, _ in item.claims])
        record["claims"] = [{"text": text, "label": label, "support": c.support, "flagged": not c.supported,
                             "status": c.status, "method": c.method, "probes": c.to_dict()["probes"]}
                            for (text, label), c in zip(item.claims, checks)]
        record["seconds"] = round(time.perf_counter() - started, 4)
        return record
    texts: list[str] = []
    if unit.mode == "direct":
        result = REDDecoder(lvlm, REDConfig(rationale_weight=0.0, max_new_tokens=config.max_new_tokens)).decode(image, question)
        prediction = result.text
    elif unit.mode == "cot":
        from redgraph.decoding.generate import generate_text
        from redgraph.models.prompts import cot_text

        texts = [rationales.get(item, unit.source)]
        [prediction] = generate_text(lvlm, [cot_text(lvlm.processor, texts[0], question)], [image], config.max_new_tokens)
    elif unit.mode in ("red", "red_multi"):
        sources = unit.source.split("+") if unit.mode == "red_multi" else [unit.source]
        texts = [rationales.get(item, s) for s in sources]
        decoder = REDDecoder(lvlm, REDConfig(rationale_weight=unit.weight, max_new_tokens=config.max_new_tokens))
        result = decoder.decode(image, question, texts)
        prediction = result.text
        record.update(rationale_dependence=result.rationale_dependence, changed_tokens=result.changed_tokens)
    else:  # graph
        prediction, texts = _graph_answer(unit, config, lvlm, rationales, out, record)
    prediction = prediction.strip()
    record.update(prediction=prediction, correct=item.accepts(prediction), rationales=texts,
                  seconds=round(time.perf_counter() - started, 4))
    if unit.source in ("misleading", "lying") and item.misleading_answer is not None:
        from redgraph.eval.normalize import answers_match

        record["follows_misleading"] = answers_match(prediction, item.misleading_answer)
    return record


def _graph_answer(unit: Unit, config: EvalConfig, lvlm, rationales: Rationales, out: Path,
                  record: dict) -> tuple[str, list[str]]:
    """The graph's answer and the rationales it ended with; its verdict, outcome and trace go into ``record``."""
    from redgraph.agents.reasoner import LocalReasoner
    from redgraph.agents.scripted import ScriptedReasoner
    from redgraph.graphs.context import make_context
    from redgraph.graphs.run import ask

    item = unit.item
    if unit.source == "self":
        reasoner = LocalReasoner(lvlm)
    else:
        reasoner = ScriptedReasoner([rationales.get(item, unit.source)], name=f"eval-{unit.source}")
    # The graph's own policies (make_context's defaults): the figures are what a user gets.
    context = make_context(lvlm, reasoner=reasoner, accept_at=config.critic_accept_at,
                           critic_scoring=config.critic_scoring, rationale_weight=unit.weight, rounds=config.rounds,
                           max_new_tokens=config.max_new_tokens)
    safe = hashlib.sha256(unit.key.encode()).hexdigest()[:16]
    result = ask(image_of(item), item.prompt, context, checkpoint="memory", trace_path=out / "traces" / f"{safe}.json")
    record.update(verdict=result.verdict, outcome=result.outcome, flags=result.flags,
                  supports=[r["support"] for r in result.rationales], trace=f"traces/{safe}.json",
                  rationale_dependence=(result.state.get("answer") or {}).get("rationale_dependence"))
    return result.answer or "", [r["text"] for r in result.rationales]


def _read_rationale_file(path: str, wanted: list[str]) -> dict[str, str]:
    if not Path(path).exists():
        raise InputError(f"rationale file {path!r} does not exist")
    found: dict[str, str] = {}
    for _, record in read_jsonl(path):
        text = record.get("rationale", record.get("text"))
        if "question_id" not in record or not isinstance(text, str):
            raise InputError(f"{path}: each line needs question_id and rationale (or text); got {sorted(record)}")
        found[str(record["question_id"])] = text
    missing = [q for q in wanted if q not in found]
    if missing:
        raise InputError(f"{path} has no rationale for {len(missing)} items (first: {missing[0]!r})")
    return found


__all__ = ["MODES", "SOURCES", "EvalConfig", "Unit", "answer_unit", "lies", "plan", "record_key", "run_eval",
           "select_items"]

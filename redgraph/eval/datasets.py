"""Evaluation data read from a folder (or one file), in three formats, into one item type.

- **GQA-style JSONL**: one object per line with ``question_id``, ``image`` (relative to the file),
  ``text`` (the question), ``answer`` and optionally ``category`` (the format the RED authors use).
- **Multiple choice, ScienceQA-style**: JSONL lines (or a ``problems.json`` object keyed by id)
  with ``question``, ``choices``, ``answer`` (the index of the right choice) and an optional
  ``image``. Questions without an image are answered about a blank white image (recorded as such).
- **redgraph's synthetic exports** (``redgraph data export``): GQA-style lines that also carry
  gold, misleading and irrelevant rationales, the misleading rationale's answer, and labelled claims.

A folder with several ``{split}.jsonl`` files needs ``split``; a folder with one data file does not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from redgraph.data.jsonl import read_jsonl
from redgraph.errors import InputError

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class EvalItem:
    """One question to evaluate. ``image`` is None for a text-only multiple-choice question."""

    question_id: str
    question: str
    answer: str
    image: str | None
    category: str = "all"
    choices: tuple[str, ...] | None = None
    gold_rationale: str | None = None
    misleading_rationale: str | None = None
    misleading_answer: str | None = None
    irrelevant_rationale: str | None = None
    claims: tuple[tuple[str, bool], ...] = field(default=())

    @property
    def prompt(self) -> str:
        """The question as the model reads it: with lettered options for multiple choice."""
        if not self.choices:
            return self.question
        options = " ".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(self.choices))
        return f"{self.question}\nOptions: {options}\nAnswer with the option's text."

    def accepts(self, prediction: str) -> bool:
        """Whether ``prediction`` is right: GQA-style normalised match; for multiple choice, the right
        option's text or letter."""
        from redgraph.eval.normalize import answers_match, normalize_answer

        if answers_match(prediction, self.answer):
            return True
        if self.choices:
            letter = LETTERS[self.choices.index(self.answer)].lower()
            return normalize_answer(prediction).strip("() ") == letter
        return False


def load_dataset(source: str | os.PathLike[str], *, split: str | None = None) -> list[EvalItem]:
    """Items from a data file or a folder (see the module's description for the formats)."""
    path = Path(source)
    if not path.exists():
        raise InputError(f"dataset {str(source)!r} does not exist; pass a folder or a .jsonl / problems.json file")
    if path.is_dir():
        path = _pick_file(path, split)
    elif split is not None and path.suffix == ".jsonl" and path.stem != split:
        raise InputError(f"split {split!r} was asked for, but {path.name} is a single file; leave out --split")
    records = _read_records(path, split)
    if not records:
        raise InputError(f"{path} holds no items" + (f" of split {split!r}" if split else ""))
    items = [_item(record, path.parent, where=f"{path}:{number}") for number, record in records]
    seen: set[str] = set()
    for item in items:
        if item.question_id in seen:
            raise InputError(f"question_id {item.question_id!r} appears twice in {path}; ids must be unique")
        seen.add(item.question_id)
    return items


def _pick_file(folder: Path, split: str | None) -> Path:
    if (folder / "problems.json").exists():
        return folder / "problems.json"
    files = sorted(folder.glob("*.jsonl"))
    if split is not None:
        chosen = folder / f"{split}.jsonl"
        if not chosen.exists():
            raise InputError(f"{folder} has no {split}.jsonl; it has {', '.join(f.name for f in files) or 'no .jsonl file'}")
        return chosen
    if len(files) == 1:
        return files[0]
    if not files:
        raise InputError(f"{folder} has no .jsonl file or problems.json; point at the data folder")
    raise InputError(f"{folder} has several data files ({', '.join(f.name for f in files)}); choose one with --split")


def _read_records(path: Path, split: str | None) -> list[tuple[int, dict]]:
    if path.name == "problems.json":
        try:
            problems = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(problems, dict):
            raise InputError(f"{path} must be an object keyed by question id, got {type(problems).__name__}")
        rows = [{"question_id": key, **value} for key, value in problems.items()]
        return [(n, r) for n, r in enumerate(rows, 1) if split is None or r.get("split") == split]
    return read_jsonl(path)


def _item(record: dict, root: Path, *, where: str) -> EvalItem:
    def need(*names: str):
        for name in names:
            if record.get(name) is not None:
                return record[name]
        raise InputError(f"{where}: missing {' or '.join(repr(n) for n in names)}; keys are {sorted(record)}")

    question_id = str(need("question_id", "id", "pid"))
    image = record.get("image")
    image_path = None
    if image:
        image_path = str(image if os.path.isabs(image) else root / image)
        if not os.path.exists(image_path):
            raise InputError(f"{where}: image {image!r} not found (looked for {image_path})")
    if "choices" in record:
        choices = need("choices")
        answer_index = need("answer")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise InputError(f"{where}: choices must be a non-empty list of texts, got {choices!r}")
        if isinstance(answer_index, bool) or not isinstance(answer_index, int) or not 0 <= answer_index < len(choices):
            raise InputError(f"{where}: answer must be the index of the right choice (0 to {len(choices) - 1}), "
                             f"got {answer_index!r}")
        return EvalItem(question_id, str(need("question", "text")), choices[answer_index], image_path,
                        str(record.get("category") or record.get("subject") or "all"), tuple(choices))
    if not image_path:
        raise InputError(f"{where}: a GQA-style item needs an image; only multiple-choice items may go without")
    claims = tuple((str(c["text"]), bool(c["label"])) for c in record.get("claims") or [])
    return EvalItem(
        question_id, str(need("text", "question")), str(need("answer")), image_path, str(record.get("category") or "all"),
        gold_rationale=record.get("gold_rationale"), misleading_rationale=record.get("misleading_rationale"),
        misleading_answer=record.get("misleading_answer"), irrelevant_rationale=record.get("irrelevant_rationale"),
        claims=claims,
    )

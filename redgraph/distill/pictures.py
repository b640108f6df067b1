"""SDRT items from a user's own pictures, without labels: a folder of images (and PDF or TIFF
documents, one item set per page) and the questions to ask of them.

The questions come from a questions file the user gives, from the model's own question templates
for a kind of picture, or from both:

- a ``.txt`` file: one question per line, asked of every picture (blank lines and lines starting
  with ``#`` are skipped);
- a ``.jsonl`` file: ``{"question": ...}`` asked of every picture, or
  ``{"question": ..., "image": "scans/a.png"}`` (the path inside the folder, ``/``-separated) asked
  of that picture only; ``"page": N`` narrows it to a document's page;
- ``kind``: the questions the embedded model was trained to answer about every picture of that
  kind without knowing what it holds (bars: the tallest and the shortest bar; documents: the
  title; shapes: how many of each shape). Questions that name a thing in the picture (a bar's
  colour, a field's name) cannot be made without knowing the picture, so they come from the file.

No answer is read anywhere: an item's ``gold_answer`` is None, and SDRT weighs its traces by
agreement across styles and samples and by the critic's support (:mod:`redgraph.distill.weights`).

Example:
    >>> items = picture_items("my_charts", kind="bars")  # doctest: +SKIP
    >>> items[0].question, items[0].ref  # doctest: +SKIP
    ('Which bar is the tallest?', {'image': 'my_charts/q1.png', 'page': None})
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from redgraph.data import questions
from redgraph.data.scenes import SHAPES
from redgraph.errors import InputError

PICTURES = "pictures:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
DOCUMENT_SUFFIXES = (".pdf", ".tif", ".tiff")
MAX_PAGES = 20  # pages of one document made into items; a longer one is refused (split it)
PARTS = ("all", "adapt", "heldout")
KIND_QUESTIONS = {
    "bars": (questions.bar_extreme("tallest"), questions.bar_extreme("shortest")),
    "document": (questions.title(),),
    "shapes": tuple(questions.count_shape(shape) for shape in SHAPES),
}


def picture_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images and documents in ``folder`` and its subfolders, by path (hidden files left out).

    Raises:
        InputError: the folder does not exist or holds no picture.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"pictures folder {os.fspath(folder)!r} is not a folder; give the folder that holds the "
                         "images (pictures:DIR)")
    suffixes = IMAGE_SUFFIXES + DOCUMENT_SUFFIXES
    found = sorted(path for path in root.rglob("*")
                   if path.is_file() and path.suffix.lower() in suffixes
                   and not any(part.startswith(".") for part in path.relative_to(root).parts))
    if not found:
        raise InputError(f"pictures folder {os.fspath(folder)!r} holds no picture; redgraph reads "
                         f"{', '.join(suffixes)} files")
    return found


def read_questions(path: str | os.PathLike[str]) -> list[tuple[str | None, int | None, str]]:
    """``(image or None, page or None, question)`` for each question of a questions file (see the module).

    Raises:
        InputError: the file is missing, of another type, or a line is not a question; naming the line.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"questions file {os.fspath(path)!r} does not exist; give a .txt or .jsonl file")
    if file.suffix.lower() not in (".txt", ".jsonl"):
        raise InputError(f"questions file {os.fspath(path)!r} must be .txt (a question a line) or .jsonl "
                         '({"question": ..., "image": ...} a line)')
    asked: list[tuple[str | None, int | None, str]] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or file.suffix.lower() == ".txt" and line.lstrip().startswith("#"):
            continue
        where = f"{os.fspath(path)}:{number}"
        if file.suffix.lower() == ".txt":
            asked.append((None, None, line.strip()))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not JSON ({exc.msg}); write one object a line") from None
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not record["question"].strip():
            raise InputError(f'{where}: a line needs "question", a non-empty string; got {line.strip()[:80]!r}')
        image, page = record.get("image"), record.get("page")
        if image is not None and not (isinstance(image, str) and image.strip()):
            raise InputError(f'{where}: "image" must be the picture\'s path inside the folder, got {image!r:.60}')
        if page is not None and (isinstance(page, bool) or not isinstance(page, int) or page < 1 or image is None):
            raise InputError(f'{where}: "page" must be a page number from 1, with "image" naming the document; '
                             f"got {page!r:.40}")
        asked.append((image, page, record["question"].strip()))
    if not asked:
        raise InputError(f"questions file {os.fspath(path)!r} holds no question")
    return asked


def _pages(path: Path) -> list[int | None]:
    if path.suffix.lower() not in DOCUMENT_SUFFIXES:
        return [None]
    from redgraph.models.documents import open_document

    with open_document(path.read_bytes(), f"document {os.fspath(path)!r}") as document:
        pages = document.pages
    if pages > MAX_PAGES:
        raise InputError(f"document {os.fspath(path)!r} has {pages} pages; SDRT takes at most {MAX_PAGES} of one "
                         "document: split it, or keep the pages you want in the folder")
    return list(range(1, pages + 1))


def held_out(name: str, share: float) -> bool:
    """Whether the picture at ``name`` (its path inside the folder) is among the ``share`` of a folder's
    pictures kept out of adaptation to measure on: decided by the name alone, so the split is the
    same in every run and a picture's pages stay together."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") / 2 ** 64 < share


def picture_items(folder: str | os.PathLike[str], *, questions_file: str | os.PathLike[str] | None = None,
                  kind: str | None = None, holdout: float = 0.0, part: str = "all") -> list:
    """The items of a pictures folder: every picture (a document's every page) with its questions;
    ``part`` "adapt" or "heldout" keeps the pictures outside or inside the ``holdout`` share
    (:func:`held_out`), "all" every picture.

    Returns:
        :class:`redgraph.distill.items.TraceItem` s with no gold answer, in file, page and question
        order; an item's id names its file, page and question, so it stays the same across runs.

    Raises:
        InputError: no questions asked (give ``questions_file`` or ``kind``), an unknown kind, or a
            question naming a picture the folder does not hold.
    """
    from redgraph.distill.items import TraceItem

    if questions_file is None and kind is None:
        raise InputError("a pictures folder needs questions: give a questions file (--questions) or the kind of "
                         f"pictures for the model's own questions (--kind {'|'.join(KIND_QUESTIONS)})")
    if kind is not None and kind not in KIND_QUESTIONS:
        raise InputError(f"kind {kind!r} has no questions of its own; choose one of {', '.join(KIND_QUESTIONS)}")
    root = Path(folder)
    files = picture_files(root)
    names = {path.relative_to(root).as_posix(): path for path in files}
    asked = read_questions(questions_file) if questions_file is not None else []
    for image, _, question in asked:
        if image is not None and image not in names:
            raise InputError(f"question {question!r} names picture {image!r}, which {os.fspath(folder)!r} does not "
                             "hold; write its path inside the folder with / between folders")
    pages = {name: _pages(path) for name, path in names.items()}
    for image, page, question in asked:
        if page is not None and page not in pages[image]:
            raise InputError(f"question {question!r} asks page {page} of {image!r}, which has "
                             f"{'no pages' if pages[image] == [None] else f'{len(pages[image])} pages'}")
    general = [*(KIND_QUESTIONS[kind] if kind else ()), *(q for image, _, q in asked if image is None)]
    items = []
    for name, path in names.items():
        if part != "all" and held_out(name, holdout) != (part == "heldout"):
            continue
        for page in pages[name]:
            mine = [q for image, at, q in asked if image == name and at in (None, page)]
            for question in dict.fromkeys([*general, *mine]):  # each question once per picture
                digest = hashlib.blake2b(question.encode(), digest_size=6).hexdigest()
                where = name if page is None else f"{name}#page={page}"
                items.append(TraceItem(f"{where}|{digest}", question, None, kind or "pictures",
                                       {"image": os.fspath(path), "page": page}))
    return items

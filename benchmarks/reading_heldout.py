"""How ``redgraph.ask`` reads charts and documents drawn by tools and fonts its developers never tune
on: the held-out set of :mod:`benchmarks.heldout_pictures`, asked through the defaults.

    python benchmarks/reading_heldout.py [--folder DIR] [--limit N] [--liar-limit N] [--gold]
                                         [--json] [--out FILE]

Every question is ``redgraph.ask(path, question, context)`` with ``context = make_context()`` made
once (the default models: what ``ask(path, question)`` builds each time) and nothing else named; a
PDF is handed over as the PDF. Checkpoints go to the default SQLite file under ``$REDGRAPH_HOME``,
which this script points at a fresh temporary folder, removed at the end, unless it is set (so the
shared cache is not filled). When ``--folder`` (default ``/tmp/redgraph-heldout``) has no
``manifest.json``, the set is drawn there first (``--seed``; it needs the packages and fonts that
``heldout_pictures.py`` names). The report names the set by its manifest's sha256: compare runs
only on the same one.
``--limit N`` asks about the first N pictures taken in turn from each tool (so every tool is in).

Reported (``--json``: the summary alone; otherwise a markdown table and then the summary; ``--out
FILE``: the summary with every answer, as JSON):

- per tool, per question kind, and per tool and kind: right rate with a Wilson 95% interval
  (an ask that raised counts as not right);
- over all asks: wrong with ``result.unsure`` False (share of all asks), wrong with no flag at all
  (``unsure`` False and ``result.flags`` empty: what a user takes on trust), right but unsure (share
  of all asks and of the right ones), errors (count and the first messages), median and p90
  seconds per ask, and the cold start (import, ``make_context()``, first ask);
- **lying reasoner** (``--liar-limit`` pictures, default all asked; 0 skips): the same questions
  with ``make_context(reasoner=liar)``, whose one rationale is the question's ``lie`` (a false
  statement about this picture: "The Total is $99.00.", "The North bar is the tallest."). As in
  ``benchmarks/honest_defaults.py`` and BENCHMARKS.md ("Honest defaults"), retention = accuracy
  with the liar / accuracy of the honest run on the same questions; here the honest run is the
  default reasoner (``retention``). With ``--gold``, also a reasoner that states the truth in the
  same form, which is honest_defaults.py's denominator (``retention_vs_truthful``). Also: the share
  of the liar's answers that are the lie's answer (``followed_lie``; beside it, the share of the
  honest run's answers that happen to be that answer), and the liar's wrong answers with no flag.
  Retention is undefined (n/a) where the honest run gets nothing right.

One picture's or question's exception is recorded and the run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout_pictures import MissingTool, draw_set, match_answer  # noqa: E402

DEFAULT_FOLDER = Path(tempfile.gettempdir()) / "redgraph-heldout"
FIRST_ERRORS = 5


def wilson(right: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion (95% for z = 1.96); (None, None) when n is 0."""
    if n == 0:
        return None, None
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(records: list[dict]) -> dict:
    """n, right, rate and its Wilson 95% interval."""
    n, right = len(records), sum(r["right"] for r in records)
    low, high = wilson(right, n)
    return {"n": n, "right": right, "rate": round(right / n, 3) if n else None,
            "ci95": [round(low, 3), round(high, 3)] if n else None}


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def pick_pictures(pictures: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` pictures taken in turn from each tool (all of them when None)."""
    by_tool: dict[str, list[dict]] = defaultdict(list)
    for picture in pictures:
        by_tool[picture["tool"]].append(picture)
    queues = [list(v) for _, v in sorted(by_tool.items())]
    chosen = []
    while any(queues) and (limit is None or len(chosen) < limit):
        for queue in queues:
            if queue and (limit is None or len(chosen) < limit):
                chosen.append(queue.pop(0))
    return chosen


def make_planted_reasoner():
    """A reasoner that writes, every round, the one rationale planted for the current question
    (``plant(text)``): :class:`redgraph.agents.ScriptedReasoner` whose script changes per question."""
    from redgraph.agents import ScriptedReasoner
    from redgraph.errors import check_rationale

    class PlantedReasoner(ScriptedReasoner):
        def plant(self, text: str) -> None:
            self.rationales = (check_rationale(text),)

    return PlantedReasoner(["There are 3 bars."], name="planted")


def ask_all(pictures: list[dict], folder: Path, context, *, label: str, reasoner=None,
            plant_key: str | None = None) -> list[dict]:
    """Every question of ``pictures`` asked through ``redgraph.ask`` with ``context``; with
    ``reasoner``, its ``plant`` is given each question's ``plant_key`` text first. Returns one record
    per question; an exception is recorded in it and the run goes on."""
    import redgraph

    records = []
    total = sum(len(p["questions"]) for p in pictures)
    started = time.perf_counter()
    for picture in pictures:
        path = folder / picture["file"]
        for question in picture["questions"]:
            record = {"id": question["id"], "file": picture["file"], "tool": picture["tool"],
                      "kind": picture["kind"], "font": picture["font"], "scanned": picture.get("scanned", False),
                      "qkind": question["qkind"], "question": question["question"], "gold": question["gold"],
                      "match": question["match"], "answer": None, "right": False, "unsure": None, "flags": None,
                      "outcome": None, "error": None}
            began = time.perf_counter()
            try:
                if reasoner is not None:
                    reasoner.plant(question[plant_key])
                    record["rationale"] = question[plant_key]
                result = redgraph.ask(str(path), question["question"], context)
                record.update(answer=result.answer, unsure=bool(result.unsure), flags=list(result.flags),
                              outcome=result.outcome, verdict=result.verdict,
                              right=match_answer(result.answer, question["gold"], question["match"]))
                record["said_lie_answer"] = bool(result.answer) and match_answer(
                    result.answer, question["lie_answer"], question["match"])
            except Exception as error:  # noqa: BLE001 - one question's failure is a result, not the end
                record["error"] = f"{type(error).__name__}: {error}"[:500]
            record["seconds"] = round(time.perf_counter() - began, 3)
            records.append(record)
            if len(records) % 25 == 0 or len(records) == total:
                print(f"[{label}] {len(records)}/{total} asked, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
    return records


def summarise(records: list[dict]) -> dict:
    """Right rates per tool, per question kind and per both; flags, errors and times over all asks."""
    by = defaultdict(list)
    for r in records:
        by[("tool", r["tool"])].append(r)
        by[("qkind", r["qkind"])].append(r)
        by[("kind", r["kind"])].append(r)
        by[("tool_qkind", f"{r['tool']}/{r['qkind']}")].append(r)
        by[("scanned", "scanned" if r["scanned"] else "clean")].append(r)
    groups: dict[str, dict] = defaultdict(dict)
    for (group, key), rows in sorted(by.items()):
        groups[group][key] = rate(rows)
    n = len(records)
    answered = [r for r in records if r["error"] is None]
    right = [r for r in records if r["right"]]
    wrong_sure = [r for r in answered if not r["right"] and not r["unsure"]]
    wrong_unflagged = [r for r in wrong_sure if not r["flags"]]
    right_unsure = [r for r in right if r["unsure"]]
    errors = [r for r in records if r["error"] is not None]
    seconds = [r["seconds"] for r in records]
    flags = defaultdict(int)
    for r in answered:
        for flag in r["flags"]:
            flags[flag] += 1
    outcomes = defaultdict(int)
    for r in answered:
        outcomes[str(r["outcome"])] += 1

    def share(part: list, whole: int) -> float | None:
        return round(len(part) / whole, 3) if whole else None

    return {
        "asks": n, "overall": rate(records), **groups,
        "wrong_not_unsure": {"count": len(wrong_sure), "share_of_all": share(wrong_sure, n)},
        "wrong_unflagged": {"count": len(wrong_unflagged), "share_of_all": share(wrong_unflagged, n)},
        "right_unsure": {"count": len(right_unsure), "share_of_all": share(right_unsure, n),
                         "share_of_right": share(right_unsure, len(right))},
        "unsure": {"count": sum(bool(r["unsure"]) for r in answered), "share_of_all": share(
            [r for r in answered if r["unsure"]], n)},
        "errors": {"count": len(errors), "first": [f"{r['id']}: {r['error']}" for r in errors[:FIRST_ERRORS]]},
        "seconds_per_ask": {"median": _round(statistics.median(seconds) if seconds else None),
                            "p90": _round(percentile(seconds, 0.9)), "total": _round(sum(seconds))},
        "flags": dict(sorted(flags.items())), "outcomes": dict(sorted(outcomes.items())),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def liar_summary(honest: list[dict], liar: list[dict], truthful: list[dict] | None) -> dict:
    """Retention (liar accuracy / honest accuracy on the same questions), overall and per picture
    kind; with the truthful run, retention against it too."""
    honest_by_id = {r["id"]: r for r in honest}

    def block(rows: list[dict]) -> dict:
        ids = {r["id"] for r in rows}
        base = [honest_by_id[i] for i in ids]
        acc_liar = sum(r["right"] for r in rows) / len(rows) if rows else None
        acc_honest = sum(r["right"] for r in base) / len(base) if base else None
        out = {"n": len(rows), "liar": rate(rows), "honest_default": rate(base),
               "retention": round(acc_liar / acc_honest, 3) if acc_honest else None,
               "followed_lie": _share(rows, lambda r: r.get("said_lie_answer")),
               "honest_said_lie_answer": _share(base, lambda r: r.get("said_lie_answer")),
               "wrong_unflagged": round(sum(r["error"] is None and not r["right"] and not r["unsure"]
                                            and not r["flags"] for r in rows) / len(rows), 3) if rows else None,
               "errors": sum(r["error"] is not None for r in rows)}
        if truthful is not None:
            truth = [r for r in truthful if r["id"] in ids]
            acc_truth = sum(r["right"] for r in truth) / len(truth) if truth else None
            out["truthful"] = rate(truth)
            out["retention_vs_truthful"] = round(acc_liar / acc_truth, 3) if acc_truth else None
        return out

    report = {"all": block(liar)}
    for kind in sorted({r["kind"] for r in liar}):
        report[kind] = block([r for r in liar if r["kind"] == kind])
    outcomes = defaultdict(int)
    for r in liar:
        outcomes[str(r["outcome"])] += 1
    report["outcomes_liar"] = dict(sorted(outcomes.items()))
    return report


def _share(rows: list[dict], test) -> float | None:
    return round(sum(bool(test(r)) for r in rows) / len(rows), 3) if rows else None


def _fmt(cell: dict | None) -> str:
    if not cell or not cell["n"]:
        return "-"
    return f"{cell['rate']:.2f} [{cell['ci95'][0]:.2f}, {cell['ci95'][1]:.2f}] ({cell['right']}/{cell['n']})"


def markdown(report: dict) -> str:
    """The report's tables in markdown."""
    s = report["honest"]
    lines = ["| tool | question kind | right rate [Wilson 95%] (right/n) |", "| --- | --- | --- |"]
    for key, cell in s["tool_qkind"].items():
        tool, qkind = key.split("/")
        lines.append(f"| {tool} | {qkind} | {_fmt(cell)} |")
    for tool, cell in s["tool"].items():
        lines.append(f"| **{tool}** | all | {_fmt(cell)} |")
    for qkind, cell in s["qkind"].items():
        lines.append(f"| all | **{qkind}** | {_fmt(cell)} |")
    for kind, cell in s["kind"].items():
        lines.append(f"| all {kind}s | all | {_fmt(cell)} |")
    lines.append(f"| **all** | all | {_fmt(s['overall'])} |")
    cold = report["cold_start_s"]
    lines += ["", "| over all asks | value |", "| --- | --- |",
              f"| asks | {s['asks']} |",
              f"| wrong, `unsure` False (share of all) | {s['wrong_not_unsure']['share_of_all']} "
              f"({s['wrong_not_unsure']['count']}) |",
              f"| wrong, no flag at all (share of all) | {s['wrong_unflagged']['share_of_all']} "
              f"({s['wrong_unflagged']['count']}) |",
              f"| right but unsure (share of all / of right) | {s['right_unsure']['share_of_all']} / "
              f"{s['right_unsure']['share_of_right']} ({s['right_unsure']['count']}) |",
              f"| unsure (share of all) | {s['unsure']['share_of_all']} |",
              f"| errors | {s['errors']['count']} |",
              f"| seconds per ask: median / p90 | {s['seconds_per_ask']['median']} / {s['seconds_per_ask']['p90']} |",
              f"| cold start: import / make_context / first ask (s) | {cold['import']} / {cold['make_context']} / "
              f"{cold['first_ask']} |"]
    for message in s["errors"]["first"]:
        lines.append(f"| error | {message[:160].replace('|', '/')} |")
    liar = report.get("lying_reasoner")
    if liar:
        lines += ["", "| lying reasoner | n | liar right | honest default right | retention | answered the lie "
                  "(honest run: same answer) | liar wrong unflagged | truthful right | retention vs truthful |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for key, row in liar.items():
            if key == "outcomes_liar":
                continue
            lines.append(f"| {key} | {row['n']} | {_fmt(row['liar'])} | {_fmt(row['honest_default'])} | "
                         f"{_na(row['retention'])} | {row['followed_lie']} ({row['honest_said_lie_answer']}) | "
                         f"{row['wrong_unflagged']} | {_fmt(row.get('truthful'))} | "
                         f"{_na(row.get('retention_vs_truthful', '-'))} |")
    return "\n".join(lines)


def _na(value) -> str:
    return "n/a (honest 0)" if value is None else str(value)


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - provenance is best effort
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER,
                        help=f"the held-out set (drawn there when it has no manifest.json; default {DEFAULT_FOLDER})")
    parser.add_argument("--seed", type=int, default=0, help="seed when the set is drawn (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="pictures asked, in turn from each tool (default all)")
    parser.add_argument("--liar-limit", type=int, default=None,
                        help="pictures asked with the lying reasoner, of those asked (default all; 0 skips)")
    parser.add_argument("--gold", action="store_true",
                        help="also ask with a reasoner stating the truth (retention against it, as honest_defaults.py)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    parser.add_argument("--out", type=Path, default=None, help="write the summary and every answer here (JSON)")
    args = parser.parse_args(argv)

    manifest_path = args.folder / "manifest.json"
    if not manifest_path.is_file():
        print(f"drawing the held-out set into {args.folder} (seed {args.seed})", file=sys.stderr)
        try:
            draw_set(args.folder, seed=args.seed)
        except MissingTool as missing:
            sys.exit(f"error: {missing}")
    manifest_bytes = manifest_path.read_bytes()
    manifest = json.loads(manifest_bytes)
    pictures = pick_pictures(manifest["pictures"], args.limit)
    if not pictures:
        sys.exit(f"error: no pictures to ask about (--limit {args.limit}, {len(manifest['pictures'])} in the set)")
    own_home = None if os.environ.get("REDGRAPH_HOME") else tempfile.mkdtemp(prefix="redgraph-heldout-home-")
    if own_home:
        os.environ["REDGRAPH_HOME"] = own_home
    try:
        report = _score(args, manifest, manifest_bytes, pictures)
    finally:
        if own_home:
            shutil.rmtree(own_home, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        print(markdown(report))
        print()
        print(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def _score(args: argparse.Namespace, manifest: dict, manifest_bytes: bytes, pictures: list[dict]) -> dict:
    """The default run, the lying reasoner's, and the report (written to ``args.out`` with every answer).
    The cold start is timed on a first ask outside the scored ones (the first question, asked again)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    began = time.perf_counter()
    import redgraph

    imported = time.perf_counter()
    context = redgraph.make_context()
    made = time.perf_counter()
    first = pictures[0]
    warm_began = time.perf_counter()
    try:
        redgraph.ask(str(args.folder / first["file"]), first["questions"][0]["question"], context)
    except Exception:  # noqa: BLE001 - the scored run records it
        pass
    cold = {"import": round(imported - began, 2), "make_context": round(made - imported, 2),
            "first_ask": round(time.perf_counter() - warm_began, 2)}

    honest = ask_all(pictures, args.folder, context, label="default")
    report = {
        "set": {"folder": str(args.folder), "seed": manifest.get("seed"),
                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "pictures": len(pictures), "of": len(manifest["pictures"]),
                "tools": sorted({p["tool"] for p in pictures})},
        "code": {"root": str(ROOT), "commit": _git("rev-parse", "HEAD"),
                 "changed_files": len((_git("status", "--porcelain") or "").splitlines())},
        "started": started,
        "cold_start_s": cold, "honest": summarise(honest),
    }
    liar_pictures = pictures if args.liar_limit is None else pick_pictures(pictures, args.liar_limit)
    liar = truthful = None
    if liar_pictures:
        reasoner = make_planted_reasoner()
        planted_context = redgraph.make_context(reasoner=reasoner)
        liar = ask_all(liar_pictures, args.folder, planted_context, label="liar", reasoner=reasoner, plant_key="lie")
        if args.gold:
            truthful = ask_all(liar_pictures, args.folder, planted_context, label="truthful", reasoner=reasoner,
                               plant_key="truth")
        report["lying_reasoner"] = liar_summary(honest, liar, truthful)
    report["wall_s"] = round(time.perf_counter() - began, 1)

    if args.out:
        full = dict(report, answers={"default": honest, "liar": liar, "truthful": truthful})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(full, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()

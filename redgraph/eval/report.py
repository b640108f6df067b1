"""What an evaluation's records add up to: the summary object, its markdown table and PNG plots.

Metrics:
    accuracy: per (mode, source, lambda), overall and per category, GQA-style normalised.
    flip rate: per mode (CoT; RED and the graph at each lambda): of the items answered with the
        misleading rationale, the share whose answer is the misleading rationale's answer, i.e.
        followed the swapped-in rationale rather than the image.
    critic precision / recall: of the labelled claims the critic flags as not supported (contradicted
        or unsure), the share that are false; of the false claims, the share flagged (``unsure``
        says how many of the flagged the image could not tell of).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from redgraph.errors import ConfigError


def summarise(records: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """The summary object of an evaluation's prediction records."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    critic: list[dict] = []
    for record in records:
        if record["mode"] == "critic":
            critic += record["claims"]
        else:
            groups[(record["mode"], record["source"], record["lambda"])].append(record)
    accuracy = []
    for (mode, source, weight), rows in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or 0.0)):
        by_category: dict[str, list[bool]] = defaultdict(list)
        for row in rows:
            by_category[row["category"]].append(row["correct"])
        correct = sum(bool(r["correct"]) for r in rows)
        entry = {"mode": mode, "source": source, "lambda": weight, "n": len(rows),
                 "accuracy": _mean([r["correct"] for r in rows]), "ci95": wilson_interval(correct, len(rows)),
                 "by_category": {c: _mean(v) for c, v in sorted(by_category.items())}}
        dependence = [r["rationale_dependence"] for r in rows if r.get("rationale_dependence") is not None]
        if dependence:
            entry["rationale_dependence"] = _mean(dependence)
        if mode == "graph":
            entry["accepted_share"] = _mean([r.get("outcome") == "accepted" for r in rows])
        accuracy.append(entry)
    flips = []
    for (mode, source, weight), rows in sorted(groups.items(), key=lambda g: (g[0][0], g[0][2] or 0.0)):
        follows = [r["follows_misleading"] for r in rows if source == "misleading" and "follows_misleading" in r]
        if follows:
            flips.append({"mode": mode, "lambda": weight, "n": len(follows), "flip_rate": _mean(follows)})
    summary: dict[str, Any] = {
        "dataset": config.get("identity", {}).get("dataset"),
        "model": config.get("identity", {}).get("model") or "embedded",
        "items": len({r["question_id"] for r in records}),
        "predictions": len(records),
        "accuracy": accuracy,
        "flip_rates": flips,
    }
    if critic:
        flagged = [c for c in critic if c["flagged"]]
        false = [c for c in critic if not c["label"]]
        caught = [c for c in flagged if not c["label"]]
        summary["critic"] = {
            "claims": len(critic), "false_claims": len(false), "flagged": len(flagged),
            # Flagged counts every claim not accepted; of those, the ones the image could not tell of.
            "unsure": sum(c.get("status") == "unsure" for c in critic),
            "precision": len(caught) / len(flagged) if flagged else None,
            "recall": len(caught) / len(false) if false else None,
            "accuracy": _mean([c["flagged"] != c["label"] for c in critic]),
        }
    return summary


def lookup(summary: dict[str, Any], mode: str, source: str, weight: float | None = None) -> float | None:
    """The accuracy of one (mode, source, lambda) row, or None when it was not run."""
    for row in summary["accuracy"]:
        if row["mode"] == mode and row["source"] == source and (weight is None or row["lambda"] == weight):
            return row["accuracy"]
    return None


def best_lambda(summary: dict[str, Any], mode: str, source: str) -> tuple[float | None, float | None]:
    """``(lambda, accuracy)`` of the best row of ``mode`` with ``source`` (the smallest lambda on ties)."""
    rows = [r for r in summary["accuracy"] if r["mode"] == mode and r["source"] == source]
    if not rows:
        return None, None
    best = max(rows, key=lambda r: (r["accuracy"], -(r["lambda"] or 0.0)))
    return best["lambda"], best["accuracy"]


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {summary['dataset']}", "",
             f"Model: {summary['model']}. Items: {summary['items']}. Predictions: {summary['predictions']}.", "",
             "| mode | rationale source | λ | accuracy | n | rationale dependence |", "| --- | --- | --- | --- | --- | --- |"]
    for row in summary["accuracy"]:
        weight = "" if row["lambda"] is None else format(row["lambda"], "g")
        dependence = f"{row['rationale_dependence']:.3f}" if "rationale_dependence" in row else ""
        lines.append(f"| {row['mode']} | {row['source']} | {weight} | {row['accuracy']:.3f} | {row['n']} | {dependence} |")
    if summary["flip_rates"]:
        lines += ["", "Flip rate (answer = the misleading rationale's answer):", "",
                  "| mode | λ | flip rate | n |", "| --- | --- | --- | --- |"]
        for row in summary["flip_rates"]:
            weight = "" if row["lambda"] is None else format(row["lambda"], "g")
            lines.append(f"| {row['mode']} | {weight} | {row['flip_rate']:.3f} | {row['n']} |")
    if "critic" in summary:
        c = summary["critic"]
        lines += ["", f"Critic on {c['claims']} labelled claims ({c['false_claims']} false): precision "
                      f"{_fmt(c['precision'])}, recall {_fmt(c['recall'])}, accuracy {c['accuracy']:.3f}."]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the file-only backend, or a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(f"the plots need matplotlib ({exc}); install it: pip install 'redgraph[eval]'") from exc
    return plt


def plot(summary: dict[str, Any], folder: Path) -> list[Path]:
    """``accuracy_vs_lambda.png`` (one line per mode and source; flat ones for direct and CoT) and
    ``flip_rate.png`` (one bar per mode and lambda)."""
    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figure, axes = plt.subplots(figsize=(7, 4.5))
    lambdas = sorted({r["lambda"] for r in summary["accuracy"] if r["lambda"] is not None}) or [0.0, 1.0]
    lines: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in summary["accuracy"]:
        if row["lambda"] is None:
            axes.plot([min(lambdas), max(lambdas)], [row["accuracy"]] * 2, linestyle="--",
                      label=f"{row['mode']} ({row['source']})")
        else:
            lines[(row["mode"], row["source"])].append((row["lambda"], row["accuracy"]))
    for (mode, source), points in lines.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{mode} ({source})")
    axes.set_xlabel("λ (rationale weight)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"Accuracy vs λ: {summary['model']}, {summary['items']} items")
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(folder / "accuracy_vs_lambda.png", dpi=120)
    plt.close(figure)
    written.append(folder / "accuracy_vs_lambda.png")
    if summary["flip_rates"]:
        figure, axes = plt.subplots(figsize=(7, 4))
        labels = [row["mode"] + ("" if row["lambda"] is None else f" λ={row['lambda']:g}") for row in summary["flip_rates"]]
        axes.bar(range(len(labels)), [row["flip_rate"] for row in summary["flip_rates"]])
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axes.set_ylabel("flip rate")
        axes.set_ylim(0, 1)
        axes.set_title("Answers that follow a misleading rationale")
        figure.tight_layout()
        figure.savefig(folder / "flip_rate.png", dpi=120)
        plt.close(figure)
        written.append(folder / "flip_rate.png")
    return written


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> list[float]:
    """The 95% Wilson score interval of a proportion ``successes / total`` (sound at 0 and 1, and for
    small samples, where the normal approximation is not)."""
    if total == 0:
        return [0.0, 1.0]
    share = successes / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _mean(values) -> float:
    values = list(values)
    return sum(float(v) for v in values) / len(values) if values else 0.0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

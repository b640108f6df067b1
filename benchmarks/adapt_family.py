"""Label-free SDRT (issue 39's experiment) on a picture family the embedded model reads poorly:
the project's own pictures as scanners, phones and screenshots give them (``redgraph.data.tools.degrade``:
scaled with a margin, rotated a few degrees, slightly blurred, JPEG quality 30-95). The shipped model
was never trained on such pictures.

1. ``--pictures`` unlabelled degraded pictures of held-out test scenes (seed 11), each with its
   generator's question in a questions file (a question names what the picture shows, never its
   answer). The answers are kept apart, in ``answers.json`` beside the folder: only the gold-label
   control and the scoring below read them.
2. ``redgraph distill adapt``'s defaults on that folder (``adapt``): traces, label-free weighting,
   the SDRT adapter, and its label-free report on the folder's held-out share.
3. Adapters from the same traces and settings but one thing changed: ``drop_unsure`` (traces
   with no claim the critic was sure of dropped, ``--drop-unsure``), ``no_critic``,
   ``no_agreement``, ``uniform_styles`` (the ``sdrt`` adapter itself while the traces have one
   style, the default: not trained again), ``no_experts`` (the experts' answers do not teach, with
   ``--experts lvlm,ocr``);
   ``pseudo_labels``, the base model's own greedy answers to the adapted pictures, unweighted; and
   ``gold``, the pictures' true answers: the ceiling.
4. Every model on ``--check`` labelled degraded pictures of other scenes (the test split, seed 0):
   the answer from the image alone (what RED's image branch reads), and on the same items' plain
   pictures and from their gold rationales alone (what must not get worse), with Wilson intervals.

    python benchmarks/adapt_family.py --json [--pictures 1000] [--check 600] [--steps 300] [--out runs/adapt-scans]
        [--student vision-lora] [--experts lvlm,ocr] [--keep synthetic:train]

``--experts lvlm,ocr`` puts the OCR expert beside the critic (``distill adapt --experts``): its
traces and the adapters made from them go into their own folders; ``pseudo_labels`` and ``gold``
do not depend on the critic and are shared. ``--keep synthetic:train`` trains every variant with
keep lessons (``distill adapt --keep``: the base model's own answers on 400 of its own pictures, a
quarter of every batch), each into a folder of its own.

Everything is written under ``--out``; running again resumes the traces and loads finished adapters.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("sdrt", "drop_unsure", "no_critic", "no_agreement", "uniform_styles", "no_experts", "pseudo_labels", "gold")
FROM_TRACES = ("sdrt", "drop_unsure", "no_critic", "no_agreement", "uniform_styles", "no_experts")  # depend on the critic


def degraded(item):
    """``item``'s own picture degraded, the same for every run."""
    from redgraph.data.tools import degrade

    return degrade(item.image(), random.Random(f"adapt-family:{item.question_id}"))


def draw(folder: Path, count: int, seed: int) -> dict[str, str]:
    """``count`` degraded pictures in ``folder`` with a questions file; returns each picture's answer."""
    from redgraph.data.synthetic import generate_items

    folder.mkdir(parents=True, exist_ok=True)
    answers, lines = {}, []
    for number, item in enumerate(itertools.islice(generate_items("test", 10**9, seed=seed), count)):
        name = f"p{number:05d}.png"
        degraded(item).save(folder / name)
        lines.append(json.dumps({"question": item.question, "image": name}) + "\n")
        answers[name] = item.answer
    (folder / "questions.jsonl").write_text("".join(lines), encoding="utf-8")
    return answers


def answer_all(lvlm, prompts_and_images, batch: int = 16) -> list[str]:
    from redgraph.models.generation import generate_with_hf

    out: list[str] = []
    for start in range(0, len(prompts_and_images), batch):
        chunk = prompts_and_images[start:start + batch]
        images = [image for _, image in chunk]
        out += generate_with_hf(lvlm, [text for text, _ in chunk], None if images[0] is None else images, 8)
    return out


def scores(lvlm, items, pictures) -> dict[str, list[int]]:
    """Per item, 1 where the answer is right: from the degraded picture, the plain one, the gold rationale."""
    from redgraph.eval.normalize import answers_match
    from redgraph.models import prompts

    p = lvlm.processor
    asked = {
        "degraded": [(prompts.image_branch_text(p, i.question), pictures[i.question_id]) for i in items],
        "plain": [(prompts.image_branch_text(p, i.question), i.image()) for i in items],
        "gold_rationale": [(prompts.rationale_branch_text(p, i.gold_rationale, i.question), None) for i in items],
    }
    return {name: [int(answers_match(a, i.answer)) for a, i in zip(answer_all(lvlm, pairs), items)]
            for name, pairs in asked.items()}


def summary(hits: list[int], base: list[int] | None, seed: str) -> dict:
    from redgraph.eval.report import wilson_interval

    out = {"accuracy": round(sum(hits) / len(hits), 4), "ci95": wilson_interval(sum(hits), len(hits))}
    if base is not None:  # the paired change against the base model, bootstrap over items
        rng = random.Random(seed)
        changes = sorted(sum(hits[k] - base[k] for k in draw) / len(draw)
                         for draw in ([rng.randrange(len(hits)) for _ in hits] for _ in range(2000)))
        out["change"] = round((sum(hits) - sum(base)) / len(hits), 4)
        out["change_ci95"] = [round(changes[50], 4), round(changes[1949], 4)]
    return out


def recovered(base: list[int], adapted: list[int], ceiling: list[int]) -> tuple[float | None, list[float] | None]:
    """The share of the ceiling's gain over the base that ``adapted`` gains, and its 95% interval
    (bootstrap over items, all three models on the same resampled items; draws with no gap left out)."""
    def share(draw) -> float | None:
        gap = sum(ceiling[k] - base[k] for k in draw)
        return None if gap <= 0 else sum(adapted[k] - base[k] for k in draw) / gap

    whole = share(range(len(base)))
    if whole is None:
        return None, None
    rng = random.Random("gap-recovered")
    draws = sorted(v for v in (share([rng.randrange(len(base)) for _ in base]) for _ in range(2000)) if v is not None)
    return round(whole, 3), [round(draws[int(0.025 * (len(draws) - 1))], 3), round(draws[int(0.975 * (len(draws) - 1))], 3)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pictures", type=int, default=1000, help="unlabelled degraded pictures (a 0.2 share held out)")
    parser.add_argument("--check", type=int, default=600, help="labelled pictures measured on")
    parser.add_argument("--steps", type=int, default=300, help="adapter steps (the command's default: 300)")
    parser.add_argument("--per-style", type=int, default=4, help="traces per question (the command's default: 4)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the command's default: 64")
    parser.add_argument("--batch-size", type=int, default=32, help="adapter batch (the command's default: 32)")
    parser.add_argument("--student", choices=("default", "vision-lora"), default="default",
                        help="default: the command's adapter (intervention + vision skip); vision-lora: LoRA of rank "
                             "--rank on every vision block and language layer (--adapter-kind lora --vision-layers all)")
    parser.add_argument("--rank", type=int, default=8, help="the vision-lora student's rank")
    parser.add_argument("--experts", default="lvlm", help="the critic's experts: lvlm, or lvlm,ocr (distill adapt --experts)")
    parser.add_argument("--keep", default=None, help="keep lessons for every variant (distill adapt --keep)")
    parser.add_argument("--only", default=",".join(VARIANTS), help="variants to train and measure")
    parser.add_argument("--out", default="runs/adapt-scans")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(only) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    from redgraph.data.synthetic import generate_items
    from redgraph.distill.adapt import AdaptConfig, adapt, copy_lvlm
    from redgraph.distill.student import DistillConfig, distill
    from redgraph.distill.traces import read_traces
    from redgraph.distill.weights import WeightConfig
    from redgraph.models import load_lvlm
    from redgraph.models.adapter import ADAPTER_CONFIG, load_adapter
    from redgraph.models.images import load_image

    root = Path(args.out)
    folder = root / "pictures"
    answers_file = root / "answers.json"
    if not answers_file.is_file():
        answers_file.parent.mkdir(parents=True, exist_ok=True)
        answers_file.write_text(json.dumps(draw(folder, args.pictures, 11)), encoding="utf-8")
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    base = load_lvlm(None)
    started = time.perf_counter()
    suffix = "" if args.experts == "lvlm" else "-" + args.experts.replace(",", "-")
    default = DistillConfig(steps=args.steps, batch_size=args.batch_size,
                            warmup_steps=min(DistillConfig().warmup_steps, args.steps))
    report = adapt(AdaptConfig(pictures=str(folder), questions=str(folder / "questions.jsonl"), distill=default,
                               per_style=args.per_style, max_new_tokens=args.max_new_tokens, experts=args.experts),
                   root / f"run{suffix}", lvlm=base,
                   on_stage=lambda stage, done, total: print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)
                   if done == total or done % 100 == 0 else None)
    records, _ = read_traces([root / f"run{suffix}" / "traces"])
    kept = "" if args.keep is None else "-keep"
    if args.keep is not None:
        default = dataclasses.replace(default, keep=args.keep)
    timings = {"adapt_seconds": round(time.perf_counter() - started, 1)}
    if args.student == "vision-lora":  # the same traces, another student
        from redgraph.models.adapter import AdapterConfig, language_layers, vision_blocks

        default = dataclasses.replace(default, adapter=AdapterConfig(
            layers=tuple(range(len(language_layers(base.model)))), rank=args.rank, skip_layer=None, kind="lora",
            vision_layers=tuple(range(len(vision_blocks(base.model))))))

    def with_gold(given: dict[str, str]) -> list[dict]:
        return [{**r, "gold_answer": given[Path(r["item"]["image"]).name]} for r in records]

    greedy: dict[str, str] = {}
    if "pseudo_labels" in only:  # the base model's own answer from each adapted picture, read once per picture
        from redgraph.models import prompts

        names = sorted({Path(r["item"]["image"]).name: r for r in records}.items())
        said = answer_all(base, [(prompts.image_branch_text(base.processor, r["question"]), load_image(os.fspath(folder / n)))
                                 for n, r in names])
        greedy = {n: a.strip() for (n, _), a in zip(names, said)}
    configs = {
        "sdrt": (default, records),
        "drop_unsure": (dataclasses.replace(default, weighting=WeightConfig(unsure="drop")), records),
        "no_critic": (dataclasses.replace(default, weighting=WeightConfig(critic=False)), records),
        "no_agreement": (dataclasses.replace(default, weighting=WeightConfig(agreement=False)), records),
        "uniform_styles": (dataclasses.replace(default, weighting=WeightConfig(style_weights="uniform")), records),
        "no_experts": (dataclasses.replace(default, weighting=WeightConfig(experts=False)), records),
        "pseudo_labels": (dataclasses.replace(default, targets="gold"), with_gold(greedy) if greedy else None),
        "gold": (dataclasses.replace(default, targets="gold"), with_gold(answers)),
    }
    check_items = list(itertools.islice(generate_items("test", 10**9, seed=0), args.check))
    pictures = {item.question_id: degraded(item) for item in check_items}
    measured = {"base": scores(base, check_items, pictures)}
    adapters = {}
    styles = {r["style"] for r in records}
    for name in only:
        config, given = configs[name]
        if name == "uniform_styles" and len(styles) == 1:  # one style weighs 1 either way: the sdrt adapter
            adapters[name] = {"same_as": "sdrt", "why": f"the traces have one style ({next(iter(styles))})"}
            continue
        if name == "no_experts" and args.experts == "lvlm":
            adapters[name] = {"same_as": "sdrt", "why": "the critic had no expert beside the model's own eyes"}
            continue
        mine = suffix if name in FROM_TRACES else ""
        model = copy_lvlm(base)
        if args.student != "default":
            where = root / f"{args.student}{mine}{kept}" / name
        elif name == "sdrt" and not kept:  # the command's own adapter
            where = root / f"run{suffix}" / "adapter"
        else:
            where = root / f"{name}{mine}{kept}"
        began = time.perf_counter()
        if (where / ADAPTER_CONFIG).is_file():
            load_adapter(model, where)
            manifest = json.loads((where / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("manifest", {})
        else:
            _, manifest = distill(model, given, config, out_dir=where)
        timings[f"{name}_train_seconds"] = round(time.perf_counter() - began, 1)
        adapters[name] = {"weighting": manifest.get("weighting"), "command": manifest.get("command")}
        measured[name] = scores(model, check_items, pictures)
        print(f"{name}: {sum(measured[name]['degraded']) / len(check_items):.3f}", file=sys.stderr, flush=True)
    result = {"student": args.student, "experts": args.experts, "keep": args.keep,
              "adapter": json.loads(json.dumps(dataclasses.asdict(default.adapter))),
              "pictures": report["pictures"],
              "label_free_report": report["heldout"], "check_items": len(check_items), "variants": adapters,
              "timings": timings}
    result["models"] = {name: {part: summary(hits, None if name == "base" else measured["base"][part], f"{name}:{part}")
                               for part, hits in parts.items()} for name, parts in measured.items()}
    models = result["models"]
    hits = {name: parts["degraded"] for name, parts in measured.items()}
    if "gold" in models and "sdrt" in models:
        result["gap_recovered"], result["gap_recovered_ci95"] = recovered(hits["base"], hits["sdrt"], hits["gold"])
    if "pseudo_labels" in models and "sdrt" in models:
        paired = summary(hits["sdrt"], hits["pseudo_labels"], "sdrt-pseudo")
        result["sdrt_minus_pseudo_labels"], result["sdrt_minus_pseudo_labels_ci95"] = paired["change"], paired["change_ci95"]
    name = ("family_report" if args.student == "default" else f"family_report-{args.student}") + f"{suffix}{kept}.json"
    (root / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

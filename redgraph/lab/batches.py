"""The training stream: which examples each step sees, and their tensors, ready to run.

Stream 2 (the default) draws every example from its own seed, ``(run seed, example index)``, so a
step's batch is a pure function of the run's settings and the step number: data workers can make
batches in any order, and any worker count gives the same stream. Stream 1 is the shipped model's
draw (one task generator for the whole run, in order), kept so that its manifest command still
reproduces it; it can only be made in-process.

A step's examples are split into ``accumulate`` micro-batches of similar length (less padding);
each micro-batch carries everything the forward needs, including Qwen's 3-D positions, so the
training process does no per-example work.
"""

from __future__ import annotations

import random

import torch

from redgraph.data.synthetic import make_item
from redgraph.data.vocabulary import STANDARD, Vocabulary
from redgraph.lab.pictures import training_picture
from redgraph.lab.scene_labels import cell_fact_names, scene_fact_names
from redgraph.lab.tasks import TASKS, Example, make_example

STREAMS = (1, 2)


def step_examples(step: int, config, processor, rng: random.Random | None = None) -> list[Example]:
    """The examples of training step ``step`` (fresh train-split items, never repeated).

    Args:
        rng: stream 1's run-wide task generator (advanced in place); unused by stream 2.
    """
    start = step * config.batch_size
    weights, vocabulary = config.category_weight_map, config.scene_vocabulary
    items = [make_item("train", start + i, seed=config.seed, category_weights=weights,
                       vocabulary=item_vocabulary(config, start + i)) for i in range(config.batch_size)]
    if config.data_stream == 1:
        if rng is None:
            raise ValueError("stream 1 draws from the run's task generator; pass rng")
        if config.uniform_tasks:  # the shipped model's draw
            tasks = [rng.choice(TASKS[:len(config.task_weights)]) for _ in items]
        else:
            tasks = rng.choices(TASKS[:len(config.task_weights)], weights=config.task_weights, k=len(items))
        return [make_example(item, task, processor, rng, vocabulary=vocabulary, image_side=config.image_side,
                             copy_short=config.copy_short_share)
                for item, task in zip(items, tasks)]
    examples = []
    for offset, item in enumerate(items):
        own = random.Random(f"redgraph-train:{config.seed}:{start + offset}")
        # five weights: the tasks before copy (the same draw as before copy existed)
        task = own.choices(TASKS[:len(config.task_weights)], weights=config.task_weights)[0]
        item, picture, layout = training_picture(item, task, start + offset, config, own)
        examples.append(make_example(item, task, processor, own, picture, layout if config.tool_cells else None,
                                     vocabulary, config.image_side, config.copy_short_share))
    return examples


def item_vocabulary(config, index: int) -> Vocabulary:
    """The vocabulary of training item ``index``: the run's, or the standard one for a
    ``config.standard_share`` of them (drawn by the item's index, so any worker count gives the same)."""
    if config.standard_share and random.Random(f"redgraph-vocabulary:{config.seed}:{index}").random() < config.standard_share:
        return STANDARD
    return config.scene_vocabulary


def split_by_length(examples: list[Example], parts: int) -> list[list[Example]]:
    """``examples`` in ``parts`` groups of near-equal size, shortest first (less padding per group);
    one part keeps the examples in their order."""
    if parts == 1:
        return [list(examples)]
    ordered = sorted(examples, key=lambda e: (e.image is not None, len(e.prompt) + len(e.target)))
    size, extra = divmod(len(ordered), parts)
    groups, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        if end > start:
            groups.append(ordered[start:end])
        start = end
    return groups


class RopeIndex:
    """Qwen2-VL's own 3-D position computation, without the model (it reads only the config), so
    that data workers can compute positions on the CPU."""

    def __init__(self, config) -> None:
        self.config = config

    def __call__(self, input_ids, mm_token_type_ids, image_grid_thw, attention_mask) -> torch.Tensor:
        return self.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw,
                                   attention_mask=attention_mask)[0]  # (3, B, T)

    def vision_inputs(self, image_grid_thw: torch.Tensor) -> dict[str, torch.Tensor]:
        """The vision tower's own patch positions and per-image boundaries, which it would otherwise
        compute in every forward (``image_``-prefixed: transformers hands them to the image encoder)."""
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

        merge = self.config.vision_config.spatial_merge_size
        return {"image_position_ids": get_vision_position_ids(image_grid_thw, merge),
                "image_cu_seqlens": get_vision_cu_seqlens(image_grid_thw)}


def _borrow_rope_methods() -> None:
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

    RopeIndex.get_rope_index = Qwen2VLModel.get_rope_index
    RopeIndex.get_vision_position_ids = Qwen2VLModel.get_vision_position_ids


def rope_index(model_config) -> RopeIndex:
    if not hasattr(RopeIndex, "get_rope_index"):
        _borrow_rope_methods()
    return RopeIndex(model_config)


PIXEL_INPUTS = ("pixel_values", "image_grid_thw", "image_sizes", "pixel_attention_mask")


def batch_tensors(examples: list[Example], processor, rope: RopeIndex | None = None,
                  vocabulary: Vocabulary = STANDARD, prompt_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Tokenise prompts (with their images) and targets into right-padded training tensors (the vision
    heads' targets over the facts of ``vocabulary``, the one the examples were labelled in).

    ``labels`` is -100 everywhere except the target tokens and the closing end-of-turn token. With
    ``rope``, also ``position_ids`` (3, B, T) and the vision tower's patch positions and image
    boundaries, as the model would compute them itself.

    With ``prompt_weight`` above 0, the tokens of each example's ``prompt_span`` are labelled too, and
    ``label_weights`` weighs each labelled token: an example's loss is then its targets' mean
    cross-entropy plus ``prompt_weight`` times its span's mean.
    """
    tokenizer = processor.tokenizer
    with_image = [e for e in examples if e.image is not None]
    rows: list[list[int]] = []
    targets: list[int] = []
    pixel = {}
    if with_image:
        # one list of images per prompt: SmolVLM's and Gemma 3's processors take a flat list as one prompt's
        encoded = processor(text=[e.prompt for e in with_image], images=[[e.image] for e in with_image],
                            return_tensors="pt", padding=True)
        # what the family's processor gives its vision tower (Qwen2-VL also the grid, LLaVA-NeXT the sizes)
        pixel = {key: encoded[key] for key in PIXEL_INPUTS if key in encoded}
        image_rows = iter(
            ids[mask.bool()].tolist() for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])
        )
    spans: list[list[int]] = []  # per row: the prompt token indices also learned
    for example in examples:
        span: list[int] = []
        if example.image is not None:
            prompt_ids = next(image_rows)
        elif prompt_weight and example.prompt_span:
            encoded_prompt = tokenizer(example.prompt, add_special_tokens=False, return_offsets_mapping=True)
            prompt_ids = encoded_prompt["input_ids"]
            first, last = example.prompt_span
            span = [i for i, (a, b) in enumerate(encoded_prompt["offset_mapping"]) if a >= first and b <= last and b > a]
        else:
            prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt_ids + target_ids)
        targets.append(len(target_ids))
        spans.append(span)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, n_target) in enumerate(zip(rows, targets)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        labels[i, len(row) - n_target : len(row)] = torch.tensor(row[-n_target:])
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if prompt_weight:
        # label position p is predicted from p - 1: a span token from the first onward (not the first
        # itself, which nothing before it in the span gives away)
        weights = (labels != -100).float() / torch.tensor(targets, dtype=torch.float).unsqueeze(1)
        for i, span in enumerate(spans):
            learned = span[1:]
            if learned:
                labels[i, learned] = input_ids[i, learned]
                weights[i, learned] = prompt_weight / len(learned)
        batch["label_weights"] = weights
    if pixel:
        # Which tokens are image tokens (1) and which text (0), for the rows as padded here: Qwen2-VL's
        # 3-D positions need it, and Gemma 3's attention within an image (its processor calls it
        # token_type_ids).
        image_tokens = (input_ids == processor.image_token_id).long()
        if "image_grid_thw" in pixel or "mm_token_type_ids" in encoded:
            pixel["mm_token_type_ids"] = image_tokens
        if "token_type_ids" in encoded:
            pixel["token_type_ids"] = image_tokens
        pixel.update(vision_targets([e.scene_labels for e in with_image], [e.cell_labels for e in with_image],
                                    vocabulary))
        batch.update(pixel)
    if rope is not None:
        types = batch.get("mm_token_type_ids", torch.zeros_like(input_ids))
        batch["position_ids"] = rope(input_ids, types, batch.get("image_grid_thw"), attention)
        if "image_grid_thw" in batch:
            batch.update(rope.vision_inputs(batch["image_grid_thw"]))
    return batch


def vision_targets(scene_facts: list[tuple[int, ...]], cell_facts: list[tuple[tuple[int, ...], ...]],
                   vocabulary: Vocabulary = STANDARD) -> dict[str, torch.Tensor]:
    """The vision heads' multi-hot targets of a batch's images, from each image's
    :func:`~redgraph.lab.scene_labels.scene_labels` and cell labels (one tuple of facts per image
    token, none where the picture has no cell labels) in ``vocabulary``'s facts: ``scene_targets``
    (images, scene facts), ``cell_targets`` (images, cells, cell facts; pictures of other shapes have
    other counts of tokens, and the shorter rows are padded) and ``cell_mask`` (images, cells): 1 at each labelled
    image token, 0 at padding and in the rows of pictures without cell labels (a degraded drawing),
    which the loss leaves out."""
    scene = torch.zeros((len(scene_facts), len(scene_fact_names(vocabulary))))
    for row, facts in enumerate(scene_facts):
        scene[row, list(facts)] = 1.0
    width = max(map(len, cell_facts), default=0)
    cell = torch.zeros((len(cell_facts), width, len(cell_fact_names(vocabulary))))
    where = [(row, index, fact) for row, cells in enumerate(cell_facts) for index, facts in enumerate(cells)
             for fact in facts]
    if where:
        cell[tuple(torch.tensor(where).T)] = 1.0  # one indexed write for the whole batch
    mask = torch.zeros((len(cell_facts), width))
    for row, cells in enumerate(cell_facts):
        mask[row, : len(cells)] = 1.0
    return {"scene_targets": scene, "cell_targets": cell, "cell_mask": mask}


# Stays on the CPU when a batch moves to a GPU: the vision tower only reads its values as Python
# numbers (split sizes), which from a GPU tensor would wait for the GPU at every layer.
HOST_ONLY = ("image_cu_seqlens",)


def micro_batches(examples: list[Example], config, processor, rope: RopeIndex | None) -> list[dict[str, torch.Tensor]]:
    """A step's examples as its ``config.accumulate`` micro-batches, ready to run."""
    return [batch_tensors(group, processor, rope, config.scene_vocabulary, config.copy_prompt_weight)
            for group in split_by_length(examples, config.accumulate)]


class StepBatches(torch.utils.data.Dataset):
    """Stream 2's steps as a dataset: item ``step`` is that step's micro-batches (a list of tensor
    dicts). Made in data-loader workers, so it must not hold anything that cannot be copied there."""

    def __init__(self, config, processor, rope: RopeIndex | None) -> None:
        if config.data_stream != 2:
            raise ValueError("only stream 2 can be made out of order; stream 1 is drawn in-process")
        self.config, self.processor, self.rope = config, processor, rope

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> list[dict[str, torch.Tensor]]:
        return micro_batches(step_examples(step, self.config, self.processor), self.config, self.processor, self.rope)


def one_thread_per_worker(_worker: int) -> None:
    """Data workers make examples with PIL and the tokenizer; one torch thread each leaves the cores
    to the training process."""
    torch.set_num_threads(1)

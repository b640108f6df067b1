"""What training minimises: cross-entropy on the target tokens (averaged per example), and the
training-only vision heads' losses on the merged image tokens."""

from __future__ import annotations

import torch

from redgraph.lab.architecture import GRID
from redgraph.data.vocabulary import STANDARD, Vocabulary
from redgraph.lab.scene_labels import cell_fact_names, scene_fact_names


# What a batch holds for the loss, not for the model's forward.
TARGETS = ("labels", "label_weights", "scene_targets", "cell_targets", "cell_mask")


class VisionHeads(torch.nn.Module):
    """Training-only linear heads on the merged image tokens, dropped after training (the saved model
    is a plain Qwen2-VL):

    - ``scene`` (``aux_weight``): the scene's facts (``scene_fact_names(vocabulary)``) from the mean
      image token;
    - ``cell`` (``cell_weight``): each token's own square's facts (``cell_fact_names(vocabulary)``) from that
      token: where each colour and object is, where each bar ends, which characters are written
      where. Its loss is summed over the facts and averaged over the cells.
    - ``position`` (``position_weight``): each token's own row and column of the grid of merged
      tokens (``GRID`` x ``GRID``), from that token: the sum of the two cross-entropies, averaged
      over the tokens. It needs no labels: a token's place is its index.
    """

    def __init__(self, width: int, aux_weight: float, cell_weight: float, position_weight: float = 0.0, *,
                 cell_init: str = "random", vocabulary: Vocabulary = STANDARD) -> None:
        super().__init__()
        self.aux_weight, self.cell_weight, self.position_weight = aux_weight, cell_weight, position_weight
        self.scene = torch.nn.Linear(width, len(scene_fact_names(vocabulary))) if aux_weight > 0 else None
        self.cell = torch.nn.Linear(width, len(cell_fact_names(vocabulary))) if cell_weight > 0 else None
        if self.cell is not None and cell_init == "zero":  # TrainConfig.cell_head_init
            torch.nn.init.zeros_(self.cell.weight)
            torch.nn.init.constant_(self.cell.bias, -4.0)
        self.position = torch.nn.Linear(width, 2 * GRID) if position_weight > 0 else None

    def loss(self, tokens: list[torch.Tensor] | torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``tokens``: each image's merged vision output of ``batch``, (its tokens, width), or one tensor
        (images, tokens, width) where all have as many; pictures of other sizes than the own renderer's
        have other counts of tokens."""
        tokens = list(tokens)
        device = tokens[0].device
        loss = torch.zeros((), device=device)
        if self.scene is not None:
            logits = self.scene(torch.stack([t.mean(0) for t in tokens])).float()
            loss = loss + self.aux_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["scene_targets"])
        if self.cell is not None:
            cells = batch["cell_targets"]
            mask = batch.get("cell_mask")
            mask = torch.ones(cells.shape[:2], device=cells.device) if mask is None else mask
            counts = mask.sum(-1).long().tolist()  # each image's labelled tokens: all of them or none
            labelled = [i for i, count in enumerate(counts) if count]
            wrong = [(i, tokens[i].shape[0], counts[i]) for i in labelled if tokens[i].shape[0] != counts[i]]
            if wrong:
                raise ValueError("the cell head needs one set of cell labels per image token; "
                                 + ", ".join(f"image {i} has {n} tokens and {c} labelled cells" for i, n, c in wrong))
            if labelled:
                logits = self.cell(torch.cat([tokens[i] for i in labelled])).float()
                per_fact = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, cells[mask.bool()].to(logits.device), reduction="none")  # (labelled tokens, facts)
                # the mean over the labelled pictures' tokens, weighed by their share of the batch's pictures
                loss = loss + self.cell_weight * per_fact.sum(-1).mean() * len(labelled) / len(tokens)
        if self.position is not None:
            wrong = sorted({t.shape[0] for t in tokens} - {GRID * GRID})
            if wrong:
                raise ValueError(f"the position head expects {GRID * GRID} tokens per image, got "
                                 f"{', '.join(map(str, wrong))}")
            stacked = torch.stack(tokens)
            images, count, _ = stacked.shape
            logits = self.position(stacked).float().reshape(images * count, 2, GRID)
            place = torch.arange(count, device=device).repeat(images)
            rows = torch.nn.functional.cross_entropy(logits[:, 0], place // GRID)
            columns = torch.nn.functional.cross_entropy(logits[:, 1], place % GRID)
            loss = loss + self.position_weight * (rows + columns)
        return loss


def example_loss(model, batch: dict[str, torch.Tensor], heads: VisionHeads | None = None, *,
                 shares: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Mean over examples of each example's mean target-token cross-entropy; with ``heads``, plus
    their losses on the batch's images (see :class:`VisionHeads`).

    ``shares``: this micro-batch's share of its step's examples and of its images; the step's loss
    is the sum of its micro-batches' losses.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k not in TARGETS}
    captured: list[torch.Tensor] = []
    hook = None
    if heads is not None and "scene_targets" in batch:  # any batch with images has them
        def keep(module, args, output):
            merged = getattr(output, "pooler_output", None)
            captured.append(merged if merged is not None else output)

        hook = model.model.visual.register_forward_hook(keep)
    try:
        logits = model(**inputs).logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    finally:
        if hook is not None:
            hook.remove()
    shifted = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), shifted.reshape(-1), ignore_index=-100, reduction="none"
    ).view(shifted.shape)
    if "label_weights" in batch:  # each labelled token's weight within its example (batch_tensors)
        loss = (per_token * batch["label_weights"][:, 1:]).sum(1).mean() * shares[0]
    else:
        mask = (shifted != -100).float()
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean() * shares[0]
    if captured:
        merge = model.config.vision_config.spatial_merge_size
        counts = (batch["image_grid_thw"].prod(-1) // (merge * merge)).tolist()
        tokens = list(captured[0].split(counts))  # each image's merged tokens
        loss = loss + heads.loss(tokens, batch) * shares[1]
    return loss


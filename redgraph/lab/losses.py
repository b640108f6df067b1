"""What training minimises: cross-entropy on the target tokens (averaged per example), and the
training-only vision heads' losses on the merged image tokens."""

from __future__ import annotations

import torch

from redgraph.lab.architecture import GRID
from redgraph.lab.scene_labels import CELL_VOCABULARY, VOCABULARY


class VisionHeads(torch.nn.Module):
    """Training-only linear heads on the merged image tokens, dropped after training (the saved model
    is a plain Qwen2-VL):

    - ``scene`` (``aux_weight``): the scene's facts (``VOCABULARY``) from the mean image token;
    - ``cell`` (``cell_weight``): each token's own square's facts (``CELL_VOCABULARY``) from that
      token: where each colour and object is, where each bar ends, which characters are written
      where. Its loss is summed over the facts and averaged over the cells.
    - ``position`` (``position_weight``): each token's own row and column of the grid of merged
      tokens (``GRID`` x ``GRID``), from that token: the sum of the two cross-entropies, averaged
      over the tokens. It needs no labels: a token's place is its index.
    """

    def __init__(self, width: int, aux_weight: float, cell_weight: float, position_weight: float = 0.0) -> None:
        super().__init__()
        self.aux_weight, self.cell_weight, self.position_weight = aux_weight, cell_weight, position_weight
        self.scene = torch.nn.Linear(width, len(VOCABULARY)) if aux_weight > 0 else None
        self.cell = torch.nn.Linear(width, len(CELL_VOCABULARY)) if cell_weight > 0 else None
        self.position = torch.nn.Linear(width, 2 * GRID) if position_weight > 0 else None

    def loss(self, tokens: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``tokens``: (images, tokens per image, width), the merged vision output of ``batch``."""
        loss = torch.zeros((), device=tokens.device)
        if self.scene is not None:
            logits = self.scene(tokens.mean(1)).float()
            loss = loss + self.aux_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["scene_targets"])
        if self.cell is not None:
            logits = self.cell(tokens).float()
            per_fact = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["cell_targets"], reduction="none")  # (images, cells, facts)
            loss = loss + self.cell_weight * per_fact.sum(-1).mean()
        if self.position is not None:
            images, count, _ = tokens.shape
            if count != GRID * GRID:
                raise ValueError(f"the position head expects {GRID * GRID} tokens per image, got {count}")
            logits = self.position(tokens).float().reshape(images * count, 2, GRID)
            place = torch.arange(count, device=tokens.device).repeat(images)
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
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "scene_targets", "cell_targets")}
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
    mask = (shifted != -100).float()
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean() * shares[0]
    if captured:
        images = batch["scene_targets"].shape[0]
        tokens = captured[0].reshape(images, -1, captured[0].shape[-1])  # (images, tokens, width)
        loss = loss + heads.loss(tokens, batch) * shares[1]
    return loss


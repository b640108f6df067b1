"""Every row of a decoding run as one set (:class:`BranchSet`): prefilled together where the family
allows (:mod:`redgraph.decoding.packing`), merged into one cache (:mod:`redgraph.decoding.rows`),
stepped and dropped per question; and the rows and lambdas of each question's rationales."""

from __future__ import annotations

import torch

from redgraph.decoding.packing import pack_blocker, prefill_packed
from redgraph.decoding.rows import CannotMerge, RowGroup, merge, prefill_row


RowKey = tuple[int, int]  # (question, branch): branch -1 is the image branch, k >= 0 rationale k


class BranchSet:
    """Every row of one decoding run, keyed by (question, branch).

    With ``batched``, rows are prefilled together (packed, one forward, where the family allows:
    see :func:`pack_blocker`) and merged into one group (one forward per step); else each row is
    prefilled alone and keeps its own group (one forward per row: the serial reference). Where a
    full sliding window forbids merging, rows stay separate: slower, same results.

    Attributes:
        prefill_forwards: forwards the prefill took (1 when packed).
    """

    def __init__(self, model, rows: list[tuple[RowKey, object]], *, batched: bool, pack_tokens: int = 0) -> None:
        groups, self.prefill_forwards = prefill_groups(
            model, [row_inputs for _, row_inputs in rows], pack_tokens=pack_tokens if batched else 0
        )
        keys = [[key] for key, _ in rows]
        if batched and len(groups) > 1:
            try:
                groups, keys = [merge(groups)], [[key for group_keys in keys for key in group_keys]]
            except CannotMerge:
                pass
        self.groups: list[RowGroup] = groups
        self.keys: list[list[RowKey]] = keys

    def logprobs(self) -> tuple[torch.Tensor, dict[RowKey, int]]:
        """(R, V) next-token log-probabilities of every row, and the row index of each key."""
        stacked = torch.cat([g.logprobs for g in self.groups], dim=0)
        index = {key: row for row, key in enumerate(k for group_keys in self.keys for k in group_keys)}
        return stacked, index

    def step(self, chosen: dict[int, int]) -> None:
        """Feed each row the token chosen for its question."""
        for group, group_keys in zip(self.groups, self.keys):
            tokens = torch.tensor([chosen[q] for q, _ in group_keys], device=group.attention_mask.device)
            group.step(tokens)

    def keep(self, questions: set[int]) -> None:
        """Drop the rows of every question not in ``questions``."""
        kept_groups, kept_keys = [], []
        for group, group_keys in zip(self.groups, self.keys):
            rows = [i for i, (q, _) in enumerate(group_keys) if q in questions]
            if not rows:
                continue
            if len(rows) < len(group_keys):
                group.select(rows)
            kept_groups.append(group)
            kept_keys.append([group_keys[i] for i in rows])
        self.groups, self.keys = kept_groups, kept_keys


def prefill_groups(model, inputs: list, *, pack_tokens: int) -> tuple[list[RowGroup], int]:
    """One group per row of ``inputs`` (model inputs of one row each), and the forwards it took.

    Rows of up to ``pack_tokens`` tokens are packed into one forward where the family allows
    (:func:`pack_blocker`); longer rows, and every row where it does not, are prefilled alone.
    """
    short = [r for r, row_inputs in enumerate(inputs) if row_inputs["input_ids"].shape[1] <= pack_tokens]
    if len(short) < 2 or pack_blocker(model, [inputs[r] for r in short]) is not None:
        short = []
    groups: list[RowGroup | None] = [None] * len(inputs)
    if short:
        for r, group in zip(short, prefill_packed(model, [inputs[r] for r in short], pack_tokens=pack_tokens)):
            groups[r] = group
    for r, row_inputs in enumerate(inputs):
        if groups[r] is None:
            groups[r] = prefill_row(model, row_inputs)
    return groups, len(inputs) - len(short) + (1 if short else 0)


def padded_rationale_rows(
    where: dict[RowKey, int], lambdas: list[tuple[int, tuple[float, ...]]], device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) row of each question's rationale k and (N, K) its lambda, for ``(question, lambdas)`` pairs.

    Questions with fewer than K rationales are padded with row 0 and lambda 0; RED skips
    lambda-0 terms, so what that row holds never matters.
    """
    count, max_k = len(lambdas), max((len(lam) for _, lam in lambdas), default=0)
    rows = torch.tensor(
        [[where.get((q, k), 0) for k in range(max_k)] for q, _ in lambdas], dtype=torch.long, device=device
    ).view(count, max_k)
    weights = torch.tensor(
        [list(lam) + [0.0] * (max_k - len(lam)) for _, lam in lambdas], dtype=torch.float32, device=device
    ).view(count, max_k)
    return rows, weights

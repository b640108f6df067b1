"""The critic's image prefix, prefilled once per picture and model: shared by every review of the
picture, in one run (a second round) and across runs (agents asking about the same document).

The critic asks its questions after the image-branch prompt's prefix (system prompt and image,
:mod:`redgraph.decoding.probes`). That prefix's prefill depends only on the model and the
prompt's inputs, so it is kept, per model, by a digest of those inputs (token ids and pixels) and
used again as it is: every question still runs after a copy of it, and the result is the very
tensors a fresh prefill would give. The rules are the vision cache's
(:mod:`redgraph.models.vision_cache`): only under ``torch.inference_mode`` in eval mode, not while a forward
hook watches the model (an SDRT adapter edits its layers that way), and dropped when a weight is
replaced, moved or written in place. Entries are bounded by count and by bytes.

Example:
    >>> prefix = prefix_of(lvlm.model, inputs)  # doctest: +SKIP
    >>> group = prefix.repeated([0, 0])  # two rows to ask two questions after it  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from redgraph.decoding.rows import RowGroup, cache_of, prefill_row
from redgraph.models.vision_cache import PictureStore, per_model, tensors_key, watched, weights_fingerprint

CAPACITY = 32  # pictures per model
MAX_BYTES = 256 << 20  # their prefixes' keys, values and log-probabilities together


@dataclass(frozen=True)
class _Entry:
    """A prefilled row without its model (an entry must not keep the model alive)."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    rope_deltas: torch.Tensor | None
    logprobs: torch.Tensor

    @classmethod
    def of(cls, group: RowGroup) -> _Entry:
        layers = group.cache.layers
        return cls(tuple(layer.keys for layer in layers), tuple(layer.values for layer in layers),
                   group.attention_mask, group.lengths, group.rope_deltas, group.logprobs)

    def group(self, model) -> RowGroup:
        return RowGroup(model=model, cache=cache_of(model, list(self.keys), list(self.values)),
                        attention_mask=self.attention_mask, lengths=self.lengths, rope_deltas=self.rope_deltas,
                        logprobs=self.logprobs)

    @property
    def bytes(self) -> int:
        tensors = [*self.keys, *self.values, self.logprobs]
        return sum(t.numel() * t.element_size() for t in tensors)


class PrefixCache(PictureStore):
    """One model's recently prefilled prefixes."""

    def __init__(self, capacity: int = CAPACITY, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(capacity, max_bytes)

    def prefix(self, model, inputs) -> RowGroup:
        """``inputs`` (one row) prefilled: from the cache where it may serve, else by
        :func:`~redgraph.decoding.rows.prefill_row`. Callers read the group and copy its rows
        (``repeated``); they never step it."""
        if not (self.enabled and torch.is_inference_mode_enabled()) or model.training or watched(model):
            return prefill_row(model, inputs)
        key = tensors_key(*(tensor for _, tensor in sorted(inputs.items())))
        weights = weights_fingerprint(model)
        entry = self._find(key, weights)
        if entry is not None:
            return entry.group(model)
        group = prefill_row(model, inputs)
        entry = _Entry.of(group)
        self._keep(key, weights, entry, entry.bytes)
        return group


def prefix_cache_of(model) -> PrefixCache:
    """The one :class:`PrefixCache` of ``model``."""
    return per_model(model, "prefix", PrefixCache)


def prefix_of(model, inputs) -> RowGroup:
    """``inputs`` prefilled, through ``model``'s :class:`PrefixCache`."""
    return prefix_cache_of(model).prefix(model, inputs)

"""Decoding rows that share one KV cache, with explicit positions for every model family.

A *row* is one branch of one question: the image branch (image + question) or a rationale
branch (rationale + question). A row is prefilled alone here (:func:`prefill_row`) or packed with
others (:mod:`redgraph.decoding.packing`); rows are then merged, left-padded, into one cache
(:func:`merge`), and one forward per step advances them all (:class:`RowGroup`).

Positions are always passed explicitly. Llama-family forwards do not derive them from the
attention mask (only ``generate`` does), and Qwen-VL models keep ``rope_deltas`` as state on the
model, which two branches sharing one model would overwrite. We compute Qwen's 3-D positions
with the model's own ``get_rope_index`` and never let the model touch that state.

Shapes: B rows in a group; L cache length (after left padding); T prompt length; V vocabulary.
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from redgraph.errors import UnsupportedError

NOT_MODEL_KWARGS = ("input_ids", "attention_mask")


class CannotMerge(Exception):
    """Rows whose caches cannot share one tensor (a sliding window already full)."""


def mrope_model(model):
    """The inner model that computes Qwen-style 3-D rope positions, or None."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "get_rope_index") else None


def new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@functools.cache
def _cache_keyword(forward_type: type) -> str:
    """The forward argument that takes the KV cache: ``cache`` from transformers 5.24 on (which warns
    on the older ``past_key_values``), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(forward_type.forward).parameters else "past_key_values"


def with_cache(model, cache) -> dict:
    """Keyword arguments that hand ``cache`` to ``model``'s forward, whichever name it uses."""
    return {_cache_keyword(type(model)): cache}


def returned_cache(output):
    """The KV cache a forward returned (``cache`` from transformers 5.24 on, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


@dataclass
class RowGroup:
    """Rows advanced together by one forward per step.

    Attributes:
        model: the shared model (never mutated).
        cache: the rows' KV cache, rows left-padded to a common length L.
        attention_mask: (B, L) 1 for real tokens, 0 for padding.
        lengths: (B,) real tokens per row, i.e. the position of the next token.
        rope_deltas: (B,) Qwen-style offset of text positions after the image, or None.
        logprobs: (B, V) float32 log-probabilities of each row's next token.
    """

    model: torch.nn.Module
    cache: object
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    rope_deltas: torch.Tensor | None
    logprobs: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.lengths.shape[0])

    def step(self, tokens: torch.Tensor) -> None:
        """Feed one token per row (B,) and refresh ``logprobs``."""
        batch = self.size
        self.attention_mask = torch.cat(
            [self.attention_mask, self.attention_mask.new_ones(batch, 1)], dim=1
        )  # (B, L + 1)
        positions = _decode_positions(self.lengths, self.rope_deltas)
        with torch.inference_mode():
            out = self.model(
                input_ids=tokens.view(batch, 1).to(self.attention_mask.device),
                attention_mask=self.attention_mask,
                position_ids=positions,
                **with_cache(self.model, self.cache),
                use_cache=True,
            )
        self.lengths = self.lengths + 1
        self.logprobs = F.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V)

    def repeated(self, rows: list[int]) -> RowGroup:
        """A new group of ``rows`` (indices into this one, repeats allowed); this group is unchanged."""
        index = torch.tensor(rows, dtype=torch.long, device=self.attention_mask.device)
        cache = copy.copy(self.cache)
        cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
        return RowGroup(
            model=self.model,
            cache=cache,
            attention_mask=self.attention_mask.index_select(0, index),
            lengths=self.lengths.index_select(0, index),
            rope_deltas=None if self.rope_deltas is None else self.rope_deltas.index_select(0, index),
            logprobs=self.logprobs.index_select(0, index),
        )

    def extend(self, suffixes: list[list[int]]) -> torch.Tensor:
        """Feed each row its own run of tokens (rows right-padded to the longest) in one forward.

        Returns the (B, S) float32 logits of every suffix position (S the longest suffix); after it,
        each row's ``logprobs`` are those after its last real token, and ``step`` continues from there.
        """
        batch = self.size
        if len(suffixes) != batch or not all(suffixes):
            raise ValueError(f"extend takes one non-empty token list per row ({batch}), got {len(suffixes)}")
        device = self.attention_mask.device
        width = max(len(s) for s in suffixes)
        tokens = torch.zeros((batch, width), dtype=torch.long, device=device)  # (B, S)
        suffix_mask = torch.zeros((batch, width), dtype=torch.long, device=device)
        for row, suffix in enumerate(suffixes):
            tokens[row, : len(suffix)] = torch.tensor(suffix, device=device)
            suffix_mask[row, : len(suffix)] = 1
        steps = torch.arange(width, device=device)
        positions = _decode_positions(self.lengths, self.rope_deltas)  # (B, 1) or (4, B, 1)
        positions = positions + steps.view(*([1] * (positions.dim() - 1)), width)  # (B, S) or (4, B, S)
        self.attention_mask = torch.cat([self.attention_mask, suffix_mask], dim=1)  # (B, L + S)
        with torch.inference_mode():
            out = self.model(
                input_ids=tokens,
                attention_mask=self.attention_mask,
                position_ids=positions,
                **with_cache(self.model, self.cache),
                use_cache=True,
            )
        logits = out.logits.float()  # (B, S, V)
        counts = torch.tensor([len(s) for s in suffixes], device=device)
        self.lengths = self.lengths + counts
        self.logprobs = F.log_softmax(logits[torch.arange(batch, device=device), counts - 1], dim=-1)  # (B, V)
        return logits

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices into this group), e.g. when their questions are finished."""
        kept = self.repeated(rows)
        self.cache, self.attention_mask, self.lengths = kept.cache, kept.attention_mask, kept.lengths
        self.rope_deltas, self.logprobs = kept.rope_deltas, kept.logprobs


def prefill_row(model, inputs) -> RowGroup:
    """Run one row's prompt (batch of 1, no padding) and return it as a group of one."""
    input_ids = inputs["input_ids"]  # (1, T)
    if input_ids.shape[0] != 1:
        raise ValueError(f"prefill_row takes one row, got a batch of {input_ids.shape[0]}")
    length = input_ids.shape[1]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    positions, rope_delta = prefill_positions(model, inputs, attention_mask)
    extra = {k: v for k, v in inputs.items() if k not in NOT_MODEL_KWARGS}
    out = prefill_forward(model, input_ids, attention_mask, positions, 1, extra)
    device = input_ids.device
    return RowGroup(
        model=model,
        cache=returned_cache(out),
        attention_mask=attention_mask.long(),
        lengths=torch.tensor([length], dtype=torch.long, device=device),
        rope_deltas=None if rope_delta is None else rope_delta.view(1).to(device),
        logprobs=F.log_softmax(out.logits[:, -1, :].float(), dim=-1),  # (1, V)
    )


def cache_of(model, keys: list[torch.Tensor], values: list[torch.Tensor]):
    """A fresh cache of ``model`` holding the given per-layer keys and values."""
    cache = new_cache(model)
    for index, (key, value) in enumerate(zip(keys, values)):
        if index >= len(cache.layers):
            raise UnsupportedError(f"cannot rebuild the cache of {type(model).__name__}: layer {index} is missing")
        cache.layers[index].update(key, value)  # fresh layer: stores them as they are
    return cache


def prefill_forward(model, input_ids, attention_mask, positions, logits_to_keep, extra: dict):
    """One prefill forward into a fresh cache (what every prefill, alone or packed, runs); each image
    through the vision tower once per model (:mod:`redgraph.models.vision_cache`)."""
    from redgraph.models.vision_cache import vision_inputs

    with torch.inference_mode():
        extra = vision_inputs(model, extra)
        return model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            **with_cache(model, new_cache(model)),
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **extra,
        )


def merge(groups: list[RowGroup]) -> RowGroup:
    """One group holding the rows of ``groups`` in order, caches left-padded to a common length.

    Raises:
        CannotMerge: a sliding-window layer is already full in some row, so rows of different
            lengths cannot share its tensor; keep those groups separate.
    """
    if len(groups) == 1:
        return groups[0]
    model = groups[0].model
    target = max(g.attention_mask.shape[1] for g in groups)
    all_keys, all_values = [], []
    for index, sample in enumerate(groups[0].cache.layers):
        window = getattr(sample, "sliding_window", None)
        if window is not None and target >= window:
            raise CannotMerge(f"layer {index} has a sliding window of {window} and rows of up to {target} tokens")
        all_keys.append(torch.cat([_left_pad(g.cache.layers[index].keys, target) for g in groups], dim=0))
        all_values.append(torch.cat([_left_pad(g.cache.layers[index].values, target) for g in groups], dim=0))
    merged_cache = cache_of(model, all_keys, all_values)
    mask = torch.cat([_left_pad_mask(g.attention_mask, target) for g in groups], dim=0)  # (B, L)
    deltas = [g.rope_deltas for g in groups]
    return RowGroup(
        model=model,
        cache=merged_cache,
        attention_mask=mask,
        lengths=torch.cat([g.lengths for g in groups]),
        rope_deltas=None if deltas[0] is None else torch.cat(deltas),
        logprobs=torch.cat([g.logprobs for g in groups], dim=0),
    )


def _left_pad(states: torch.Tensor, length: int) -> torch.Tensor:
    # states: (b, heads, t, head_dim) -> (b, heads, length, head_dim), zeros in front
    missing = length - states.shape[-2]
    return F.pad(states, (0, 0, missing, 0)) if missing else states


def _left_pad_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - mask.shape[1]
    return F.pad(mask, (missing, 0)) if missing else mask


def prefill_positions(model, inputs, attention_mask):
    """Positions for an unpadded prompt, and the row's rope delta (None for 1-D rope models)."""
    input_ids = inputs["input_ids"]
    length = input_ids.shape[1]
    text_positions = torch.arange(length, device=input_ids.device).view(1, 1, length)  # (1, 1, T)
    mrope = mrope_model(model)
    if mrope is None:
        return text_positions[0], None  # (1, T)
    grids = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw") if inputs.get(k) is not None}
    if grids:
        if inputs.get("mm_token_type_ids") is None:
            raise UnsupportedError(
                f"{type(model).__name__} needs mm_token_type_ids with an image; use the model's own processor"
            )
        vision_positions, deltas = mrope.get_rope_index(
            input_ids, mm_token_type_ids=inputs["mm_token_type_ids"], attention_mask=attention_mask, **grids
        )  # (3, 1, T), (1, 1)
        delta = deltas.view(1)
    else:
        vision_positions = text_positions.expand(3, 1, length)
        delta = torch.zeros(1, dtype=torch.long, device=input_ids.device)
    # generate's layout: row 0 holds the text positions (used for the mask), rows 1-3 the 3-D rope.
    return torch.cat([text_positions, vision_positions.to(text_positions.dtype)], dim=0), delta  # (4, 1, T)


def _decode_positions(lengths: torch.Tensor, rope_deltas: torch.Tensor | None) -> torch.Tensor:
    text = lengths.view(1, -1, 1)  # (1, B, 1): a row's next position is its token count
    if rope_deltas is None:
        return text[0]  # (B, 1)
    rope = (text + rope_deltas.view(1, -1, 1)).expand(3, -1, -1)  # (3, B, 1)
    return torch.cat([text, rope], dim=0)  # (4, B, 1)

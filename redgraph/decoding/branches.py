"""Decoding rows that share one KV cache, with explicit positions for every model family.

A *row* is one branch of one question: the image branch (image + question) or a rationale
branch (rationale + question). All rows of a decoding run are prefilled in one forward where the
family allows it: rows are *packed* end to end into a few sequences, each row attending only to
itself (a block-diagonal causal mask) at its own positions, so a short rationale prompt is never
padded to the length of a long image prompt and the vision tower runs once over every image.
Rows are then merged, left-padded, into one cache, and one forward per step advances them all.
Where packing is not exact for a family (sliding-window layers, bidirectional image attention,
attention kernels that take no custom mask), each row is prefilled alone; same results.

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

_NOT_MODEL_KWARGS = ("input_ids", "attention_mask")


class CannotMerge(Exception):
    """Rows whose caches cannot share one tensor (a sliding window already full)."""


def _mrope_model(model):
    """The inner model that computes Qwen-style 3-D rope positions, or None."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "get_rope_index") else None


def _new_cache(model):
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
    positions, rope_delta = _prefill_positions(model, inputs, attention_mask)
    extra = {k: v for k, v in inputs.items() if k not in _NOT_MODEL_KWARGS}
    out = _prefill_forward(model, input_ids, attention_mask, positions, 1, extra)
    device = input_ids.device
    return RowGroup(
        model=model,
        cache=returned_cache(out),
        attention_mask=attention_mask.long(),
        lengths=torch.tensor([length], dtype=torch.long, device=device),
        rope_deltas=None if rope_delta is None else rope_delta.view(1).to(device),
        logprobs=F.log_softmax(out.logits[:, -1, :].float(), dim=-1),  # (1, V)
    )


def auto_pack_tokens(device) -> int:
    """The packing bin size RED uses on ``device`` unless told otherwise (see BENCHMARKS.md).

    On a GPU a forward over more tokens costs little more, so every row goes into one forward.
    On CPU the work is compute-bound and a packed row loses the causal attention kernel's savings,
    so only short rows (where the cost of a forward of their own dominates) are packed.
    """
    return 4096 if torch.device(device).type == "cuda" else 256


def pack_blocker(model, rows: list) -> str | None:
    """Why ``rows`` (model inputs, one row each) cannot be prefilled packed into one forward, or None.

    Packing relies on a custom 4-D mask (each row attends only to itself) and on every layer
    attending over the whole row, so it is refused for attention kernels that ignore custom masks,
    for sliding-window layers, for families whose image tokens attend bidirectionally
    (``token_type_ids``), and for images of different sizes in families that stack them.
    """
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in ("sdpa", "eager"):
        return f"attention implementation {implementation!r} takes no custom 4-D mask"
    text_config = model.config.get_text_config()
    layer_types = getattr(text_config, "layer_types", None) or ()
    if any(kind != "full_attention" for kind in layer_types):
        return f"{type(model).__name__} has {sorted(set(layer_types) - {'full_attention'})[0]} layers"
    if getattr(text_config, "sliding_window", None) and getattr(text_config, "use_sliding_window", True):
        return f"{type(model).__name__} has sliding-window attention"
    if any("token_type_ids" in inputs for inputs in rows):
        return "image tokens attend bidirectionally (token_type_ids)"
    for key in _IMAGE_KEYS:
        shapes = {_image_shape(inputs, key) for inputs in rows if key in inputs}
        if len(shapes) > 1:
            return f"images of different sizes in {key}"
    return None


_IMAGE_KEYS = ("pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes")


_PER_ROW_KEYS = ("pixel_values", "pixel_attention_mask")  # (rows, images, ...) where pixel_attention_mask is given


def _image_shape(inputs, key: str) -> tuple[int, ...]:
    """The shape of one image of ``key`` (what must agree for images to be stacked)."""
    skip = 2 if "pixel_attention_mask" in inputs and key in _PER_ROW_KEYS else 1
    return tuple(inputs[key].shape[skip:])


def prefill_packed(model, rows: list, *, pack_tokens: int) -> list[RowGroup]:
    """Prefill every row of ``rows`` in one forward and return each as a group of one.

    Rows are placed end to end into bins of ``max(pack_tokens, longest row)`` tokens (first fit,
    longest first); the bins form one batch, right-padded to the fullest. A 4-D mask lets each
    token attend only to earlier tokens of its own row, positions restart at every row (Qwen's 3-D
    positions computed per row by the model's own ``get_rope_index``), and the images of all rows
    go through the vision tower together. The results equal :func:`prefill_row` per row up to float
    rounding; call :func:`pack_blocker` first.
    """
    lengths = [int(inputs["input_ids"].shape[1]) for inputs in rows]
    capacity = max(pack_tokens, max(lengths))
    bins: list[list[int]] = []
    room: list[int] = []
    for row in sorted(range(len(rows)), key=lambda r: -lengths[r]):
        target = next((b for b, free in enumerate(room) if free >= lengths[row]), None)
        if target is None:
            bins.append([])
            room.append(capacity)
            target = len(bins) - 1
        bins[target].append(row)
        room[target] -= lengths[row]
    width = max(capacity - free for free in room)
    first = rows[0]["input_ids"]
    device = first.device
    input_ids = torch.zeros((len(bins), width), dtype=first.dtype, device=device)  # (P, W) P bins
    token_values = {  # per-token inputs besides the ids (mm_token_type_ids), zero in the padding
        key: torch.zeros((len(bins), width), dtype=value.dtype, device=device)
        for inputs in rows for key, value in inputs.items()
        if key not in _NOT_MODEL_KWARGS and key not in _IMAGE_KEYS and value.shape == inputs["input_ids"].shape
    }
    segment = torch.full((len(bins), width), -1, dtype=torch.long, device=device)  # row of each slot
    mrope = _mrope_model(model) is not None
    positions = torch.zeros((4, len(bins), width) if mrope else (len(bins), width), dtype=torch.long, device=device)
    images: dict[str, list[torch.Tensor]] = {}
    places: dict[int, tuple[int, int]] = {}  # row -> (bin, start)
    deltas: dict[int, torch.Tensor | None] = {}
    for b, members in enumerate(bins):
        start = 0
        for row in members:
            inputs, length = rows[row], lengths[row]
            end = start + length
            input_ids[b, start:end] = inputs["input_ids"][0]
            for key in token_values:
                if key in inputs:
                    token_values[key][b, start:end] = inputs[key][0]
            segment[b, start:end] = row
            mask = inputs.get("attention_mask")
            if mask is None:
                mask = torch.ones_like(inputs["input_ids"])
            row_positions, deltas[row] = _prefill_positions(model, inputs, mask)
            positions[..., b, start:end] = row_positions[..., 0, :] if mrope else row_positions[0]
            for key in _IMAGE_KEYS:
                if key in inputs:
                    images.setdefault(key, []).append(inputs[key])
            places[row] = (b, start)
            start = end
        if start < width:
            # Padding repeats the bin's last token (never an image placeholder) and attends to itself only.
            input_ids[b, start:] = input_ids[b, start - 1]
    per_row = "pixel_attention_mask" in images  # Idefics-style: (1, images, ...), images on axis 1
    stacked = {key: torch.cat(parts, dim=1 if per_row and key in _PER_ROW_KEYS else 0) for key, parts in images.items()}
    slots = torch.arange(width, device=device)
    same_row = segment.unsqueeze(2) == segment.unsqueeze(1)  # (P, W, W)
    allowed = same_row & (slots.view(1, 1, width) <= slots.view(1, width, 1))
    allowed |= torch.eye(width, dtype=torch.bool, device=device).unsqueeze(0)  # padding attends to itself
    dtype = model.get_input_embeddings().weight.dtype  # the text layers' dtype, which the mask must match
    mask4d = torch.zeros((len(bins), 1, width, width), dtype=dtype, device=device)
    mask4d.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    last = {row: places[row][1] + lengths[row] - 1 for row in range(len(rows))}
    keep = sorted(set(last.values()))
    out = _prefill_forward(model, input_ids, mask4d, positions, torch.tensor(keep, device=device),
                           {**token_values, **stacked})
    cache = returned_cache(out)
    column = {slot: i for i, slot in enumerate(keep)}
    groups = []
    for row, length in enumerate(lengths):
        b, start = places[row]
        keys = [layer.keys[b : b + 1, :, start : start + length] for layer in cache.layers]
        values = [layer.values[b : b + 1, :, start : start + length] for layer in cache.layers]
        groups.append(RowGroup(
            model=model,
            cache=_cache_of(model, keys, values),
            attention_mask=torch.ones((1, length), dtype=torch.long, device=device),
            lengths=torch.tensor([length], dtype=torch.long, device=device),
            rope_deltas=None if deltas[row] is None else deltas[row].view(1).to(device),
            logprobs=F.log_softmax(out.logits[b : b + 1, column[last[row]], :].float(), dim=-1),  # (1, V)
        ))
    return groups


def _cache_of(model, keys: list[torch.Tensor], values: list[torch.Tensor]):
    """A fresh cache of ``model`` holding the given per-layer keys and values."""
    cache = _new_cache(model)
    for index, (key, value) in enumerate(zip(keys, values)):
        if index >= len(cache.layers):
            raise UnsupportedError(f"cannot rebuild the cache of {type(model).__name__}: layer {index} is missing")
        cache.layers[index].update(key, value)  # fresh layer: stores them as they are
    return cache


def _prefill_forward(model, input_ids, attention_mask, positions, logits_to_keep, extra: dict):
    """One prefill forward into a fresh cache (what every prefill, alone or packed, runs)."""
    with torch.inference_mode():
        return model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            **with_cache(model, _new_cache(model)),
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
    merged_cache = _cache_of(model, all_keys, all_values)
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
        inputs = [row_inputs for _, row_inputs in rows]
        # Rows of up to pack_tokens tokens are packed into one forward; longer rows run alone.
        short = [r for r, row_inputs in enumerate(inputs) if row_inputs["input_ids"].shape[1] <= pack_tokens]
        if not batched or len(short) < 2 or pack_blocker(model, [inputs[r] for r in short]) is not None:
            short = []
        groups: list[RowGroup | None] = [None] * len(inputs)
        if short:
            for r, group in zip(short, prefill_packed(model, [inputs[r] for r in short], pack_tokens=pack_tokens)):
                groups[r] = group
        for r, row_inputs in enumerate(inputs):
            if groups[r] is None:
                groups[r] = prefill_row(model, row_inputs)
        self.prefill_forwards = len(inputs) - len(short) + (1 if short else 0)
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


def _left_pad(states: torch.Tensor, length: int) -> torch.Tensor:
    # states: (b, heads, t, head_dim) -> (b, heads, length, head_dim), zeros in front
    missing = length - states.shape[-2]
    return F.pad(states, (0, 0, missing, 0)) if missing else states


def _left_pad_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - mask.shape[1]
    return F.pad(mask, (missing, 0)) if missing else mask


def _prefill_positions(model, inputs, attention_mask):
    """Positions for an unpadded prompt, and the row's rope delta (None for 1-D rope models)."""
    input_ids = inputs["input_ids"]
    length = input_ids.shape[1]
    text_positions = torch.arange(length, device=input_ids.device).view(1, 1, length)  # (1, 1, T)
    mrope = _mrope_model(model)
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

"""The embedded model's architecture: a small Qwen2-VL built from a config, with a tokenizer made
from the synthetic generator's vocabulary.

Qwen2-VL because its 3-D (temporal, height, width) rotary positions are the hardest path for RED
and it is the family users run most. Images are 128 x 128 pixels in 8-pixel patches; 2 x 2
patches merge into one of 64 image tokens.
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass

import torch

from redgraph.data.scenes import IMAGE_SIDE
from redgraph.data.synthetic import generate_items
from redgraph.errors import ConfigError
from redgraph.models.prompts import PromptFormat
from redgraph.models.tiny import ROLE_TOKENS, build_tokenizer, chat_template_for

PATCH = 8
MERGE = 2
CELL = PATCH * MERGE  # pixels: the square of the picture one merged image token covers
GRID = IMAGE_SIDE // CELL  # merged image tokens per row (and per column) of a picture
# A fixed system turn opens every prompt. Without one the image tokens are the first thing in the
# sequence, and training turned them into near-identical, huge-norm "attention sink" vectors that
# carry nothing about the picture (measured: image-answer accuracy at chance after 1,000 steps).
SYSTEM_TURN = "<|im_start|>system\nYou answer questions about images.<|im_end|>\n"
# Pixels are normalised so that white (the background of every synthetic scene) is 0: the patch
# embedding then sees only the objects and the text, not a large constant background term.
IMAGE_MEAN = (1.0, 1.0, 1.0)
IMAGE_STD = (0.5, 0.5, 0.5)
_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# How the language model's rotary frequencies are shared among the temporal, height and width
# position components (Qwen2-VL's mrope_section). "blocks" is the family's own layout: the fastest
# frequencies to time, then height, then width, which leaves rows and columns only the slowest
# (an 8 x 8 grid turns a query-key pair by at most 0.07 rad across its rows and 0.007 across its
# columns). "interleaved" gives frequency i to component i % 3, as Qwen3-VL does, so rows and
# columns get fast ones too (the shipped model's layout since 2026-12-04). Text tokens have all
# three components equal, so the layout changes nothing for them: only how image tokens are told
# apart by place.
# transformers before 5.x's rotary rewrite split the doubled section over the whole head (its
# second half repeats the frequencies), so a section must have a multiple of 3 chunks for both
# halves to give a frequency the same component; both layouts here have.
ROPE_LAYOUTS = ("blocks", "interleaved")


@dataclass(frozen=True)
class Dimensions:
    """Widths and depths of the embedded model (defaults: the shipped model)."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 768
    vision_hidden: int = 192
    vision_layers: int = 3
    vision_heads: int = 4
    vision_mlp_ratio: int = 2
    vocab: int = 1024


@functools.cache
def tokenizer_corpus(count: int = 3000) -> tuple[str, ...]:
    """Texts the tokenizer is trained on: generated questions, answers, rationales, claims and the
    prompt wordings (the train split only)."""
    fmt = PromptFormat()
    texts = [fmt.with_rationale, fmt.rationale_request, fmt.claim_check]
    for item in generate_items("train", count, seed=12345):
        texts += [item.question, item.answer, item.gold_rationale, item.misleading_rationale]
        texts += [claim for claim, _ in item.claims]
    random.Random(0).shuffle(texts)
    return tuple(texts)


def mrope_section(head_dim: int, layout: str = "blocks") -> list[int]:
    """Qwen2-VL's ``mrope_section`` for ``layout`` (one of ROPE_LAYOUTS): how many consecutive rotary
    frequencies go to time, height, width, time, ... in turn; it sums to ``head_dim / 2`` and has a
    multiple of 3 chunks (interleaved: one frequency each, the slowest one or two chunks two)."""
    if layout not in ROPE_LAYOUTS:
        raise ConfigError(f"rope layout must be one of {', '.join(ROPE_LAYOUTS)}, got {layout!r}")
    if layout == "interleaved":
        frequencies = head_dim // 2
        if frequencies < 3:
            raise ConfigError(f"the interleaved rope layout needs a head dimension of at least 6, got {head_dim}")
        doubled = frequencies % 3  # chunks of two, so that the count of chunks is a multiple of 3
        return [1] * (frequencies - 2 * doubled) + [2] * doubled
    quarter = head_dim // 8
    return [head_dim // 2 - 2 * quarter, quarter, quarter]


def build_untrained(dims: Dimensions = Dimensions(), *, seed: int = 0, rope_layout: str = "blocks",
                    image_side: int = IMAGE_SIDE):
    """A randomly initialised embedded-architecture model and its processor; ``rope_layout`` (one of
    ROPE_LAYOUTS) spreads the rotary frequencies over time, height and width; the processor resizes
    every picture to about ``image_side`` squared pixels, its aspect ratio kept.

    Returns:
        ``(model, processor)``; the model is in train mode, float32, on the CPU.
    """
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from redgraph.models.processors import image_only_processor_class

    tokenizer = build_tokenizer(ROLE_TOKENS + _VISION_TOKENS, vocab_size=dims.vocab, corpus=tokenizer_corpus())
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("image_pad", "video_pad", "vision_start", "vision_end")}
    head_dim = dims.hidden // dims.heads
    section = mrope_section(head_dim, rope_layout)
    text = dict(
        vocab_size=len(tokenizer), hidden_size=dims.hidden, intermediate_size=dims.intermediate,
        num_hidden_layers=dims.layers, num_attention_heads=dims.heads, num_key_value_heads=dims.kv_heads,
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": section},
    )
    # Qwen2-VL's vision hidden_size is the merger's output width, which feeds the text model.
    vision = dict(depth=dims.vision_layers, embed_dim=dims.vision_hidden, hidden_size=dims.hidden,
                  num_heads=dims.vision_heads, mlp_ratio=dims.vision_mlp_ratio, patch_size=PATCH,
                  spatial_merge_size=MERGE, temporal_patch_size=2, in_channels=3)
    config = transformers.Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["image_pad"], video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2VLForConditionalGeneration(config)
    model.config.redgraph_dimensions = asdict(dims)
    pixels = image_side * image_side
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels, patch_size=PATCH,
                                               merge_size=MERGE, temporal_patch_size=2,
                                               image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD))
    processor = image_only_processor_class(transformers.Qwen2VLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer,
        chat_template=(
            "{% if messages[0]['role'] != 'system' %}" + SYSTEM_TURN + "{% endif %}"
            + chat_template_for("<|vision_start|><|image_pad|><|vision_end|>")
        ),
    )
    return model, processor

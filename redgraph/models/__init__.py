"""Loading LVLMs, building their prompts, and reading images.

- :func:`load_lvlm` / :class:`LVLM`: any local transformers image-text-to-text checkpoint.
- :func:`load_image`: path, bytes or PIL image to an upright RGB image, with a pixel limit.
- :func:`build_tiny_lvlm`: tiny random models of real architectures (tests, benchmarks).
"""

from redgraph.models.images import image_sha256, load_image
from redgraph.models.loading import LVLM, load_lvlm
from redgraph.models.prompts import PromptFormat
from redgraph.models.tiny import FAMILIES, build_tiny_lvlm

__all__ = ["FAMILIES", "LVLM", "PromptFormat", "build_tiny_lvlm", "image_sha256", "load_image", "load_lvlm"]

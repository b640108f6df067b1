"""Training and evaluating the embedded model (``redgraph embedded train`` / ``evaluate``).

Above :mod:`redgraph.eval` in the layers: it builds the untrained architecture and its tokenizer
from the synthetic data's vocabulary, draws the five-task training mixture, and scores held-out
items with the decoders and the answer normaliser. Loading a trained checkpoint needs none of this
(:func:`redgraph.models.load_lvlm`).
"""

from redgraph.lab.architecture import Dimensions, build_untrained
from redgraph.lab.evaluate import METRICS, evaluate
from redgraph.lab.train import train
from redgraph.lab.train_config import TrainConfig, parse_task_weights

__all__ = ["METRICS", "Dimensions", "TrainConfig", "build_untrained", "evaluate", "parse_task_weights", "train"]

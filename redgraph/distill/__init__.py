"""SDRT self-distillation (Wu et al., arXiv 2503.01754), with the critic in the loop.

- :mod:`.traces`: the teacher's two-step reasoning traces per prompt style, its answers, and the
  critic's support of each trace (``redgraph distill traces``);
- :mod:`.weights`: the ensemble weighting (style weights x answer agreement x critic support) and
  the filter;
- :mod:`.student`: training the student's adapter on the weighted traces, base weights frozen
  (``redgraph distill train``); ``targets="gold"`` is the control;
- :mod:`.items`: one question to write traces for, and the picture it names;
- :mod:`.pictures`: items from a user's own unlabelled pictures (``--source pictures:DIR``) and the
  questions to ask of them;
- :mod:`.adapt`: one command from such a folder to an adapter and a report of what it changed on
  held-out pictures (``redgraph distill adapt``);
- the adapter itself (a representation intervention and a vision-language skip connection) lives in
  :mod:`redgraph.models.adapter`, so that loading a model can attach it.
"""

from redgraph.distill.adapt import AdaptConfig, adapt
from redgraph.distill.student import DistillConfig, distill
from redgraph.distill.traces import TraceConfig, generate_traces, read_traces
from redgraph.distill.weights import WeightConfig, weigh_traces
from redgraph.models.adapter import Adapter, AdapterConfig, load_adapter

__all__ = ["AdaptConfig", "Adapter", "AdapterConfig", "DistillConfig", "TraceConfig", "WeightConfig", "adapt", "distill",
           "generate_traces", "load_adapter", "read_traces", "weigh_traces"]

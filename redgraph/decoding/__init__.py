"""Rationale-Enhanced Decoding (RED).

``score = log_softmax(image branch) + lambda * log_softmax(rationale branch)``: the image branch
sees image + question only, the rationale branch rationale + question only.

- :class:`REDConfig`: the settings.
- :class:`REDDecoder`: the fast decoder (several branches and questions per forward).
- :class:`RationaleEnhancedLogitsProcessor`: RED inside ``model.generate``.
- :func:`red_scores`: the combination itself, for use without a model.
- :func:`score_probes`: asks the image branch questions and scores claimed answers (the critic's eyes).
"""

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDDecoder, REDRequest, REDResult, TokenAttribution
from redgraph.decoding.probes import Probe, ProbeResult, score_probes
from redgraph.decoding.processor import RationaleEnhancedLogitsProcessor
from redgraph.decoding.red import rationale_lambdas, red_scores

__all__ = [
    "Probe",
    "ProbeResult",
    "REDConfig",
    "REDDecoder",
    "REDRequest",
    "REDResult",
    "RationaleEnhancedLogitsProcessor",
    "TokenAttribution",
    "rationale_lambdas",
    "red_scores",
    "score_probes",
]

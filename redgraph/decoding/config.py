"""The one frozen configuration of Rationale-Enhanced Decoding."""

from __future__ import annotations

from dataclasses import dataclass

from redgraph.errors import ConfigError, check_non_negative, check_rationale_weight, check_rationale_weights


MAX_SEED = 2**63 - 1
# Sampling temperatures: below this the scores divided by it leave a float's range (inf, then NaN).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 100.0


@dataclass(frozen=True)
class REDConfig:
    """Settings of one RED run; validated on construction.

    The next-token score is ``log p(y | image, question) + sum_k lambda_k log p(y | rationale_k, question)``
    with ``lambda_k = rationale_weight * w_k / sum(w)``: ``rationale_weight`` is the total strength
    of the rationales, and ``rationale_weights`` (``w``) split it between them.

    Example:
        >>> REDConfig(rationale_weight=0.5, max_new_tokens=16).greedy
        True
    """

    # lambda: 0 reproduces plain greedy decoding of the image branch exactly.
    rationale_weight: float = 0.5
    # Relative weight of each rationale (split of lambda); None means equal shares.
    rationale_weights: tuple[float, ...] | None = None
    max_new_tokens: int = 32
    # Greedy when do_sample is False; otherwise sample with temperature / top_k / top_p.
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    # Generation ends at any of these strings (the string itself is cut from the answer) ...
    stop_strings: tuple[str, ...] = ()
    # ... or at any of these token ids; None means the model's own end-of-sequence ids.
    eos_token_ids: tuple[int, ...] | None = None
    # Record per-token attribution (log-probabilities under every branch).
    record_attribution: bool = True
    # With record_attribution, also record RED's this many most likely tokens at each step (0-20).
    top_logprobs: int = 0
    # Advance every branch of every question with one forward per step (False: one per branch).
    batch_branches: bool = True
    # With batch_branches, prefill the rows (each question's image branch and rationale branches)
    # of up to this many tokens in one forward, packed end to end into sequences of at most this
    # length; longer rows run in a forward of their own; 0 prefills every row alone. None: by
    # device (redgraph.decoding.packing.auto_pack_tokens). Same results either way.
    pack_tokens: int | None = None

    def __post_init__(self) -> None:
        check_rationale_weight(self.rationale_weight)
        if self.rationale_weights is not None:
            weights = tuple(self.rationale_weights)
            object.__setattr__(self, "rationale_weights", weights)
            check_rationale_weights(weights)
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.pack_tokens is not None and (
            isinstance(self.pack_tokens, bool) or not isinstance(self.pack_tokens, int) or self.pack_tokens < 0
        ):
            raise ConfigError(
                f"pack_tokens must be a non-negative integer (0: prefill each row alone) or None (by device), "
                f"got {self.pack_tokens!r}"
            )
        if isinstance(self.top_logprobs, bool) or not isinstance(self.top_logprobs, int) or not 0 <= self.top_logprobs <= 20:
            raise ConfigError(f"top_logprobs must be a whole number from 0 to 20, got {self.top_logprobs!r}")
        if self.top_logprobs and not self.record_attribution:
            raise ConfigError("top_logprobs needs record_attribution=True (they are part of each token's record)")
        if not isinstance(self.do_sample, bool):
            raise ConfigError(f"do_sample must be True or False, got {self.do_sample!r}")
        check_non_negative("temperature", self.temperature)
        if self.do_sample and self.temperature == 0:
            raise ConfigError("temperature 0 with do_sample=True is ambiguous; use do_sample=False for greedy decoding")
        if self.do_sample and not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:
            raise ConfigError(f"temperature must be from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} when sampling (lower "
                              f"divides the scores past a float's range), got {self.temperature!r}; use do_sample=False "
                              "for greedy decoding")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise ConfigError(f"seed must be a whole number from 0 to 2**63 - 1 (a 64-bit seed), or None; got "
                              f"{self.seed!r:.80}")
        if isinstance(self.stop_strings, str):
            raise ConfigError(f"stop_strings must be a tuple of strings, got the single string {self.stop_strings!r}; wrap it: ({self.stop_strings!r},)")
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        for stop in self.stop_strings:
            if not isinstance(stop, str) or not stop:
                raise ConfigError(f"each stop string must be a non-empty string, got {stop!r}")
        if self.eos_token_ids is not None:
            object.__setattr__(self, "eos_token_ids", tuple(self.eos_token_ids))
            for token in self.eos_token_ids:
                if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                    raise ConfigError(f"eos_token_ids must be non-negative integers, got {token!r}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample

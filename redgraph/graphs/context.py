"""A run's models and settings (:class:`RunContext`, a frozen dataclass, never checkpointed), and the
one place they are built: :func:`make_context` from Python, :func:`resolve_context` from the JSON
settings a LangGraph server passes.

Example:
    >>> context = make_context(rationales=2, rounds=3)  # doctest: +SKIP
    >>> redgraph.ask("chart.png", "Which bar is the tallest?", context)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from typing_extensions import TypedDict

from redgraph.agents.critic import Critic
from redgraph.agents.reasoner import Reasoner
from redgraph.errors import (
    MAX_ANSWER_TOKENS,
    MAX_RATIONALES,
    MAX_ROUNDS,
    ConfigError,
    check_rationale_weight,
    check_whole_number,
)

OnExhausted = Literal["image_only", "best_supported", "human_review"]
POLICIES: tuple[str, ...] = ("image_only", "best_supported", "human_review")
OnUnsure = Literal["image_only", "rationale", "human_review"]
UNSURE_POLICIES: tuple[str, ...] = ("image_only", "rationale", "human_review")


@dataclass(frozen=True)
class RunContext:
    """One run's models and settings.

    Attributes:
        answerer: the local LVLM that decodes with RED.
        reasoner: writes rationales (:class:`redgraph.agents.LocalReasoner` or another).
        critic: reviews them (:class:`redgraph.agents.LocalCritic` or another).
        rationale_weight: RED's lambda, shared among accepted rationales by support.
        rationales: K, rationales per round.
        rounds: most reasoning rounds (the first included) before ``on_exhausted`` applies.
        on_exhausted: when the last round is still rejected: answer from the image alone (the
            default; flagged), with the best-supported rationale (flagged), or pause for a person
            (``interrupt``). A rejected rationale decides an answer only where a user chose so.
        on_unsure: when no rationale is rejected but the image cannot tell of some claims (flag
            ``image_unsure``): answer from the image and the accepted rationales alone (the
            default), with the unsure rationales at their support too (``rationale``), or pause
            for a person.
        max_new_tokens: longest answer.
        should_stop: asked before each node and at every answer token; when it answers True the run
            stops with :class:`redgraph.errors.Cancelled` (a server's client went away, or its
            deadline passed). Not a setting: it is not recorded.
        images: pixels already loaded and limited by the run's entry point, by sha256; the nodes
            use them instead of reading the file again (``ask`` fills it in).
    """

    answerer: Any
    reasoner: Reasoner
    critic: Critic
    rationale_weight: float = 1.0
    rationales: int = 1
    rounds: int = 2
    on_exhausted: OnExhausted = "image_only"
    on_unsure: OnUnsure = "image_only"
    max_new_tokens: int = 16
    should_stop: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    images: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, most in (("rationales", MAX_RATIONALES), ("rounds", MAX_ROUNDS), ("max_new_tokens", MAX_ANSWER_TOKENS)):
            check_whole_number(name, getattr(self, name), maximum=most)
        check_rationale_weight(self.rationale_weight)
        if self.on_exhausted not in POLICIES:
            raise ConfigError(f"on_exhausted must be one of {', '.join(POLICIES)}, got {self.on_exhausted!r}")
        if self.on_unsure not in UNSURE_POLICIES:
            raise ConfigError(f"on_unsure must be one of {', '.join(UNSURE_POLICIES)}, got {self.on_unsure!r}")

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings recorded in the trace."""
        return {
            "rationale_weight": self.rationale_weight, "rationales": self.rationales, "rounds": self.rounds,
            "on_exhausted": self.on_exhausted, "on_unsure": self.on_unsure, "max_new_tokens": self.max_new_tokens,
            "answerer": getattr(self.answerer, "name", type(self.answerer).__name__),
            "reasoner": type(self.reasoner).__name__, "critic": type(self.critic).__name__,
            # How a local critic checks claims, and what turns them into questions.
            "critic_scoring": getattr(self.critic, "scoring", None),
            "decomposers": [d.name for d in getattr(self.critic, "decomposers", ())],
            # Who checks the claims (the LVLM alone, or with an OCR expert beside it), and how they combine.
            "experts": list(getattr(self.critic, "expert_names", ())),
            # When the readers write and check (pictures beyond the model's range, by default), and which.
            "readers": getattr(self.reasoner, "readers", "never"),
            "reader_experts": list(getattr(self.critic, "reader_names", ())),
            "combine": getattr(self.critic, "combine", None),
        }


# The settings a run records at its start and keeps when resumed with another (or no) context.
RUN_SETTINGS = ("rationale_weight", "rationales", "rounds", "on_exhausted", "on_unsure", "max_new_tokens")


def run_setting(state: Mapping[str, Any], context: RunContext, name: str) -> Any:
    """``name`` as the run recorded it at its start, else the context's (a run started before
    settings were recorded)."""
    return (state.get("settings") or {}).get(name, getattr(context, name))


# What a JSON context (LangGraph server, Studio) may set: the model and reasoner, and RunContext's settings.
CONTEXT_SETTINGS = ("model", "reasoner", "base_url", "styles", "critic_scoring", "decomposer", "experts", "readers",
                    "rationale_weight",
                    "rationales", "rounds", "on_exhausted", "on_unsure", "max_new_tokens")


class ServedContext(TypedDict, total=False):
    """The JSON context a LangGraph server run may set (all optional; ``CONTEXT_SETTINGS``): the
    served graph's context schema, which LangGraph Studio shows."""

    model: str  # a checkpoint folder; default: the embedded model
    reasoner: str  # "local", or a model name of an OpenAI-compatible server at base_url
    base_url: str
    styles: list[str]  # prompt-library styles of the reasoner
    critic_scoring: Literal["probes", "p_yes", "both"]
    decomposer: str
    experts: list[str]  # who checks the claims: ["lvlm"] (the default) or ["lvlm", "ocr"]
    readers: Literal["out_of_range", "always", "never"]  # when the readers write and check
    rationale_weight: float
    rationales: int
    rounds: int
    on_exhausted: OnExhausted
    on_unsure: OnUnsure
    max_new_tokens: int


def resolve_context(context: Any) -> RunContext:
    """The run context of a graph call: a :class:`RunContext` as given, or one built from JSON
    settings (see ``CONTEXT_SETTINGS``; None means all defaults, the embedded model), as the
    LangGraph server passes them. Models are loaded once per model name."""
    if isinstance(context, RunContext):
        return context
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise ConfigError(f"the graph's context must be a RunContext or a JSON object of settings, got {type(context).__name__}")
    unknown = sorted(set(context) - set(CONTEXT_SETTINGS))
    if unknown:
        raise ConfigError(f"unknown context settings {unknown}; use any of {', '.join(CONTEXT_SETTINGS)}")
    return _context_from_settings(json.dumps(dict(context), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _context_from_settings(key: str) -> RunContext:
    settings = json.loads(key)
    model = _served_model(settings.pop("model", None))
    styles = settings.pop("styles", None)
    return make_context(model, reasoner=settings.pop("reasoner", "local"), base_url=settings.pop("base_url", None),
                        styles=tuple(styles) if styles else None, **settings)


@functools.lru_cache(maxsize=4)
def _served_model(model: str | None):
    from redgraph.models.loading import load_lvlm

    return load_lvlm(model)


def make_context(
    model: Any = None,
    *,
    reasoner: Any = "local",
    critic: Any = "local",
    styles: tuple[str, ...] | None = None,
    base_url: str | None = None,
    critic_scoring: str = "probes",
    decomposer: str = "grammar",
    accept_at: float = 0.5,
    experts: str | Sequence[str] = "lvlm",
    combine: str = "agree",
    readers: str = "out_of_range",
    **settings: Any,
) -> RunContext:
    """A :class:`RunContext` whose answerer (and local reasoner and critic) is ``model`` (a path,
    hub id or loaded :class:`redgraph.models.LVLM`), the embedded model when None.

    ``reasoner``: ``"local"``, ``"openai:MODEL"`` (any OpenAI-compatible server at ``base_url``,
    key from ``$OPENAI_API_KEY``) or a reasoner object; ``critic``: ``"local"`` or a critic object.
    ``styles``: prompt-library styles (default ``facts`` locally, ``step_by_step`` remotely).
    ``critic_scoring``: how the local critic checks claims, ``"probes"`` (asks the image), ``"p_yes"``
    or ``"both"``. ``decomposer``: what turns claims outside the synthetic grammar into probes:
    ``"grammar"`` (none), ``"lvlm"`` (the local model) or ``"openai:MODEL"`` (a chat model at
    ``base_url``, structured output). ``accept_at``: the local critic's support threshold.
    ``experts``: who checks the claims, ``"lvlm"`` (the model's own eyes) or ``"lvlm,ocr"`` (with an
    OCR expert beside it for titles and fields: ``pip install 'redgraph[ocr]'`` and the tesseract
    program); ``combine``: how their readings decide a claim, ``"agree"`` or ``"veto"``
    (:mod:`redgraph.agents.experts`).
    ``readers``: when the readers (the text reader installed with redgraph, Tesseract where installed,
    the bar-chart reader; :mod:`redgraph.agents.reading`) write a rationale beside the reasoner and
    check claims for the critic: ``"out_of_range"`` (the default: on pictures beyond the model's
    calibrated range, where its eyes cannot read), ``"always"`` (they write on every picture, and check
    where the model's eyes cannot) or ``"never"``.
    ``settings`` are RunContext fields (rationale_weight, rationales, rounds, on_exhausted, ...)."""
    from redgraph.agents.critic import LocalCritic
    from redgraph.agents.experts import check_combine, make_experts, make_readers, parse_experts
    from redgraph.agents.reasoner import LocalReasoner
    from redgraph.models.loading import LVLM, load_lvlm

    if isinstance(reasoner, str) and reasoner != "local" and not reasoner.startswith("openai:"):
        raise ConfigError(f"reasoner {reasoner!r} is not understood; use 'local', 'openai:MODEL' or a reasoner object")
    if isinstance(critic, str) and critic != "local":
        raise ConfigError(f"critic {critic!r} is not understood; use 'local' or a critic object")
    from redgraph.agents.reading import WHEN, ReasonerTeam

    names = parse_experts(experts)
    check_combine(combine)
    if readers not in WHEN:
        raise ConfigError(f"readers must be one of {', '.join(WHEN)}, got {readers!r}")
    if not isinstance(critic, str) and ((critic_scoring, decomposer, accept_at, names, combine)
                                        != ("probes", "grammar", 0.5, ("lvlm",), "agree")):
        raise ConfigError("critic_scoring, decomposer, accept_at, experts and combine configure the local critic; a "
                          "critic object was given, so set them on it instead")
    if not isinstance(decomposer, str) or (decomposer not in ("grammar", "lvlm") and not decomposer.startswith("openai:")):
        raise ConfigError(f"decomposer {decomposer!r} is not understood; use 'grammar', 'lvlm' or 'openai:MODEL'")
    if isinstance(reasoner, str) and reasoner.startswith("openai:"):
        from redgraph.agents.remote import OpenAIReasoner

        reasoner = OpenAIReasoner(reasoner.split(":", 1)[1], base_url=base_url, styles=styles or ("step_by_step",))

    lvlm = model if isinstance(model, LVLM) else load_lvlm(model)
    if critic == "local":
        critic = LocalCritic(lvlm, accept_at=accept_at, scoring=critic_scoring,
                             decomposers=_decomposers(decomposer, lvlm, base_url), experts=make_experts(names),
                             combine=combine,
                             readers=make_readers() if readers != "never" and critic_scoring == "probes" else ())
    if reasoner == "local":
        reasoner = LocalReasoner(lvlm, styles=styles or ("facts",))
    if readers != "never" and not isinstance(reasoner, ReasonerTeam):
        reasoner = ReasonerTeam(reasoner, lvlm, readers=readers)
    return RunContext(answerer=lvlm, reasoner=reasoner, critic=critic, **settings)


def _decomposers(name: str, lvlm, base_url: str | None) -> tuple:
    """The grammar first; then the named decomposer for claims outside it."""
    from redgraph.agents.decompose import ChatDecomposer, GrammarDecomposer, LVLMDecomposer, model_vocabulary

    grammar = GrammarDecomposer(model_vocabulary(lvlm))  # in the words the critic's model was trained on
    if name == "lvlm":
        return grammar, LVLMDecomposer(lvlm)
    if name.startswith("openai:"):
        from redgraph.agents.remote import OpenAIReasoner

        return grammar, ChatDecomposer(OpenAIReasoner(name.split(":", 1)[1], base_url=base_url))
    return (grammar,)


# The LangChain ``max_concurrency`` of whoever called ``ask``, while its graph runs (unset elsewhere).
_CALLERS_LIMIT: ContextVar[int | None] = ContextVar("redgraph_callers_max_concurrency")


@contextlib.contextmanager
def one_step_at_a_time(on_token: object) -> Iterator[dict]:
    """The LangChain config keys a run of ``ask`` streams its graph with, while it runs.

    Each step of the graph runs one node, so without a token consumer (the nodes then run in the
    caller's thread) the run says ``max_concurrency=1``: LangGraph's executor then writes the run's
    checkpoints on one thread instead of starting two or three per run (measured in BENCHMARKS.md,
    "Graph overhead"). With a token consumer LangGraph runs each node on that executor beside a
    waiter, so the limit stays LangChain's default. LangChain hands a run's config down to whatever
    its nodes call; :func:`callers_config` puts the caller's own limit back around the agents.
    """
    token = _CALLERS_LIMIT.set(_callers_limit())
    try:
        yield {} if on_token is not None else {"max_concurrency": 1}
    finally:
        _CALLERS_LIMIT.reset(token)


def _callers_limit() -> int | None:
    from langchain_core.runnables.config import var_child_runnable_config

    return (var_child_runnable_config.get() or {}).get("max_concurrency")


@contextlib.contextmanager
def callers_config() -> Iterator[None]:
    """Around an agent's call in a node: LangChain's ``max_concurrency`` as the caller of ``ask``
    had it (None: no limit), not the one step at a time of the graph's own loop. A reasoner's own
    parallel chain keeps its parallel branches. Outside a run of ``ask`` (a LangGraph server's run)
    nothing changes."""
    try:
        limit = _CALLERS_LIMIT.get()
    except LookupError:
        yield
        return
    from langchain_core.runnables.config import var_child_runnable_config

    config = dict(var_child_runnable_config.get() or {})
    if config.get("max_concurrency") == limit:
        yield
        return
    config["max_concurrency"] = limit  # None is LangChain's "not set": ensure_config leaves it out
    token = var_child_runnable_config.set(config)  # type: ignore[arg-type]
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)

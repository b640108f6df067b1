"""The agents: reasoners (local, OpenAI-compatible, LangChain, scripted), critics and the decomposers
that turn claims into questions for the image, and the answerer. Nothing here knows LangGraph: the
graph's nodes (:mod:`redgraph.graphs.nodes`) call these."""

from redgraph.agents.critic import (
    ChatCritic,
    ClaimCheck,
    ClaimCritic,
    Critic,
    CriticReport,
    LocalCritic,
    RationaleReview,
)
from redgraph.agents.decompose import ChatDecomposer, ClaimProbes, Decomposer, GrammarDecomposer, LVLMDecomposer
from redgraph.agents.prompt_library import STYLES, PromptStyle, get_style
from redgraph.agents.rationale_text import InjectionFinding, find_injections, split_claims
from redgraph.agents.reasoner import LocalReasoner, Rationale, Reasoner, StyledReasoner
from redgraph.agents.scripted import ScriptedReasoner

__all__ = [
    "STYLES",
    "ChatCritic",
    "ChatDecomposer",
    "ClaimCheck",
    "ClaimCritic",
    "ClaimProbes",
    "Critic",
    "CriticReport",
    "Decomposer",
    "GrammarDecomposer",
    "InjectionFinding",
    "LVLMDecomposer",
    "LocalCritic",
    "LocalReasoner",
    "PromptStyle",
    "Rationale",
    "RationaleReview",
    "Reasoner",
    "ScriptedReasoner",
    "StyledReasoner",
    "find_injections",
    "get_style",
    "split_claims",
]

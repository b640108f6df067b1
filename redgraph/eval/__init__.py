"""Evaluation: datasets, the harness behind ``redgraph eval`` (modes x rationale sources x lambda,
resumable, shardable), metrics, tables and plots, and answer normalisation after the VQA rules."""

from redgraph.eval.datasets import EvalItem, load_dataset
from redgraph.eval.merge import merge
from redgraph.eval.normalize import answers_match, normalize_answer
from redgraph.eval.plan import MODES, SOURCES, EvalConfig
from redgraph.eval.report import summarise
from redgraph.eval.runner import run_eval

__all__ = [
    "MODES", "SOURCES", "EvalConfig", "EvalItem", "answers_match", "load_dataset", "merge", "normalize_answer",
    "run_eval", "summarise",
]

"""SDRT self-distillation (Wu et al., arXiv 2503.01754): the student's adapter (a representation
intervention and a vision-language skip connection over a frozen base model)."""

from redgraph.models.adapter import Adapter, AdapterConfig, load_adapter

__all__ = ["Adapter", "AdapterConfig", "load_adapter"]

"""``redgraph serve``: an OpenAI-compatible HTTP server with RED, and the whole graph over HTTP.

Needs the ``serve`` extra (``pip install 'redgraph[serve]'``: FastAPI and uvicorn).
"""

from redgraph.serve.app import API_KEY_ENV, ServerSettings, check_bind, create_app
from redgraph.serve.batcher import DecodeBatcher, ServerBusy

__all__ = ["API_KEY_ENV", "DecodeBatcher", "ServerBusy", "ServerSettings", "check_bind", "create_app"]

"""``redgraph serve``: an OpenAI-compatible HTTP server with RED, and the whole graph over HTTP.

Needs the ``serve`` extra (``pip install 'redgraph[serve]'``: FastAPI and uvicorn).
"""

from redgraph.serve.app import create_app
from redgraph.serve.batcher import DecodeBatcher, ServerBusy
from redgraph.serve.settings import SERVER_KEY_ENV, ServerSettings, check_bind

API_KEY_ENV = SERVER_KEY_ENV  # the old name

__all__ = ["API_KEY_ENV", "SERVER_KEY_ENV", "DecodeBatcher", "ServerBusy", "ServerSettings", "check_bind", "create_app"]

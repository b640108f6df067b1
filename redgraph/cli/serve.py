"""``redgraph serve`` (the OpenAI-compatible server) and ``redgraph mcp``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from redgraph.cli.app import app, console, fail, load_model
from redgraph.errors import RedgraphError


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint path or hub id; default: the embedded model.")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="REDGRAPH_API_KEY", show_envvar=True,
                                                   help="Require 'Authorization: Bearer KEY' on every /v1 request.")] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Name clients send as 'model' (default: the model's name).")] = None,
    allow_remote_images: Annotated[bool, typer.Option(help="Fetch http(s) image URLs (refused by default).")] = False,
    max_batch: Annotated[int, typer.Option(min=1, help="Most chat requests decoded together.")] = 8,
    max_pending: Annotated[int, typer.Option(min=1, help="Most chat requests waiting or decoding; more get 503.")] = 32,
    max_body_mb: Annotated[float, typer.Option(min=0.01, help="Largest request body, in MiB.")] = 16.0,
    request_timeout: Annotated[float, typer.Option(help="Seconds a request may run before it is stopped (504); "
                                                        "a client that disconnects stops its request at once.")] = 120.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request body may take to arrive whole; a slower or "
                                                     "partial upload gets 408 and its connection closed.")] = 30.0,
    max_connections: Annotated[int, typer.Option(min=1, help="Most open connections; more get 503.")] = 128,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible chat completions (RED with a 'rationale' field) and the graph."""
    try:
        try:
            import uvicorn

            from redgraph.serve import ServerSettings, check_bind, create_app
        except ImportError as exc:
            raise RedgraphError(f"the server needs FastAPI and uvicorn ({exc}); install them: pip install 'redgraph[serve]'") from exc
        check_bind(host, api_key)
        settings = ServerSettings(model_name=model_name, api_key=api_key, allow_remote_images=allow_remote_images,
                                  max_batch=max_batch, max_pending=max_pending, max_body_bytes=int(max_body_mb * 1024 * 1024),
                                  request_timeout_s=request_timeout, body_timeout_s=body_timeout,
                                  max_connections=max_connections)
        with console.status("loading the model"):
            lvlm = load_model(model)
        application = create_app(lvlm, settings)
    except RedgraphError as exc:
        fail(exc)
    console.print(f"serving [bold]{escape(application.state.model_name)}[/] on http://{escape(host)}:{port}/v1"
                  + ("" if api_key else " (no API key: loopback only)"))
    uvicorn.run(application, host=host, port=port, log_level="warning", limit_concurrency=settings.max_connections)


@app.command()
def mcp(
    model: Annotated[Optional[str], typer.Option(help="Checkpoint path or hub id; default: the embedded model.")] = None,
    trace_dir: Annotated[Optional[Path], typer.Option(help="Where ask_image saves traces; default: REDGRAPH_HOME/traces.")] = None,
    experts: Annotated[str, typer.Option(help="Who checks the claims: lvlm, or lvlm,ocr (with an OCR expert: pip "
                                              "install 'redgraph[ocr]' and the tesseract program).")] = "lvlm",
) -> None:
    """Run the MCP server over stdio (tools: ask_image, verify_trace)."""
    try:
        try:
            from redgraph.tools.mcp import build_server
        except ImportError as exc:
            raise RedgraphError(f"the MCP server needs the mcp package ({exc}); install it: pip install 'redgraph[mcp]'") from exc
        server = build_server(model, trace_dir=trace_dir, experts=experts)
    except RedgraphError as exc:
        fail(exc)
    server.run("stdio")

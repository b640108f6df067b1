"""The MCP server's old import path; it lives in :mod:`redgraph.tools.mcp`."""

from redgraph.tools.mcp import build_server

__all__ = ["build_server"]

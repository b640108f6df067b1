"""redgraph as a tool for other agents: the LangChain tool (:func:`make_ask_image_tool`), the MCP
server (:mod:`redgraph.tools.mcp`, ``redgraph mcp``) and the run summary both return."""

from redgraph.tools.langchain import AskImageArgs, make_ask_image_tool

__all__ = ["AskImageArgs", "make_ask_image_tool"]

"""The package's import arrows run one way (DESIGN.md, "Layout"): no circle, nothing imports from a
layer above it, no private name crosses modules, and the agents know nothing of LangGraph.

Imports are read from the source (lazy ones inside functions included), so the test sees every
arrow a reader would, not only those taken at import time."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "redgraph"
# Bottom to top. Modules at the package root sit with the layer they belong to.
LAYERS = ["errors", "data", "examples", "trace", "models", "readers", "decoding", "agents", "graphs", "tools", "eval", "lab",
          "distill", "serve", "cli"]
ROOT_MODULES = {"errors": "errors"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every redgraph import in the file; a submodule imported by name counts as it."""
    arrows = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "redgraph":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                arrows.append((submodule, None) if submodule in MODULES else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            arrows += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "redgraph"]
    return arrows


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package root re-exports lazily; it sits above everything
    return ROOT_MODULES.get(parts[1], parts[1])


EDGES = {module: {target for target, _ in _imports(path) if target in MODULES and target != module}
         for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    unknown = sorted({_layer(m) for m in MODULES} - set(LAYERS) - {None})
    assert not unknown, f"add these to LAYERS (and DESIGN.md): {unknown}"


def test_no_import_runs_up_the_layers():
    upward = [f"{source} -> {target}" for source, targets in EDGES.items() for target in targets
              if _layer(source) and _layer(target) and LAYERS.index(_layer(target)) > LAYERS.index(_layer(source))]
    assert not upward, upward


def test_no_import_circle():
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(EDGES.get(module, ())):
            if state[target] == 1:
                circles.append(path[path.index(target):] + [target])
            elif state[target] == 0:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(MODULES):
        if state[module] == 0:
            visit(module, [module])
    assert not circles, circles


def test_no_private_name_is_imported_across_modules():
    crossing = [f"{module}: {target}.{name}" for module, path in MODULES.items() for target, name in _imports(path)
                if name is not None and name.startswith("_") and not name.endswith("__") and target != module]
    assert not crossing, crossing


def test_the_agents_know_nothing_of_langgraph():
    for module, path in MODULES.items():
        if module.startswith("redgraph.agents"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
            names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            assert not [n for n in names if n.split(".")[0] == "langgraph"], module


def test_red_is_one_step_from_the_root_and_the_wiring_one_more():
    red = PACKAGE / "decoding" / "red.py"
    assert "def red_scores(" in red.read_text(encoding="utf-8")
    assert "add_conditional_edges" in (PACKAGE / "graphs" / "graph.py").read_text(encoding="utf-8")


def test_no_shim_module_is_left():
    """Issue 42: old import paths kept as shims (interop, mcp_server) are gone; a module is where it belongs."""
    assert not (PACKAGE / "interop.py").exists() and not (PACKAGE / "mcp_server.py").exists()
    assert set(ROOT_MODULES) == {"errors"}

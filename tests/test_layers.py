"""The import graph of the package: no cycles (function-level imports included, so none can
dodge one), and the maths core imports nothing from the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sanode"

# the maths: the model, its integrators and backward pass, the patterns, fixed points, metrics
CORE = {"model", "integrate", "euler_grad", "patterns", "converge", "metrics", "noise", "products"}
# what sits above training: the pipeline, its analyses and probes, the commands
PIPELINE = {
    "study",
    "validate",
    "tune",
    "tracking",
    "selection",
    "layout",
    "tables",
    "plots",
    "pipeline",
    "report",
    "cli",
    "analyses",
    "probes",
    "settings",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(tree: ast.AST, package: list[str], modules: dict[str, Path]) -> set[str]:
    """The package modules a module's ``tree`` imports (``package``: its package's parts)."""
    deps: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue  # never runs
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                deps.add(full if full in modules else target)
        todo.extend(ast.iter_child_nodes(node))
    return {d for d in deps if d in modules}


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (not under
    ``if TYPE_CHECKING:``)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        graph[name] = _imports(ast.parse(path.read_text()), package, modules) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_package_has_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_maths_core_imports_nothing_from_the_layers_above():
    graph = _graph()
    for module in CORE:
        above = {d for d in graph[f"sanode.{module}"] if d.split(".")[1] in PIPELINE}
        assert not above, f"sanode.{module} imports {sorted(above)}"
        assert graph[f"sanode.{module}"] <= {f"sanode.{m}" for m in CORE} | {"sanode.config"}


def test_config_validation_sits_above_the_study_settings_and_the_analyses():
    graph = _graph()
    assert {"sanode.study", "sanode.analyses"} <= graph["sanode.validate"]
    assert "sanode.validate" not in graph["sanode.study"]
    assert not any(d.startswith("sanode.analyses") for d in graph["sanode.study"])

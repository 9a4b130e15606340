"""The import graph of the package: no cycles (function-level imports included, so none can
dodge one), and each layer folder imports only from itself and the layers below it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sanode"

# the layers, lowest first: a module imports only from its own layer and those below it
LAYERS = [
    ("core",),  # the maths: the model, integrators, backward pass, patterns, metrics, noise
    # the settings, their words and checks, their type check, file formats, the torch side
    ("config", "choices", "config_checks", "typecheck", "files", "runtime"),
    ("data",),
    ("training",),
    ("probes",),  # the paper's measurements on one model
    ("pipeline",),  # the study: settings, Ray Tune, MLflow, stages, analyses, tables, figures
    ("cli",),
    ("lab",),  # the measurements (bench, time to accuracy, ablation): above the product
]
PRODUCT = ("core", "config", "choices", "config_checks", "typecheck", "files", "runtime",
           "data", "training", "probes", "pipeline", "cli")  # fmt: skip  # fmt: skip
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


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


def _layer(module: str) -> int | None:
    """The rank of ``sanode.<top>...`` in :data:`LAYERS` (None: the package's own
    ``__init__``: ``__version__`` and the lazy public API, importable from any layer)."""
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else None


def test_every_module_sits_in_a_layer():
    assert {m.split(".")[1] for m in _graph() if "." in m} <= set(RANK)


def test_each_layer_imports_only_from_itself_and_the_layers_below():
    graph = _graph()
    wrong = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
        for module, deps in graph.items()
        if _layer(module) is not None
        for dep in deps
        if _layer(dep) is not None and _layer(dep) > _layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_maths_core_imports_only_the_core():
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("sanode.core"):
            assert all(d.startswith("sanode.core") for d in deps), (module, deps)


def test_the_old_flat_module_paths_import_the_moved_modules():
    """Models pickled before the layer folders name ``sanode.model.SANode``; those paths
    resolve to the moved modules themselves (not second copies)."""
    import pickle

    import sanode
    import sanode.core.model
    import sanode.pipeline.analyses.base

    for old, new in sanode.MOVED.items():
        assert importlib.import_module(f"sanode.{old}") is importlib.import_module(
            f"sanode.{new}"
        ), old
    assert importlib.import_module("sanode.analyses.base") is sanode.pipeline.analyses.base
    assert sanode.core.model.__spec__.name == "sanode.core.model"
    # protocol 0 names a class as text lines, so the module path can be edited in place
    old_pickle = pickle.dumps(sanode.core.model.SANode, protocol=0).replace(
        b"sanode.core.model", b"sanode.model"
    )
    assert b"sanode.model" in old_pickle
    assert pickle.loads(old_pickle) is sanode.core.model.SANode


def test_config_validation_sits_above_the_study_settings_and_the_analyses():
    graph = _graph()
    assert {"sanode.pipeline.study", "sanode.pipeline.analyses"} <= graph[
        "sanode.pipeline.validate"
    ]
    assert "sanode.pipeline.validate" not in graph["sanode.pipeline.study"]
    assert not any(d.startswith("sanode.pipeline.analyses") for d in graph["sanode.pipeline.study"])


def test_the_product_imports_nothing_from_the_lab():
    """The measurement code (sanode.lab) plugs into the product through entry points; no
    module of the product imports it, anywhere in its body."""
    graph = _graph()
    offending = sorted(
        f"{name} -> {dep}"
        for name, deps in graph.items()
        if name.split(".")[1:2] and name.split(".")[1] in PRODUCT
        for dep in deps
        if dep.startswith("sanode.lab")
    )
    assert offending == []
    assert any(name.startswith("sanode.lab.") for name in graph)  # the lab is there


def test_the_lab_reaches_the_command_and_the_report_as_entry_points():
    from sanode.cli import build_parser
    from sanode.pipeline.report import renderers

    parser = build_parser()
    text = parser.format_help()
    assert all(name in text for name in ("bench", "time-to-accuracy", "ablation"))
    assert {"bench", "tta", "levers", "ablation"} <= set(renderers())

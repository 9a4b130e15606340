"""sanode: stable-attractor neural ODE classifiers (SA-nODE) and their study pipeline.

The layers, each importing only from those before it (``tests/test_layers.py``):
``core`` (the maths) -> ``config`` / ``typecheck`` / ``files`` (settings, file formats) ->
``data`` -> ``training`` -> ``probes`` -> ``pipeline`` (with its ``analyses``) -> ``cli``.

The public names are imported on first use, so light modules (``sanode.config``,
``sanode.pipeline.study``) load without torch. The flat module paths of versions before the
layer folders (``sanode.model``, ``sanode.train``, ...) still import, as the moved modules
themselves: models pickled by those versions (MLflow registry versions) load unchanged.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

from .core import lapack_env

# before anything loads torch or scipy's LAPACK (sanode.core.lapack_env: why)
lapack_env.prepare()

__version__ = "0.1.0"
__all__ = [
    "SOLVERS",
    "Dynamics",
    "SANode",
    "TrainConfig",
    "block_patterns",
    "evaluate",
    "load_model",
    "train",
]

_WHERE = {
    "SOLVERS": "core.integrate",
    "Dynamics": "core.integrate",
    "SANode": "core.model",
    "TrainConfig": "config",
    "block_patterns": "core.patterns",
    "evaluate": "training.evaluate",
    "load_model": "training.checkpoint",
    "train": "training.train",
}

# module paths before the layer folders -> where the modules live now
MOVED = {
    **{
        m: f"core.{m}"
        for m in (
            "model",
            "integrate",
            "euler_grad",
            "patterns",
            "converge",
            "metrics",
            "noise",
            "products",
        )
    },
    **{m: f"data.{m}" for m in ("datasets", "letters", "augment", "prepare")},
    **{
        m: f"training.{m}"
        for m in (
            "train",
            "losses",
            "checkpoint",
            "evaluate",
            "memory",
        )
    },
    **{m: f"lab.{m}" for m in ("time_to_accuracy", "bench")},
    **{
        m: f"pipeline.{m}"
        for m in (
            "study",
            "settings",
            "validate",
            "tune",
            "tracking",
            "selection",
            "layout",
            "tables",
            "plots",
            "report",
            "robustness",
            "classify",
            "analyses",
        )
    },
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``sanode.<old>[.<sub>]`` as the module now at ``sanode.<new>[.<sub>]`` (the
    same module object, not a second copy)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    @staticmethod
    def _new_name(fullname: str) -> str | None:
        head, _, rest = fullname.partition(".")
        first, _, sub = rest.partition(".")
        if head != __name__ or first not in MOVED:
            return None
        return ".".join([__name__, MOVED[first], *([sub] if sub else [])])

    def find_spec(self, fullname, path=None, target=None):
        if self._new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(self._new_name(spec.name))
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # the import system set the alias's spec on the module: give it its own back
        for spec in self._specs.values():
            if spec is not None and spec.name == module.__name__:
                module.__spec__ = spec


# first: an installed copy of an older version must not answer for the old paths
sys.meta_path.insert(0, _MovedModules())


def __getattr__(name: str):
    if name in MOVED:  # ``sanode.model`` as an attribute, as before the layer folders
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sanode' has no attribute {name!r}")


def __dir__():
    return sorted([*__all__, "__version__"])

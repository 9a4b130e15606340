"""sanode: stable-attractor neural ODE classifiers (SA-nODE) and their study pipeline.

The public names are imported on first use, so light modules (``sanode.config``,
``sanode.study``) load without torch.
"""

import importlib

__version__ = "0.1.0"
__all__ = [
    "SOLVERS",
    "Dynamics",
    "SANode",
    "TrainConfig",
    "block_patterns",
    "load_model",
]

_WHERE = {
    "SOLVERS": "integrate",
    "Dynamics": "integrate",
    "SANode": "model",
    "TrainConfig": "config",
    "block_patterns": "patterns",
    "load_model": "checkpoint",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sanode' has no attribute {name!r}")


def __dir__():
    return sorted([*__all__, "__version__"])

"""sanode: stable-attractor neural ODE classifiers (SA-nODE) and their study pipeline."""

from .integrate import SOLVERS, Dynamics, integrate
from .model import SANode
from .patterns import block_patterns

__all__ = ["SOLVERS", "Dynamics", "SANode", "block_patterns", "integrate"]
__version__ = "0.1.0"

"""Make ``import sanode`` work in every environment a rule runs in (venv or --use-conda env).

Snakemake puts this folder on ``sys.path``; this module adds the checkout's root before it,
so the rule imports the ``sanode`` of this very checkout, installed or not.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

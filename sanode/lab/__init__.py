"""The lab: measurement code, apart from the product. The speed and memory bench (``sanode
bench``, paired rounds, what ``auto`` chose), time to accuracy (``sanode time-to-accuracy``),
the lever ablation (``sanode ablation``), their report renderers, and the scripts under
``sanode/lab/scripts/``.

The product (``core``, ``data``, ``training``, ``probes``, ``pipeline``, ``cli``) imports
nothing from here (``tests/test_layers.py``); the lab's commands and renderers reach the
``sanode`` command and ``sanode report`` as entry points (``pyproject.toml``:
``sanode.commands``, ``sanode.renderers``).
"""

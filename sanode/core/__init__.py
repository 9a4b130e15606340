"""The maths: the model and its vector field, the integrators and the lean Euler backward
pass, the planted patterns, fixed points, the bucket metrics, pixel noise, the product modes.

Nothing here imports from the layers above (``sanode.data``, ``sanode.training``,
``sanode.pipeline``, ``sanode.cli``); ``tests/test_layers.py`` checks it.
"""

"""Weights: the checkpoint file format, cache paths and recipes, and ``resolve_model`` (the one way to get a model).

May import training (a missing cached model is trained), defense (its wrapper), models, data and the leaf modules; not evaluation, results or suites.
"""

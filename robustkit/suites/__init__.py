"""Suites: the spec a YAML benchmark suite is read into (models × defenses × attacks × ε) and the built-in YAML files.

May import results (published figures), weights, training (recipes), threats, models, data and the leaf modules; not evaluation.
"""

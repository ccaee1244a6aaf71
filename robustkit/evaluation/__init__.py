"""Evaluation: the engine (one attack, verified), one cell → one record, the Python API, the checks, the fooling engine, the runner.

The top of the core: may import every other folder of robustkit (threats, weights, training, results, suites) and the leaf modules; only ``cli`` imports it.
"""

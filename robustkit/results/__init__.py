"""Results: an outcome and its ε-curve, the store and records, leaderboards (tables, LaTeX, plots), published figures, example grids, perturbation files.

May import threats, weights (the safetensors format and file hashes) and the leaf modules; not evaluation, suites or training.
"""

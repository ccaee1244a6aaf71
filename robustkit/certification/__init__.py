"""Certified robustness by randomized smoothing: the paper's CERTIFY and PREDICT, the certified-accuracy
curve, and the empirical attack on the same smoothed classifier. Imports the core (data, weights, results), never a plugin."""

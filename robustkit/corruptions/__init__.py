"""Common corruptions (CIFAR-10-C, MNIST-C) generated per sample in torch, their parameter tables, the
evaluation and its report. ``report`` imports NumPy only (a leaderboard reads it); the rest imports torch."""

"""Training: the loop, resumable state, augmentation and the torchrun helpers.

May import models, data and the leaf modules (predict, device, errors, paths); nothing that evaluates, stores results or resolves weights.
"""

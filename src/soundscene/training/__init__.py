"""Training: data sets, feature cache, augmentation, the training loop, evaluation, cross-validation."""

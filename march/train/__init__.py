"""Data, the DeepSpeed training loop, metrics, checkpoints and plots."""

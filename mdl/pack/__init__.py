"""Packing a training run into a deterministic zip (checkpoint and file selection, the streaming writer) and
unpacking archives safely (hostile names refused before a byte is written)."""

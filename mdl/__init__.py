"""mdl: get model files onto the machines that need them, and pack checkpoints safely."""

__version__ = "0.1.0"

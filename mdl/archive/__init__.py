"""Packing a training run into a deterministic zip, and unpacking archives safely, from a file or
a pipe.
"""

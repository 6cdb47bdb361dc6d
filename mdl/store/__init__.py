"""The destination on disk: layouts (plain, hf-cache), per-model records, per-file locks, free
space, partial files, and the offline views of it (list, show, verify, clean, prune)."""

"""``catalog.lock``: each model's commit, files, sizes and sha256, pinned so every machine pulls the
same bytes without a Hub listing; and how a run uses it (LockUse: --locked, --frozen)."""

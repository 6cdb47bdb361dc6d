"""Publishing: the verified local files of catalog models, uploaded to S3-compatible storage with a
manifest each, so a fleet pulls from its own bucket instead of the Hub; and that mirror pruned."""

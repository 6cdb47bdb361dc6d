"""Publishing: the verified local files of catalog models, uploaded to S3-compatible storage with a
manifest each, so a fleet pulls from its own bucket (``s3://`` mirrors) instead of the Hub."""

from mdl.upload.publisher import PublishReport, publish_models

__all__ = ["PublishReport", "publish_models"]

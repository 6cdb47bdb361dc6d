"""The loopback S3 server's fixtures (tests/s3server.py) for every publish test."""

from s3server import s3, s3_server  # noqa: F401

"""The loopback S3 server's fixtures (tests/s3server.py) and the published prefix
(tests/releases.py) for every publish test."""

from releases import prefix  # noqa: F401 (where the team publishes: a folder, or moto)
from s3server import s3, s3_server  # noqa: F401

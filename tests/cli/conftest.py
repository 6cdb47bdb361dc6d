"""Where the team publishes its releases (tests/releases.py), for the rollback and lock tests."""

from releases import prefix  # noqa: F401 (a fixture: a shared folder, or a bucket on moto)

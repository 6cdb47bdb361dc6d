"""Bytes over HTTP: the one client and redirect follower, and the engine that fetches one file into
a ``.part`` over parallel ranges with a resume record, verifies it and finishes atomically."""

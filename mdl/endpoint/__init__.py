"""Serve the destination's verified files to loaders as a read-only S3 endpoint on loopback, while
a pull may still be fetching them: only bytes that verified ever leave it."""

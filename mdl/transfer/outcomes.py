"""Exceptions by which the parts of one attempt tell the engine to restart, stop a stream or reject the file."""

from __future__ import annotations


class RangesIgnoredError(Exception):
    """The server answered a range request with a full 200: restart as one stream."""


class SourceChanged(Exception):
    """The server's ETag (or, for an unpinned size, its size) changed under us: start over."""

    def __init__(self, new_size: int | None = None) -> None:
        super().__init__("source changed")
        self.new_size = new_size


class StreamStopped(Exception):
    """A sibling stream failed; this one ends without an error of its own."""


class HashMismatch(Exception):
    """The bytes on disk are not the expected file (size, sha256 or git blob id)."""

    def __init__(self, kind: str, expected: str, actual: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.expected = expected
        self.actual = actual
        self.counted = 0  # bytes this attempt reported as progress
        # Whether the transfer itself may be to blame (bytes kept from an earlier run, or ranges no validator tied
        # to one version): only then is the file fetched once more from zero. A clean transfer that hashes wrong
        # is a wrong file or a wrong hash, and a second download would only say so again.
        self.suspect = False

"""How a Xet fetch ends short of the file: the fallback to the plain path, and the signals between
its parts (a refused URL, a suspect resume, an unsplittable piece, a stop)."""

from __future__ import annotations


class XetFallback(Exception):
    """The protocol cannot deliver this file now (why: the message); the plain resolve path
    fetches it (the bytes its attempts got before are in the file's ledger all the same).
    """


class Refused(Exception):
    """A xorb URL answered 403: its signature expired; the reconstruction is asked again."""


class Suspect(Exception):
    """A mismatch after bytes were resumed or copied: fetched again whole before it is called
    corrupt.
    """


class Unsplittable(Exception):
    """A piece's reconstruction is not the part of its term it should be: the file is fetched
    again unsplit.
    """


class Stopped(Exception):
    """Another task of the file failed, or Ctrl-C: this one stops."""

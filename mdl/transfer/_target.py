"""Where one file's streams fetch now: a direct file's final URL (located again once when the
probe's expires), or a Hub file's redirect target, shared by its parallel ranges (its resolve URL
asked once for all, and once more when the target expires). One lock; the states and the
transitions between them are what tests/transfer/test_target.py tabulates."""

from __future__ import annotations

import calendar
import enum
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from mdl.errors import MdlError
from mdl.transfer.connection import origin
from mdl.transfer.job import TransferJob

log = logging.getLogger("mdl.transfer")


class Resolve(threading.Event):
    """One ask of a file's resolve URL (the Hub's), whose redirect target all the file's streams
    share: the stream that asks tells the others where it was sent as soon as the redirect comes,
    and they go there, each answer checked as ever (the resolve is asked once per file, not once
    per connection, and costs no round trip more). Set once the target is known, or it failed."""

    target: str | None = None  # where the ranges go (the resolve URL when it did not redirect)
    error: MdlError | None = None  # why it failed: what the streams waiting for it raise


# UNASKED: no target; the next stream to aim asks the resolve URL for all. ASKING: one stream asks
# it, the others wait for where it is sent. KNOWN: the streams fetch at the target. EXPIRED: it
# expired; the next stream asks again, for a fresh one. RENEWING: asked again after an expiry.
# RENEWED: the fresh target, till it answers a range (a refusal of it is final).
Phase = enum.Enum("Phase", "UNASKED ASKING KNOWN EXPIRED RENEWING RENEWED")

ASKED = {Phase.UNASKED: Phase.ASKING, Phase.EXPIRED: Phase.RENEWING}
ENDED = {Phase.ASKING: Phase.UNASKED, Phase.RENEWING: Phase.EXPIRED}
REACHED = {Phase.ASKING: Phase.KNOWN, Phase.RENEWING: Phase.RENEWED}


class Target:
    """Where one file's streams send their requests (``url``), and how it changes: a Hub file's
    parallel ranges (``shared``) share the resolve URL's redirect target; every change is made
    once for all the file's streams."""

    def __init__(self, job: TransferJob) -> None:
        self.job, self.lock, self.shared = job, threading.Lock(), False
        self.relocating = threading.Lock()  # held by the one stream locating a probed URL again
        self.url, self.phase = job.url, Phase.UNASKED
        self.ask: Resolve | None = None  # the last ask of the resolve URL (None: none to wait for)
        # The probe's final URL (job.located) expired once and was located afresh; a target's
        # query says when it expires, and this clock agrees with the signer's (else undated: no
        # query is believed for the rest of the file).
        self.relocated, self.dated = False, True

    def start(self, url: str, *, shared: bool) -> None:
        """The streams go to ``url`` now, and ask the resolve URL afresh (an attempt's, before
        they run: no lock; or a probe's final URL located again)."""
        phase = Phase.UNASKED if url == self.job.url else Phase.KNOWN
        self.url, self.phase, self.ask, self.shared = url, phase, None, shared

    def aim(self, failed: Resolve | None) -> tuple[str, Resolve | None, bool]:
        """Where a stream's next request goes: ``(url, None, _)`` alone; ``(url, ask, True)``: it
        asks the resolve URL for every stream; ``(url, ask, False)``: it waits for another's ask,
        then aims again. ``failed``: the last ask whose failure it raised (it asks anew)."""
        if not self.shared:
            return self.url, None, False
        with self.lock:
            if self.phase in (Phase.KNOWN, Phase.RENEWED):
                # a fresh target is tried whatever its query says: this clock may be ahead
                if self.url == self.job.url or self.phase is Phase.RENEWED or not self._lapsed():
                    return self.url, None, False
                # its query says it expired: asked again once for all streams, not refused once
                # per stream
                log.info("%s: signed URL expired, resolving it again", self.job.label)
                self._renew()
            if self.phase in ASKED and (self.ask is None or self.ask is failed):
                self.ask, self.phase = Resolve(), ASKED[self.phase]
                return self.url, self.ask, True
            return self.url, self.ask, False

    def reached(self, ask: Resolve, target: str, *, final: bool) -> None:
        """``ask`` sent its stream to ``target`` (``final``: whose answer came): the other streams
        go there now. A hop within the resolve URL's origin is not the target yet."""
        if not final and origin(target) == origin(self.job.url):
            return
        with self.lock:
            if ask.is_set():
                # told at the redirect; a further hop's final URL serves the later requests
                if final and self.url == ask.target:
                    self.url = target
                return
            ask.target = target
            if ask is self.ask:
                self.url, self.phase = target, REACHED[self.phase]
                # Fresh, yet expired by its query: this clock is ahead of the signer's, and no
                # query is believed for the rest of the file (else each would be asked again).
                self.dated &= self.phase is Phase.KNOWN or not self._lapsed()
            ask.set()

    def unanswered(self, ask: Resolve | None, error: MdlError | None) -> None:
        """``ask`` ended before it had a target: the streams waiting for it, or aiming after it,
        raise ``error`` (None: the next stream to aim asks again; no ask: nothing to tell)."""
        if ask is None:
            return
        with self.lock:
            if ask.is_set():
                return
            ask.error = error
            if ask is self.ask:
                self.phase = ENDED[self.phase]
                self.ask = ask if error is not None else None
            ask.set()

    def answered(self, asked: str, final: str) -> None:
        """A range asked at ``asked`` was answered from ``final``: a fresh target that answered is
        refused later only by a later expiry; a direct file's redirect serves the later requests
        (a Hub file's: told at the redirect)."""
        with self.lock:
            if self.phase is Phase.RENEWED and final == self.url:
                self.phase = Phase.KNOWN
            if not self.shared and asked == self.url == self.job.url:
                self.url = final

    def relocate(self, refused: str, *, probed: bool, locate: Callable[[], str]) -> bool:
        """``refused`` was refused as expired: where the streams go next, decided once for all
        (False: nowhere better). The probe's final URL (``probed``) is located again, once (the
        other streams wait meanwhile); else the resolve URL is asked again, unless the target was
        its fresh one and never answered (the Hub's next would be no better)."""
        if probed:
            # one stream locates it, outside the lock every request takes; the other refused
            # streams wait for where it went
            with self.relocating:
                with self.lock:
                    if self.url != refused or self.relocated:
                        return self.url != refused
                    self.relocated = True
                url = locate()
                with self.lock:
                    self.start(url, shared=self.shared)
                return True
        with self.lock:
            if self.url != refused:
                return True
            if self.phase is Phase.RENEWED:
                return False
            log.info("%s: signed URL refused (403), resolving it again", self.job.label)
            self.job.retries.add("signed URL refused (HTTP 403), resolved it again")
            self._renew()
            return True

    def _renew(self) -> None:
        """The target expired: the next stream asks the resolve URL again, and the fresh target it
        names must answer a range before a refusal of it is one more expiry."""
        self.url, self.ask, self.phase = self.job.url, None, Phase.EXPIRED

    def _lapsed(self) -> bool:
        """Whether the target's own query says it has expired (never, once undated)."""
        lapses = lapses_at(self.url)
        return self.dated and lapses is not None and time.time() >= lapses


@functools.lru_cache(maxsize=16)
def lapses_at(url: str) -> float | None:
    """When a presigned target stops being honoured, as its query says (Unix time; None: it says
    not, or not clearly): the signing date plus ``X-Amz-Expires`` (S3) or ``X-Goog-Expires`` (GCS),
    else ``Expires`` (CloudFront, S3's older signatures). A range asked after it would only earn a
    403."""
    try:
        query = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    except ValueError:
        return None
    for signer in ("x-amz-", "x-goog-"):
        signed, lasts = query.get(f"{signer}date"), query.get(f"{signer}expires")
        if signed is not None and lasts is not None:
            try:
                when = calendar.timegm(time.strptime(signed, "%Y%m%dT%H%M%SZ"))
            except ValueError:
                return None
            return when + int(lasts) if re.fullmatch(_SECONDS, lasts) else None
    expires = query.get("expires", "")
    return float(expires) if re.fullmatch(_SECONDS, expires) else None


# a count of seconds a signer writes: ASCII digits only (str.isdigit takes '²', which int refuses),
# and no more than 12 (past year 30,000; int refuses a 4,301-digit string)
_SECONDS = r"[0-9]{1,12}"

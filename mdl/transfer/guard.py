"""The last line of defence for the Hub token: a request hook that refuses to send it anywhere but the Hub.

``Credentials.headers_for`` decides per hop which headers a download carries; the Hub client adds the token to
its own API calls. Either could be wrong one day (a pagination link, a redirect, a new call site), so every
request of the one client also passes this hook: a request carrying a protected token to an origin other than
the Hub endpoint's (scheme, host and port: ``localhost`` is not ``127.0.0.1``, http is not https) is refused
before a byte is sent.
"""

from __future__ import annotations

import threading

import httpx2

from mdl.errors import TokenLeakError
from mdl.transfer.http import origin


def shown_origin(url: str) -> str:
    """``scheme://host:port`` of a URL, the way errors name an origin (never a path, query or userinfo)."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}"


class TokenGuard:
    """An httpx2 request hook: protected tokens go to the Hub endpoint's exact origin only."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.origin = origin(endpoint)
        self._tokens: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @classmethod
    def on(cls, client: httpx2.Client, endpoint: str) -> TokenGuard:
        """The guard of ``client`` for ``endpoint``, installed as a request hook on first use."""
        hooks = client.event_hooks["request"]
        for hook in hooks:
            if isinstance(hook, TokenGuard) and hook.origin == origin(endpoint):
                return hook
        guard = cls(endpoint)
        hooks.append(guard)
        return guard

    def protect(self, token: str | None) -> None:
        """Add a token that must never leave for another origin (no-op for None or an empty token)."""
        if token:
            with self._lock:
                self._tokens = self._tokens | {token}

    def __call__(self, request: httpx2.Request) -> None:
        """Raise TokenLeakError when ``request`` would carry a protected token off the Hub's origin."""
        tokens = self._tokens
        if not tokens or origin(str(request.url)) == self.origin:
            return
        # Every header, not only Authorization: a token is a secret whatever header name carries it.
        for name, value in request.headers.items():
            if any(token in value for token in tokens):
                raise TokenLeakError(
                    f"refused to send the Hub token ({name} header) to {shown_origin(str(request.url))}: "
                    f"it goes to the Hub at {shown_origin(self.endpoint)} only",
                    hint="a server sent mdl to another origin; nothing was sent there",
                )

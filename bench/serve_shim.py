"""``python -m mdl`` with one change, for bench/serve.py: a request whose target is in absolute form
(``GET http://127.0.0.1:PORT/mdl/m/x HTTP/1.1``) is seen by mdl's endpoint as its origin form
(``GET /mdl/m/x``), as RFC 9112 section 3.2.2 asks of a server.

run:ai's streamer (0.17, the AWS CRT S3 client) sends its GETs in absolute form; mdl serve (at the
time of writing) signs the target as it came and refuses every such GET with 403
SignatureDoesNotMatch, so the streamer fails at its first read ("File access error"). The bench
probes mdl unchanged first and uses this launcher only when that probe fails (``--shim auto``);
each row that used it says so. Nothing under mdl/ is changed: the standard library's request-line
parser is wrapped in this process only.

    python bench/serve_shim.py serve m --pull ...   (the same arguments as ``mdl``)
"""

from __future__ import annotations

import http.server

_parse_request = http.server.BaseHTTPRequestHandler.parse_request


def _origin_form(self: http.server.BaseHTTPRequestHandler) -> bool:
    ok = _parse_request(self)
    if ok and self.path.lower().startswith(("http://", "https://")):
        authority_and_path = self.path.split("://", 1)[1]
        self.path = "/" + authority_and_path.partition("/")[2]
    return ok


http.server.BaseHTTPRequestHandler.parse_request = _origin_form  # type: ignore[method-assign]

if __name__ == "__main__":
    from mdl.__main__ import main

    main()

"""A Debian mirror on 127.0.0.1 that passes requests on to the real one, with one fault.

Point ``EBPF_LAB_MIRROR`` at :attr:`FaultyMirror.url`. The upstream is the mirror the
host's apt uses (or ``$EBPF_LAB_MIRROR`` as it was), so no mirror's name is written here.
Faults, each on the files it names:

- ``flip-deb``: a .deb arrives whole, with the same size, and bytes flipped in its middle;
- ``cut-deb``: a .deb's connection is closed half-way through, its full length announced;
- ``tamper-release``: the signed ``InRelease`` has one hash changed, its signature kept;
- ``tamper-index``: a ``Packages`` index arrives with bytes flipped;
- ``stall``: nothing is ever answered.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("flip-deb", "cut-deb", "tamper-release", "tamper-index", "stall")


class FaultyMirror:
    def __init__(self, *, upstream: str, fault: str) -> None:
        assert fault in FAULTS, fault
        self.upstream = upstream.rstrip("/")
        self.fault = fault
        #: (path, what was done to it) for each request, in order.
        self.served: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def faulted(self) -> list[str]:
        return [path for path, done in self.served if done != "passed"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if mirror.fault == "stall":
                    mirror.served.append((self.path, "stalled"))
                    mirror._stop.wait(600)
                    return
                try:
                    with urllib.request.urlopen(mirror.upstream + self.path, timeout=120) as answer:
                        body = answer.read()
                        kind = answer.headers.get("Content-Type", "application/octet-stream")
                except urllib.error.HTTPError as error:
                    mirror.served.append((self.path, "passed"))
                    self.send_error(error.code)
                    return
                body, done = mirror._damage(self.path, body)
                mirror.served.append((self.path, done))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if done == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    time.sleep(0.2)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler

    def _damage(self, path: str, body: bytes) -> tuple[bytes, str]:
        name = path.rsplit("/", 1)[-1]
        if path.endswith(".deb") and self.fault in ("flip-deb", "cut-deb"):
            if self.fault == "cut-deb":
                return body, "cut"
            middle = len(body) // 2
            return body[:middle] + bytes(b ^ 0xFF for b in body[middle:middle + 4096]) + body[middle + 4096:], "flipped"
        if name == "InRelease" and self.fault == "tamper-release":
            # One hex digit of the first SHA256 line: still a well-formed file, no longer what was signed.
            at = body.index(b"SHA256:")
            at = body.index(b"\n ", at) + 2
            digit = body[at:at + 1]
            return body[:at] + (b"0" if digit != b"0" else b"1") + body[at + 1:], "tampered"
        if ("Packages" in name or "/by-hash/" in path) and self.fault == "tamper-index" and len(body) > 8192:
            middle = len(body) // 2
            return body[:middle] + bytes(b ^ 0xFF for b in body[middle:middle + 64]) + body[middle + 64:], "flipped"
        return body, "passed"

"""The browser captioning page: static files shipped in ``server/static/``, served by
the server itself on plain HTTP GETs, revalidated with ETags.

Sans I/O like the protocols: :meth:`StaticSite.respond` maps a request path and its
``If-None-Match`` header to a status, headers and body; ``app`` wraps that in a
websockets ``Response``.  The files are read and hashed once, at server start, so a
request costs a dict lookup and the ETag changes exactly when a file's bytes do.
"""

from __future__ import annotations

import hashlib
import http
import importlib.resources
from dataclasses import dataclass

__all__ = ["PageResponse", "StaticFile", "StaticSite"]

# Unknown suffixes are refused rather than guessed: every file in static/ is listed here.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page, its scripts and the worklet come from this origin only; the websocket is
# this origin's too (ws:/wss: spelled out: older browsers' 'self' does not cover them).
# blob: is for the downloads the page builds itself.
CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # a strong validator: '"' + 16 hex digits of the body's SHA-256 + '"'

    @classmethod
    def of(cls, name: str, body: bytes) -> StaticFile:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in CONTENT_TYPES:
            raise ValueError(f"static file {name!r} has suffix {suffix!r}; expected one of {sorted(CONTENT_TYPES)}")
        return cls(body, CONTENT_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')


@dataclass(frozen=True)
class PageResponse:
    status: http.HTTPStatus
    headers: tuple[tuple[str, str], ...]
    body: bytes


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list against our ETag.

    >>> etag_matches('W/"abc", "def"', '"abc"'), etag_matches('"x"', '"abc"'), etag_matches("*", '"abc"')
    (True, False, True)
    """
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


class StaticSite:
    """The files of one package folder, by URL path: ``/`` is ``index.html``,
    ``/static/NAME`` any file of the folder (no subfolders)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = {name: StaticFile.of(name, body) for name, body in files.items()}
        if "index.html" not in self.files:
            raise ValueError(f"static files {sorted(self.files)} have no index.html")

    @classmethod
    def from_package(cls, package: str = "server.static") -> StaticSite:
        root = importlib.resources.files(package)
        return cls({entry.name: entry.read_bytes() for entry in root.iterdir() if entry.is_file()})

    def lookup(self, path: str) -> StaticFile | None:
        if path in ("/", "/index.html"):
            return self.files["index.html"]
        if path.startswith("/static/"):
            return self.files.get(path.removeprefix("/static/"))
        return None

    def respond(self, path: str, if_none_match: str | None) -> PageResponse | None:
        """The response for a plain GET of ``path``; None when it is not a page path.

        Everything under ``/static/`` is the page's: an unknown name is a 404 here, not
        a WebSocket endpoint (vosk answers on every other path).
        """
        file = self.lookup(path)
        if file is None:
            if not path.startswith("/static/"):
                return None
            body = f"no static file {path[:100]!r}; the page's files: {', '.join(sorted(self.files))}\n".encode()
            return PageResponse(
                http.HTTPStatus.NOT_FOUND,
                (
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ),
                body,
            )
        # no-cache: the browser keeps its copy but asks every time, so an upgraded
        # server's page is picked up at once and an unchanged one costs a 304.
        headers = [("ETag", file.etag), ("Cache-Control", "no-cache"), ("Connection", "close")]
        if etag_matches(if_none_match, file.etag):
            return PageResponse(http.HTTPStatus.NOT_MODIFIED, tuple(headers), b"")
        headers += [
            ("Content-Type", file.content_type),
            ("Content-Length", str(len(file.body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", CSP),
            ("Referrer-Policy", "no-referrer"),  # the page URL may carry ?token=
        ]
        return PageResponse(http.HTTPStatus.OK, tuple(headers), file.body)

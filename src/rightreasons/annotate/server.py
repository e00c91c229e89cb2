"""The annotation page's HTTP server: the standard library's ThreadingHTTPServer on 127.0.0.1 only,
every request checked for the access token (403 without it) and for a Host header naming this server.

Routes (``?token=T`` or header ``X-Token: T`` on every one)::

    GET  /                      the page (page.html; page.js and page.css beside it)
    GET  /api/index             JSON: the rows (file, label, split, mask, prediction, shares, proposal)
    GET  /api/image?file=F      the image of row F
    GET  /api/mask?file=F       its mask as a grayscale PNG; header ETag: the row's version
    GET  /api/proposal?file=F   the proposed mask (with --proposals)
    GET  /api/saliency?file=F   the run's saliency as an RGBA heat map PNG (with --run)
    POST /api/save              {"file", "version", "png": base64} -> {"version", ...}; 409 when stale
    POST /api/undo              {"file", "version"} -> {"version", ...}; 409 when stale, 404: nothing to undo
    POST /api/review            {"file", "decision": "accepted" | "rejected" | ""}

Request bodies are JSON objects of exactly those keys, at most MAX_BODY bytes; ``file`` must be a row
of labels.csv (it is looked up, never used as a path).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import json
import secrets
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from ..errors import UserError
from .store import ConflictError, MaskStore, NotFoundError, decode_mask_png

#: the most bytes a request body may have
MAX_BODY = 24 * 2**20
MAX_FILE_CHARS = 4096
HOSTS = ("127.0.0.1", "localhost")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8")}


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class AnnotateApp:
    """What the server serves, without sockets: :meth:`handle` turns a request into a response."""

    def __init__(self, store: MaskStore, insight=None, proposals=None, token: Optional[str] = None):
        self.store, self.insight, self.proposals = store, insight, proposals
        self.token = token or secrets.token_urlsafe(32)
        self.proposal_share: dict = {}
        if insight is not None and proposals is not None:
            for file in proposals.paths:
                self.proposal_share[file] = insight.share(file, proposals.mask(file))
        self._assets = {name: _asset(name) for name in ("page.html", "page.js", "page.css")}

    # ----------------------------------------------------------------------------------------- content

    def index(self) -> dict:
        rows = self.store.rows()
        for row in rows:
            file = row["file"]
            if self.insight is not None:
                seen = self.insight.rows.get(file)
                if not row["split"]:
                    row["split"] = self.insight.split_of.get(file, "")
                if seen is not None:
                    row.update(seen)
            if self.proposals is not None:
                row["proposal"] = file in self.proposals.paths
                row["review"] = self.proposals.reviews.get(file, "")
                if self.insight is not None:
                    row["share_proposal"] = self.proposal_share.get(file)
        run = None
        if self.insight is not None:
            run = {"path": self.insight.run, "method": self.insight.method, "model": self.insight.model_name,
                   "classes": self.insight.classes}
        return {"name": self.store.root_real.name, "path": str(self.store.root), "rows": rows, "run": run,
                "proposals": None if self.proposals is None else str(self.proposals.folder)}

    def page(self) -> bytes:
        text = self._assets["page.html"]
        text = text.replace("{{TOKEN}}", html.escape(self.token, quote=True))
        text = text.replace("{{TITLE}}", html.escape(self.store.root_real.name))
        return text.encode("utf-8")

    # ----------------------------------------------------------------------------------------- requests

    def authorised(self, query: dict, headers) -> bool:
        given = headers.get("X-Token") or (query.get("token") or [""])[0]
        return bool(given) and hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def _file(self, query: dict) -> str:
        values = query.get("file")
        if not values or len(values) != 1 or not values[0] or len(values[0]) > MAX_FILE_CHARS:
            raise HTTPError(400, "expected one query parameter file=<a file of labels.csv>")
        return values[0]

    def _body(self, body: bytes, keys: dict) -> dict:
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HTTPError(400, "request body is not JSON") from None
        if not isinstance(obj, dict) or set(obj) != set(keys):
            raise HTTPError(400, f"request body must be a JSON object with exactly the keys {', '.join(keys)}")
        for key, kind in keys.items():
            if not isinstance(obj[key], kind):
                raise HTTPError(400, f"{key!r} must be a {kind.__name__}")
        if len(obj["file"]) > MAX_FILE_CHARS:
            raise HTTPError(400, "'file' is too long")
        return obj

    def handle(self, method: str, path: str, query: dict, headers, body: bytes = b"") -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request (the token already checked)."""
        start = time.perf_counter()
        try:
            status, kind, data, extra = self._route(method, path, query, headers, body)
        except HTTPError as exc:
            status, kind, data, extra = exc.status, "json", {"error": str(exc)}, {}
        except ConflictError as exc:
            status, kind, data, extra = 409, "json", {"error": str(exc), "conflict": True}, {}
        except NotFoundError as exc:
            status, kind, data, extra = 404, "json", {"error": str(exc)}, {}
        except UserError as exc:
            message = (str(exc).splitlines() or ["bad request"])[0]
            status, kind, data, extra = 400, "json", {"error": message}, {}
        out_headers = dict(extra)
        if kind == "json":
            data = json.dumps(data, allow_nan=False).encode("utf-8")
            out_headers["Content-Type"] = "application/json"
        else:
            out_headers["Content-Type"] = kind
        out_headers.setdefault("Cache-Control", "no-store")
        out_headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.2f}"
        return status, out_headers, data

    def _route(self, method, path, query, headers, body):
        if method == "GET":
            if path == "/":
                return 200, "text/html; charset=utf-8", self.page(), {}
            if path in STATIC:
                name, kind = STATIC[path]
                return 200, kind, self._assets[name].encode("utf-8"), {}
            if path == "/api/index":
                return 200, "json", self.index(), {}
            if path == "/api/image":
                data, kind = self.store.image_bytes(self._file(query))
                return 200, kind, data, {"Cache-Control": "private, max-age=600"}
            if path == "/api/mask":
                file = self._file(query)
                got = self.store.read_mask(file)
                return 200, "image/png", got["png"], {"ETag": f'"{got["version"]}"', "X-Mask-State": got["state"],
                                                       "X-Mask-Note": got["note"],
                                                       "X-Undo": str(self.store.undo_count(file))}
            if path == "/api/proposal":
                file = self._file(query)
                self.store.image_path(file)
                png = self.proposals.png(file) if self.proposals is not None else None
                if png is None:
                    raise HTTPError(404, "no proposal for this file")
                return 200, "image/png", png, {}
            if path == "/api/saliency":
                file = self._file(query)
                self.store.image_path(file)
                png = self.insight.heat(file) if self.insight is not None else None
                if png is None:
                    raise HTTPError(404, "no saliency for this file (start annotate with --run RUN)")
                return 200, "image/png", png, {}
            raise HTTPError(404, "not found")
        if method == "POST":
            kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise HTTPError(415, "send application/json")
            if path == "/api/save":
                obj = self._body(body, {"file": str, "version": str, "png": str})
                try:
                    png = base64.b64decode(obj["png"], validate=True)
                except (binascii.Error, ValueError):
                    raise HTTPError(400, "'png' must be base64") from None
                out = self.store.save(obj["file"], png, obj["version"])
                if self.insight is not None:
                    mask = decode_mask_png(png, self.store.image_size(obj["file"]), "mask")
                    out["share_mask"] = self.insight.update(obj["file"], mask)
                return 200, "json", out, {}
            if path == "/api/undo":
                obj = self._body(body, {"file": str, "version": str})
                out = self.store.undo(obj["file"], obj["version"])
                if self.insight is not None:
                    out["share_mask"] = self.insight.update(obj["file"], self.store.mask_array(obj["file"]))
                return 200, "json", out, {}
            if path == "/api/review":
                obj = self._body(body, {"file": str, "decision": str})
                if self.proposals is None:
                    raise HTTPError(404, "no proposals (start annotate with --proposals DIR)")
                self.proposals.review(obj["file"], obj["decision"])
                return 200, "json", {"review": obj["decision"]}, {}
            raise HTTPError(404, "not found")
        raise HTTPError(405, f"method {method} not allowed")


def _handler(app: AnnotateApp, port_of):
    class Handler(BaseHTTPRequestHandler):
        def version_string(self):
            return "rightreasons-annotate"
        protocol_version = "HTTP/1.1"
        timeout = 60

        def log_message(self, format, *args):  # the URL holds the token: log nothing
            pass

        def _send(self, status: int, headers: dict, data: bytes) -> None:
            self.send_response(status)
            for key, value in {**SECURITY_HEADERS, **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _fail(self, status: int, message: str) -> None:
            self._send(status, {"Content-Type": "application/json", "Cache-Control": "no-store"},
                       json.dumps({"error": message}).encode())

        def _serve(self, method: str) -> None:
            try:
                parts = urlsplit(self.path)
                try:
                    query = parse_qs(parts.query, max_num_fields=20, strict_parsing=False)
                except ValueError:
                    return self._fail(400, "too many query parameters")
                host = (self.headers.get("Host") or "").strip().lower()
                if host not in {f"{h}:{port_of()}" for h in HOSTS}:
                    return self._fail(403, "unexpected Host header: open the URL the command printed")
                if not app.authorised(query, self.headers):
                    self.close_connection = True
                    return self._fail(403, "missing or wrong access token: open the URL the command printed")
                body = b""
                if method == "POST":
                    length = self.headers.get("Content-Length")
                    if length is None or not length.strip().isdigit():
                        self.close_connection = True
                        return self._fail(411, "a Content-Length is required")
                    if int(length) > MAX_BODY:
                        self.close_connection = True
                        return self._fail(413, f"request body larger than {MAX_BODY} bytes")
                    body = self.rfile.read(int(length))
                    if len(body) != int(length):
                        self.close_connection = True
                        return self._fail(400, "request body shorter than its Content-Length")
                status, headers, data = app.handle(method, parts.path, query, self.headers, body)
                self._send(status, headers, data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception:  # a bug: the page gets a line, stderr the traceback (never the token)
                traceback.print_exc(file=sys.stderr)
                self.close_connection = True
                try:
                    self._fail(500, "internal error (see the terminal running rightreasons annotate)")
                except OSError:
                    pass

        def do_GET(self):
            self._serve("GET")

        def do_HEAD(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def _not_allowed(self):
            self.close_connection = True
            self._fail(405, f"method {self.command} not allowed")

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    return Handler


class AnnotateServer:
    """``app`` served on ``host:port`` (127.0.0.1 only; port 0: a free one). :attr:`url` holds the token."""

    def __init__(self, app: AnnotateApp, host: str = "127.0.0.1", port: int = 0):
        if host not in HOSTS:
            raise UserError(f"annotate serves on 127.0.0.1 only (the page can change your files), got host {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise UserError(f"port must be an integer 0..65535, got {port!r}")
        self.app = app
        ThreadingHTTPServer.allow_reuse_address = True
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(app, lambda: self.port))
        except OSError as exc:
            raise UserError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/?token={app.token}"
        self._thread: Optional[threading.Thread] = None

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        self.httpd.serve_forever(poll_interval=poll_interval)

    def start(self) -> "AnnotateServer":
        """Serve in a background thread (for tests and benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), name="annotate-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()


def serve(data: str | Path, run: Optional[str | Path] = None, proposals: Optional[str | Path] = None,
          port: int = 0, host: str = "127.0.0.1", trust_code: bool = False, device: str = "cpu",
          token: Optional[str] = None) -> AnnotateServer:
    """An :class:`AnnotateServer` (not started) for the image folder ``data`` (``folder:PATH`` or PATH),
    with the predictions and saliency of the run ``run`` and the proposals in the folder ``proposals``."""
    folder = folder_path(data)
    if host not in HOSTS:
        raise UserError(f"annotate serves on 127.0.0.1 only (the page can change your files), got host {host!r}")
    store = MaskStore(folder)
    insight = None
    if run is not None:
        from .insight import RunInsight

        insight = RunInsight(run, folder, trust_code=trust_code, device=device)
    props = None
    if proposals is not None:
        from .proposals import Proposals

        props = Proposals(proposals, store)
    return AnnotateServer(AnnotateApp(store, insight, props, token), host, port)


def folder_path(data: str | Path) -> Path:
    """The folder of ``folder:PATH`` or ``PATH``; another dataset name is an error."""
    text = str(data)
    if text.startswith("folder:"):
        text = text[len("folder:"):]
    elif ":" in text.split("/")[0] and not Path(text).exists():
        raise UserError(f"annotate reads image folders (folder:PATH or PATH), got {str(data)!r}")
    if not text:
        raise UserError("annotate: expected an image folder, folder:PATH or PATH")
    return Path(text)

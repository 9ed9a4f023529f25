"""A JWKS served on 127.0.0.1, as an identity provider (or Google) publishes its keys."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def public_jwk(key: Any, kid: str, *, with_alg: bool = False) -> dict[str, Any]:
    """The public half of an RSA or P-256 key as a JWK; ``alg`` only when asked, since
    providers differ on publishing it."""
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key.public_key())
    )
    jwk.update(kid=kid, use="sig")
    if with_alg:
        jwk["alg"] = algorithm
    return jwk


class JwksServer:
    """Serves ``jwks`` at ``url``; counts fetches and answers 503 while ``down``."""

    def __init__(self, keys: list[dict[str, Any]], path: str = "/jwks.json") -> None:
        self.jwks: dict[str, Any] = {"keys": keys}
        self.fetches = 0
        self.down = False
        self._path = path
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not running"
        return f"http://127.0.0.1:{self._server.server_port}{self._path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                if owner.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(owner.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

"""Safe by default: Host and Origin checks (DNS rebinding, CSRF), the token, JSON errors."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from easel.server.config import ServerConfig, is_loopback

log = logging.getLogger("easel.server")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_COOKIE = "easel_token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(code: int, message: str, **extra: object) -> web.Response:
    """Every error a client sees: `{"error": message, ...}` with HTTP status `code`."""
    return web.json_response({"error": message, **extra}, status=code)


def _split_host(value: str) -> tuple[str, int | None]:
    """("name", port) of a Host header or netloc; IPv6 brackets removed."""
    parts = urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port


def _local_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return int(sockname[1])
    return None


class Guard:
    """The checks every request goes through, from one ServerConfig."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.token = config.token

    def host_allowed(self, request: web.Request) -> bool:
        """Refuse Host names this server does not serve: a DNS-rebinding page sends its own."""
        name, port = _split_host(request.headers.get("Host", ""))
        if not name:
            return False
        extra = {h.lower() for h in self.config.allowed_hosts}
        if name in extra:
            return True
        local_port = _local_port(request)
        if port is not None and local_port is not None and port != local_port:
            return False
        bound = self.config.host.lower().strip("[]")
        if bound in ANY_ADDRESS and not extra:
            return True  # every interface: the token is the protection
        if name in LOOPBACK_NAMES:
            return True
        return name == bound and not is_loopback(bound)

    def origin_problem(self, request: web.Request) -> str | None:
        """Why a state-changing request or WebSocket from a browser page is refused, if it is."""
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return "cross-site request refused"
        origin = request.headers.get("Origin")
        if origin is None:
            return None  # not sent by a browser page (curl, scripts, the CLI)
        if origin.strip().lower() == "null":
            return "requests from an opaque origin (Origin: null) are refused"
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"origin {origin!r} refused"
        try:
            origin_port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return f"origin {origin!r} refused"
        host_name, host_port = _split_host(request.headers.get("Host", ""))
        if host_name in {h.lower() for h in self.config.allowed_hosts}:
            # A name behind a reverse proxy: scheme and port are the proxy's.
            if parts.hostname.lower() == host_name:
                return None
            return f"origin {origin!r} does not match the server's host"
        if host_port is None:
            host_port = 443 if request.secure else 80
        if (parts.scheme, parts.hostname.lower(), origin_port) != (
            request.scheme,
            host_name,
            host_port,
        ):
            return f"origin {origin!r} does not match the server's host"
        return None

    def token_ok(self, request: web.Request) -> bool:
        if not self.token:
            return True
        candidates = []
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        if TOKEN_COOKIE in request.cookies:
            candidates.append(request.cookies[TOKEN_COOKIE])
        return any(hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_allowed(request):
            return json_error(
                403,
                f"host {request.headers.get('Host', '')!r} is not served "
                "here (add it with --allow-host)",
            )
        is_websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if request.method not in SAFE_METHODS or is_websocket:
            problem = self.origin_problem(request)
            if problem:
                return json_error(403, problem)
        if self.token and not self.token_ok(request):
            query_token = request.query.get("token", "")
            if (
                request.method == "GET"
                and query_token
                and hmac.compare_digest(query_token.encode(), self.token.encode())
            ):
                # Opening the printed URL: keep the token in a cookie, drop it from the URL.
                response = web.HTTPFound(
                    request.rel_url.with_query(
                        {k: v for k, v in request.query.items() if k != "token"}
                    )
                )
                response.set_cookie(
                    TOKEN_COOKIE, self.token, httponly=True, samesite="Strict", path="/"
                )
                raise response
            return json_error(
                401,
                "a token is required: open the URL that `easel serve` "
                "printed, or send 'Authorization: Bearer TOKEN'",
            )
        return await handler(request)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as JSON bodies, and no traceback ever sent to a client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = (
            exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else (exc.reason)
        )
        return json_error(exc.status, message or exc.reason)
    except Exception:
        log.exception("error while serving %s %s", request.method, request.path)
        return json_error(500, "internal server error (details are in the server log)")

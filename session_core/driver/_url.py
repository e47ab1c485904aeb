"""The URLs a client dials: `ws://` and `wss://`, split into what a socket needs."""

from __future__ import annotations

import urllib.parse

import attrs

from .._errors import LocalProtocolError

__all__ = ["WebSocketURL", "parse_url"]


@attrs.frozen(kw_only=True)
class WebSocketURL:
    """A parsed `ws://` or `wss://` URL."""

    secure: bool
    "True for `wss://`."
    host: str
    "The host to dial (without brackets for IPv6)."
    port: int
    "The port to dial (80 or 443 when the URL has none)."
    target: str
    "The path and query to request."

    @property
    def host_header(self) -> str:
        """The `Host` header: `host:port`, as session-rs sends it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Split a `ws://` or `wss://` URL; raise `LocalProtocolError` for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise LocalProtocolError(f"not a ws:// or wss:// URL: {url!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"no host in URL: {url!r}")
    if parts.username or parts.password:
        raise LocalProtocolError("credentials in the URL are not supported; pass headers")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        raise LocalProtocolError(f"invalid port in URL: {url!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketURL(secure=parts.scheme == "wss", host=parts.hostname, port=port, target=target)

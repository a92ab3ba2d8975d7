"""TLS contexts for both listeners and for clients, with Python's `ssl`: TLS 1.2 at least,
certificates checked, and for mutual TLS a client certificate required."""

from __future__ import annotations

import ssl

from logbroker.errors import InvalidConfigError

__all__ = ["client_context", "server_context"]


def server_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """The broker's side: its certificate chain and key; with `client_ca`, every client must
    present a certificate that CA signed (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfigError(
            f"TLS: cannot load {exc.filename or 'the certificate or key'}: {exc}"
        ) from None
    return context


def client_context(ca: str = "", cert: str = "", key: str = "") -> ssl.SSLContext:
    """A client's side: trust `ca` (else the system's roots) and check the broker's name; with
    `cert` and `key`, present a client certificate (mutual TLS)."""
    context = ssl.create_default_context(cafile=ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfigError(f"TLS: cannot load the client certificate: {exc}") from None
    return context

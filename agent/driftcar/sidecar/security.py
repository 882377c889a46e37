"""Access control shared by both receivers and the JSON API: bearer token and TLS.

The token comes from ``token_file`` or the ``DRIFTCAR_TOKEN`` variable and is compared
in constant time (:func:`hmac.compare_digest`). It is never logged, never put in an
error message, and never stored anywhere but in this object.
"""

from __future__ import annotations

import hmac
import os
import ssl

import grpc

from driftcar.sidecar.config import TOKEN_ENV, SecurityConfig, TLSConfig

__all__ = ["TokenAuth", "server_ssl_context", "grpc_server_credentials"]


class TokenAuth:
    """Checks ``Authorization: Bearer <token>``; allows everything when no token is set.

    Thread-safe (immutable after construction).
    """

    __slots__ = ("_token",)

    def __init__(self, token: str | None):
        self._token = token.encode("utf-8") if token else None

    def __repr__(self) -> str:  # never show the token
        return f"TokenAuth(enabled={self.enabled})"

    @classmethod
    def from_config(cls, config: SecurityConfig, env: dict | None = None) -> "TokenAuth":
        env = os.environ if env is None else env
        if config.token_file:
            with open(config.token_file, encoding="utf-8") as fh:
                return cls(fh.read().strip())
        return cls((env.get(TOKEN_ENV) or "").strip() or None)

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, authorization: str | None) -> bool:
        """True when no token is configured or ``authorization`` carries the right one."""
        if self._token is None:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)


def server_ssl_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """TLS context for the aiohttp servers; requires client certs when ``client_ca`` is set."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca:
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_server_credentials(tls: TLSConfig) -> grpc.ServerCredentials | None:
    if not tls.enabled:
        return None
    with open(tls.cert, "rb") as fh:
        cert = fh.read()
    with open(tls.key, "rb") as fh:
        key = fh.read()
    client_ca = None
    if tls.client_ca:
        with open(tls.client_ca, "rb") as fh:
            client_ca = fh.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)

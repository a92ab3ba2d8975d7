"""One connection's SASL login, shared by both listeners: a handshake naming the mechanism,
then the mechanism's exchange (PLAIN: one token; SCRAM: two), verified against `UserStore`.

The connection counts as logged in only when `principal` is set, which happens only after a
verified exchange: starting a handshake, or a SCRAM exchange that has not checked the client's
proof yet, authenticates nothing (the bug class of Tansu PR #696).
"""

from __future__ import annotations

import functools
import secrets

from logbroker.errors import IllegalSaslStateError, SaslAuthenticationError, UnsupportedSaslMechanismError
from logbroker.security.scram import (
    MECHANISMS,
    ScramCredential,
    ScramServer,
    check_password,
    make_credential,
    parse_plain,
)
from logbroker.security.users import UserStore

__all__ = ["PLAIN", "Login", "mechanisms_offered", "principal_of"]

PLAIN = "PLAIN"


def mechanisms_offered(tls: bool) -> list[str]:
    """PLAIN sends the password itself, so it is offered only where TLS hides it."""
    return [*MECHANISMS, PLAIN] if tls else list(MECHANISMS)


def principal_of(username: str) -> str:
    return f"User:{username}"


@functools.cache
def _decoy() -> ScramCredential:
    return make_credential(secrets.token_urlsafe(16), MECHANISMS[0])


class Login:
    def __init__(self, users: UserStore, tls: bool, decoy_key: bytes | None = None) -> None:
        self._users = users
        self._decoy_key = decoy_key
        self.mechanisms = mechanisms_offered(tls)
        self._mechanism: str | None = None
        self._scram: ScramServer | None = None
        #: "User:<name>" once a login is verified; None before (and forever after a failure).
        self.principal: str | None = None
        #: The user named in a failed exchange, when the exchange got that far (for the log).
        self.attempted: str | None = None

    @property
    def hashes_password(self) -> bool:
        """The next step hashes a password (PLAIN: PBKDF2, milliseconds of CPU): run it off the
        event loop. Thread-safe: nothing else touches the login meanwhile."""
        return self._mechanism == PLAIN and self.principal is None

    def handshake(self, mechanism: str) -> None:
        if self.principal is not None or self._mechanism is not None:
            raise IllegalSaslStateError("a login was already started on this connection")
        if mechanism not in self.mechanisms:
            raise UnsupportedSaslMechanismError(
                f"SASL mechanism {mechanism!r} is not offered here; offered: {', '.join(self.mechanisms)}"
            )
        self._mechanism = mechanism
        self._users.reload_if_changed()  # `logbroker users add` applies without a restart
        if mechanism != PLAIN:
            self._scram = ScramServer(mechanism, self._lookup, decoy_key=self._decoy_key)

    def step(self, token: bytes) -> bytes:
        """Take the client's next token; return the broker's. Raises on any failure (the
        connection must then be closed: one login per connection, as in Kafka)."""
        if self._mechanism is None or self.principal is not None:
            raise IllegalSaslStateError("no login in progress: send a SASL handshake first")
        if self._scram is None:
            username, password = parse_plain(token)
            self.attempted = username
            credential = self._users.credential(username, MECHANISMS[0])
            # An unknown user costs the same hashing as a known one: timing tells nothing.
            matches = check_password(credential or _decoy(), password)
            if credential is None or not matches:
                raise SaslAuthenticationError("authentication failed")
            self.principal = principal_of(username)
            return b""
        answer = self._scram.step(token)
        if self._scram.username is not None:
            self.principal = principal_of(self._scram.username)
        return answer

    def _lookup(self, username: str) -> ScramCredential | None:
        self.attempted = username
        return self._users.credential(username, self._mechanism or "")

"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) and PLAIN (RFC 4616), sans-IO.

This module owns the SASL exchanges and the stored form of a password. A `ScramCredential` holds
only what RFC 5802 lets a server keep: salt, iteration count, StoredKey and ServerKey. The
password itself is never stored; PLAIN logins are checked by recomputing StoredKey.

    SaltedPassword  = PBKDF2-HMAC-H(password, salt, iterations)
    ClientKey       = HMAC(SaltedPassword, "Client Key")
    StoredKey       = H(ClientKey)
    ServerKey       = HMAC(SaltedPassword, "Server Key")
    AuthMessage     = client-first-message-bare "," server-first-message "," client-final-without-proof
    ClientSignature = HMAC(StoredKey, AuthMessage)
    ClientProof     = ClientKey XOR ClientSignature          (sent by the client)
    ServerSignature = HMAC(ServerKey, AuthMessage)           (sent by the server)

The exchange, server side (`ScramServer.step`, called once per client message):

    client-first  n,,n=<user>,r=<cnonce>               ->  r=<cnonce+snonce>,s=<salt>,i=<n>
    client-final  c=biws,r=<cnonce+snonce>,p=<proof>   ->  v=<ServerSignature>

librdkafka before 2.6.1 (Debian's kcat has 2.0.2) sends `r=<cnonce><cnonce+snonce>` in its
client-final (confluentinc/librdkafka#4895). Kafka 3.8.1 and 3.9 accept that form: they check
that r ends with the server's nonce. This server accepts exactly that form and no other. The
proof signs the r it was sent, so the check still ties the proof to this exchange's nonce.

A server never tells whether a user exists: an unknown user gets a plausible server-first-message
(a salt derived from the name, the default iteration count) and fails at the final step with the
same error as a wrong password. Passwords are not SASLprepped: like Kafka, the UTF-8 bytes of the
string are used as they are, so logbroker and Kafka derive the same keys from the same password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

import attrs

from logbroker.errors import IllegalSaslStateError, SaslAuthenticationError

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MAX_MESSAGE_BYTES",
    "MECHANISMS",
    "MIN_ITERATIONS",
    "ScramClient",
    "ScramCredential",
    "ScramServer",
    "check_password",
    "check_username",
    "make_credential",
    "parse_plain",
]

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_ITERATIONS = 8192
#: Kafka's bounds (ScramMechanism): below 4096 is too cheap to brute-force; the upper bound keeps a
#: PLAIN login (which runs PBKDF2 on the broker) and a client facing a hostile server cheap enough.
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
#: Cap on one SASL message; real ones are a few hundred bytes.
MAX_MESSAGE_BYTES = 4096

_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_SALT_BYTES = 16
_MAX_SALT_BYTES = 1024
_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,255}")
# RFC 5802 `printable`: %x21-2B / %x2D-7E, i.e. visible ASCII without ",".
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# One message for every failure that depends on the credentials, so nobody learns who exists.
_FAILED = "authentication failed"


def check_username(name: str) -> None:
    """Raise `ValueError` unless `name` is 1 to 255 of `A-Z a-z 0-9 . _ @ -`.

    The narrow alphabet keeps names safe in SCRAM (no "," or "="), in file names and in logs."""
    if not isinstance(name, str) or _USERNAME.fullmatch(name) is None:
        raise ValueError(f"invalid user name {name!r}: use 1 to 255 of A-Z a-z 0-9 . _ @ -")


def _hash_name(mechanism: str) -> str:
    try:
        return _HASHES[mechanism]
    except KeyError:
        raise ValueError(f"unknown SCRAM mechanism {mechanism!r}: expected one of {MECHANISMS}") from None


def _hmac(hash_name: str, key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, hash_name)


def _h(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()


def _salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    # No SASLprep: Kafka hashes the UTF-8 bytes as they are, and keys must match Kafka's.
    return hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64 (no stray characters); `ValueError` otherwise."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64") from None


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


@attrs.frozen
class ScramCredential:
    """What the broker stores for one user and mechanism; enough to verify, not to log in."""

    mechanism: str
    salt: bytes = attrs.field(repr=False)
    iterations: int
    stored_key: bytes = attrs.field(repr=False)
    server_key: bytes = attrs.field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "salt": _b64(self.salt),
            "iterations": self.iterations,
            "stored_key": _b64(self.stored_key),
            "server_key": _b64(self.server_key),
        }

    @classmethod
    def from_json(cls, data: object) -> ScramCredential:
        """The inverse of `to_json`; `ValueError` on anything else (it may come from a hand-edited file)."""
        if not isinstance(data, dict):
            raise ValueError("a SCRAM credential must be an object")
        mechanism = data.get("mechanism")
        if not isinstance(mechanism, str):
            raise ValueError("credential: 'mechanism' must be a string")
        digest_size = hashlib.new(_hash_name(mechanism)).digest_size
        iterations = data.get("iterations")
        if type(iterations) is not int or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError(
                f"credential: 'iterations' must be an integer from {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            )
        fields: dict[str, bytes] = {}
        for name in ("salt", "stored_key", "server_key"):
            value = data.get(name)
            if not isinstance(value, str):
                raise ValueError(f"credential: {name!r} must be a base64 string")
            try:
                fields[name] = _unb64(value)
            except ValueError:
                raise ValueError(f"credential: {name!r} is not valid base64") from None
        if not 1 <= len(fields["salt"]) <= _MAX_SALT_BYTES:
            raise ValueError("credential: 'salt' has a bad length")
        for name in ("stored_key", "server_key"):
            if len(fields[name]) != digest_size:
                raise ValueError(f"credential: {name!r} must be {digest_size} bytes for {mechanism}")
        return cls(mechanism, fields["salt"], iterations, fields["stored_key"], fields["server_key"])


def make_credential(
    password: str, mechanism: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    """Derive the stored credential for `password` (a fresh random salt unless one is given)."""
    hash_name = _hash_name(mechanism)
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {iterations}")
    if salt is None:
        salt = secrets.token_bytes(_SALT_BYTES)
    if not 1 <= len(salt) <= _MAX_SALT_BYTES:
        raise ValueError("the salt must be 1 to 1024 bytes")
    salted = _salted_password(hash_name, password, salt, iterations)
    client_key = _hmac(hash_name, salted, b"Client Key")
    return ScramCredential(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=_h(hash_name, client_key),
        server_key=_hmac(hash_name, salted, b"Server Key"),
    )


def check_password(credential: ScramCredential, password: str) -> bool:
    """Whether `password` is the one `credential` was made from (how PLAIN logins are verified)."""
    hash_name = _hash_name(credential.mechanism)
    salted = _salted_password(hash_name, password, credential.salt, credential.iterations)
    stored_key = _h(hash_name, _hmac(hash_name, salted, b"Client Key"))
    return hmac.compare_digest(stored_key, credential.stored_key)


def _text(message: bytes, what: str) -> str:
    if len(message) > MAX_MESSAGE_BYTES:
        raise SaslAuthenticationError(f"{what} is longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslAuthenticationError(f"{what} is not UTF-8") from None


def parse_plain(message: bytes) -> tuple[str, str]:
    """Split a PLAIN message, `[authzid] NUL authcid NUL passwd` (RFC 4616), into (user, password).

    An authorization identity other than the user's own is refused: logbroker has no impersonation."""
    text = _text(message, "PLAIN message")
    parts = text.split("\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslAuthenticationError("malformed PLAIN message")
    authzid, username, password = parts
    if authzid and authzid != username:
        raise SaslAuthenticationError("PLAIN: the authorization identity must be the user's own")
    return username, password


def _escape_saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(value: str) -> str:
    """RFC 5802 saslname: "," and "=" arrive as =2C and =3D; any other "=" is malformed."""
    if re.fullmatch(r"(?:[^=,]|=2C|=3D)*", value) is None:
        raise SaslAuthenticationError("malformed user name in client-first-message")
    return value.replace("=2C", ",").replace("=3D", "=")


def _attribute(part: str, name: str, what: str) -> str:
    if not part.startswith(name + "="):
        raise SaslAuthenticationError(f"malformed {what}: expected {name}=")
    return part[len(name) + 1 :]


def _check_nonce(nonce: str, what: str) -> str:
    if _NONCE.fullmatch(nonce) is None:
        raise SaslAuthenticationError(f"malformed {what}: bad nonce")
    return nonce


def _new_nonce() -> str:
    return secrets.token_urlsafe(24)  # base64url: printable and without ","


# Derives the decoy salts of unknown users; a restart changes them (see `ScramServer`).
_DECOY_KEY = secrets.token_bytes(32)


class ScramServer:
    """The broker's side of one SCRAM exchange: feed each client message to `step`, send back
    what it returns. `username` is set only once the client proved it knows the password, and
    `done` is true only then; any failure raises `SaslAuthenticationError` and ends the exchange
    (the broker closes the connection), after which `step` raises `IllegalSaslStateError`.

    `lookup` returns the user's credential for this mechanism or None. Unknown users are answered
    with a salt derived from `decoy_key` and the name; by default that key is random per process,
    so a client that watches salts across broker restarts could still tell; pass a persistent key
    to close that gap.
    """

    def __init__(
        self,
        mechanism: str,
        lookup: Callable[[str], ScramCredential | None],
        nonce: str | None = None,
        *,
        decoy_key: bytes | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._hash_name = _hash_name(mechanism)
        self._lookup = lookup
        self._nonce = _new_nonce() if nonce is None else nonce
        if _NONCE.fullmatch(self._nonce) is None:
            raise ValueError("a SCRAM nonce must be printable ASCII without ','")
        self._decoy_key = _DECOY_KEY if decoy_key is None else decoy_key
        self._state = "first"  # -> "final" -> "done" | "failed"
        self._claimed_user = ""
        self._credential: ScramCredential | None = None
        self._gs2_header = ""
        self._combined_nonce = ""
        #: What librdkafka before 2.6.1 sends as the final nonce: the client's nonce once more.
        self._doubled_nonce = ""
        self._auth_prefix = ""  # client-first-message-bare "," server-first-message
        self._username: str | None = None

    @property
    def done(self) -> bool:
        """Whether the exchange finished with a verified proof."""
        return self._state == "done"

    @property
    def username(self) -> str | None:
        """The authenticated user: None until the client's proof has been verified."""
        return self._username

    def step(self, message: bytes) -> bytes:
        """Take the next client message and return the server's reply."""
        state = self._state
        if state not in ("first", "final"):
            raise IllegalSaslStateError(f"the SCRAM exchange is over ({state})")
        self._state = "failed"  # until this step succeeds
        if state == "first":
            reply = self._client_first(_text(message, "client-first-message"))
            self._state = "final"
        else:
            reply = self._client_final(_text(message, "client-final-message"))
            self._state = "done"
        return reply

    def _client_first(self, text: str) -> bytes:
        what = "client-first-message"
        parts = text.split(",")
        if len(parts) < 4:
            raise SaslAuthenticationError(f"malformed {what}")
        cbind, authzid = parts[0], parts[1]
        if cbind.startswith("p="):
            raise SaslAuthenticationError("channel binding is not supported")
        if cbind not in ("n", "y"):
            raise SaslAuthenticationError(f"malformed {what}: bad GS2 header")
        if parts[2].startswith("m="):
            raise SaslAuthenticationError(f"{what}: mandatory extensions are not supported")
        username = _unescape_saslname(_attribute(parts[2], "n", what))
        client_nonce = _check_nonce(_attribute(parts[3], "r", what), what)
        # parts[4:] are optional extensions (Kafka's "tokenauth=true"): ignored, as RFC 5802 says.
        if authzid and _unescape_saslname(_attribute(authzid, "a", what)) != username:
            raise SaslAuthenticationError(f"{what}: the authorization identity must be the user's own")

        credential = None
        try:
            check_username(username)
        except ValueError:
            pass  # answered like any unknown user
        else:
            credential = self._lookup(username)
        if credential is not None and credential.mechanism != self.mechanism:
            credential = None
        if credential is None:
            salt = _hmac("sha256", self._decoy_key, f"{self.mechanism}\0{username}".encode())[:_SALT_BYTES]
            iterations = DEFAULT_ITERATIONS
        else:
            salt, iterations = credential.salt, credential.iterations

        self._claimed_user = username
        self._credential = credential
        self._gs2_header = f"{cbind},{authzid},"
        self._combined_nonce = client_nonce + self._nonce
        self._doubled_nonce = client_nonce + self._combined_nonce
        server_first = f"r={self._combined_nonce},s={_b64(salt)},i={iterations}"
        client_first_bare = text[len(self._gs2_header) :]
        self._auth_prefix = f"{client_first_bare},{server_first}"
        return server_first.encode("ascii")

    def _client_final(self, text: str) -> bytes:
        what = "client-final-message"
        parts = text.split(",")
        if len(parts) < 3:
            raise SaslAuthenticationError(f"malformed {what}")
        binding = _attribute(parts[0], "c", what)
        nonce = _attribute(parts[1], "r", what)
        proof_text = _attribute(parts[-1], "p", what)
        # The proof is the last attribute; everything before it is signed.
        without_proof = text[: len(text) - len(parts[-1]) - 1]
        expected_binding = _b64(self._gs2_header.encode("utf-8"))
        if not hmac.compare_digest(binding.encode(), expected_binding.encode()):
            raise SaslAuthenticationError(f"{what}: channel binding does not match the GS2 header")
        sent = nonce.encode()
        right = hmac.compare_digest(sent, self._combined_nonce.encode())
        doubled = hmac.compare_digest(sent, self._doubled_nonce.encode())
        if not (right or doubled):
            raise SaslAuthenticationError(f"{what}: wrong nonce")
        try:
            proof = _unb64(proof_text)
        except ValueError:
            raise SaslAuthenticationError(f"malformed {what}: proof is not base64") from None
        digest_size = hashlib.new(self._hash_name).digest_size
        if len(proof) != digest_size:
            raise SaslAuthenticationError(f"malformed {what}: proof must be {digest_size} bytes")

        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        credential = self._credential
        # An unknown user runs the same computation against random keys, then fails the same way.
        stored_key = secrets.token_bytes(digest_size) if credential is None else credential.stored_key
        server_key = secrets.token_bytes(digest_size) if credential is None else credential.server_key
        client_signature = _hmac(self._hash_name, stored_key, auth_message)
        client_key = _xor(proof, client_signature)
        verified = hmac.compare_digest(_h(self._hash_name, client_key), stored_key)
        if credential is None or not verified:
            raise SaslAuthenticationError(_FAILED)
        self._username = self._claimed_user
        return f"v={_b64(_hmac(self._hash_name, server_key, auth_message))}".encode("ascii")


class ScramClient:
    """A client's side of one SCRAM exchange (for logbroker's own client): send `first()`, pass
    the server's reply to `final()` and send that, then check the server's last message with
    `verify()`, which proves the server knows the credential too."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self._hash_name = _hash_name(mechanism)
        self.username = username
        self._password = password
        self._nonce = _new_nonce() if nonce is None else nonce
        if _NONCE.fullmatch(self._nonce) is None:
            raise ValueError("a SCRAM nonce must be printable ASCII without ','")
        self._state = "first"
        self._client_first_bare = f"n={_escape_saslname(username)},r={self._nonce}"
        self._server_signature = b""

    def _advance(self, expected: str, following: str) -> None:
        if self._state != expected:
            raise IllegalSaslStateError(f"SCRAM client: {expected} step out of turn (state {self._state})")
        self._state = following

    def first(self) -> bytes:
        self._advance("first", "final")
        return f"n,,{self._client_first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        self._advance("final", "verify")
        what = "server-first-message"
        text = _text(server_first, what)
        parts = text.split(",")
        if len(parts) < 3:
            raise SaslAuthenticationError(f"malformed {what}")
        if parts[0].startswith("m="):
            raise SaslAuthenticationError(f"{what}: mandatory extensions are not supported")
        nonce = _check_nonce(_attribute(parts[0], "r", what), what)
        if not nonce.startswith(self._nonce) or nonce == self._nonce:
            raise SaslAuthenticationError(f"{what}: the server nonce does not extend ours")
        try:
            salt = _unb64(_attribute(parts[1], "s", what))
        except ValueError:
            raise SaslAuthenticationError(f"malformed {what}: salt is not base64") from None
        iterations_text = _attribute(parts[2], "i", what)
        if not iterations_text.isascii() or not iterations_text.isdigit() or len(iterations_text) > 9:
            raise SaslAuthenticationError(f"malformed {what}: bad iteration count")
        iterations = int(iterations_text)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise SaslAuthenticationError(
                f"{what}: iteration count {iterations} outside {MIN_ITERATIONS}..{MAX_ITERATIONS}"
            )
        if not salt or len(salt) > _MAX_SALT_BYTES:
            raise SaslAuthenticationError(f"malformed {what}: bad salt")

        hash_name = self._hash_name
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        salted = _salted_password(hash_name, self._password, salt, iterations)
        client_key = _hmac(hash_name, salted, b"Client Key")
        client_signature = _hmac(hash_name, _h(hash_name, client_key), auth_message)
        server_key = _hmac(hash_name, salted, b"Server Key")
        self._server_signature = _hmac(hash_name, server_key, auth_message)
        return f"{without_proof},p={_b64(_xor(client_key, client_signature))}".encode("ascii")

    def verify(self, server_final: bytes) -> None:
        """Raise `SaslAuthenticationError` unless the server sent the right ServerSignature."""
        self._advance("verify", "done")
        what = "server-final-message"
        text = _text(server_final, what)
        first = text.split(",")[0]
        if first.startswith("e="):
            raise SaslAuthenticationError(f"the server refused the login: {first[2:]}")
        try:
            signature = _unb64(_attribute(first, "v", what))
        except ValueError:
            raise SaslAuthenticationError(f"malformed {what}: signature is not base64") from None
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslAuthenticationError("the server's signature is wrong: it does not know the credential")

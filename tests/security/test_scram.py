"""SCRAM-SHA-256/512 and PLAIN (sans-IO): the RFC 7677 vector, round trips with our own client and
with kafka-python's as an independent oracle, and every way a client-side message can be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from logbroker.errors import IllegalSaslStateError, SaslAuthenticationError
from logbroker.security.scram import (
    DEFAULT_ITERATIONS,
    MAX_MESSAGE_BYTES,
    MECHANISMS,
    ScramClient,
    ScramCredential,
    ScramServer,
    check_password,
    check_username,
    make_credential,
    parse_plain,
)

# RFC 7677, section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

# Every failure that depends on the credentials says exactly this.
FAILED = "^authentication failed$"

CREDENTIALS = {
    ("alice", mechanism): make_credential("wonderland", mechanism, iterations=4096)
    for mechanism in MECHANISMS
}


def lookup_for(mechanism: str):  # type: ignore[no-untyped-def]
    return lambda name: CREDENTIALS.get((name, mechanism))


def rfc_server() -> ScramServer:
    credential = make_credential("pencil", "SCRAM-SHA-256", iterations=4096, salt=RFC_SALT)
    return ScramServer("SCRAM-SHA-256", {"user": credential}.get, nonce=RFC_SERVER_NONCE)


def test_rfc7677_vector_server() -> None:
    server = rfc_server()
    assert server.step(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert (server.done, server.username) == (False, None)
    assert server.step(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert (server.done, server.username) == (True, "user")


def test_rfc7677_vector_client() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_round_trip(mechanism: str) -> None:
    client = ScramClient(mechanism, "alice", "wonderland")
    server = ScramServer(mechanism, lookup_for(mechanism))
    client.verify(server.step(client.final(server.step(client.first()))))
    assert server.done and server.username == "alice"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_client_as_oracle(mechanism: str) -> None:
    scram = pytest.importorskip("kafka.net.sasl.scram")
    client = scram.ScramClient("alice", "wonderland", mechanism)
    server = ScramServer(mechanism, lookup_for(mechanism))
    client.process_server_first_message(server.step(client.first_message()))
    client.process_server_final_message(server.step(client.final_message()))  # raises if v= is wrong
    assert server.username == "alice"


def test_kafka_python_client_with_wrong_password_fails() -> None:
    scram = pytest.importorskip("kafka.net.sasl.scram")
    client = scram.ScramClient("alice", "looking-glass", "SCRAM-SHA-512")
    server = ScramServer("SCRAM-SHA-512", lookup_for("SCRAM-SHA-512"))
    client.process_server_first_message(server.step(client.first_message()))
    with pytest.raises(SaslAuthenticationError, match=FAILED):
        server.step(client.final_message())


def test_mechanism_mismatch_between_client_and_server_fails() -> None:
    client = ScramClient("SCRAM-SHA-256", "alice", "wonderland")
    server = ScramServer("SCRAM-SHA-512", lookup_for("SCRAM-SHA-512"))
    final = client.final(server.step(client.first()))
    with pytest.raises(SaslAuthenticationError):
        server.step(final)  # a SHA-256 proof is the wrong length for SHA-512
    assert server.username is None


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password(mechanism: str) -> None:
    client = ScramClient(mechanism, "alice", "looking-glass")
    server = ScramServer(mechanism, lookup_for(mechanism))
    final = client.final(server.step(client.first()))
    with pytest.raises(SaslAuthenticationError, match=FAILED):
        server.step(final)
    assert server.username is None and not server.done
    with pytest.raises(IllegalSaslStateError):
        server.step(final)


def _shape(server_first: bytes) -> tuple[str, int, str]:
    match = re.fullmatch(rb"r=([!-+\--~]+),s=([A-Za-z0-9+/=]+),i=(\d+)", server_first)
    assert match is not None, server_first
    return match[1].decode(), len(base64.b64decode(match[2])), match[3].decode()


@pytest.mark.parametrize("username", ["bob", "not a valid name!", "x" * 300])
def test_unknown_user_looks_like_a_known_one(username: str) -> None:
    mechanism = "SCRAM-SHA-256"
    credential = make_credential("wonderland", mechanism)  # the default iteration count
    known = ScramServer(mechanism, {"alice": credential}.get, nonce="N")
    unknown = ScramServer(mechanism, lookup_for(mechanism), nonce="N")
    known_first = known.step(ScramClient(mechanism, "alice", "x", nonce="c").first())
    client = ScramClient(mechanism, username, "wonderland", nonce="c")
    unknown_first = unknown.step(client.first())
    assert _shape(unknown_first) == _shape(known_first) == ("cN", 16, str(DEFAULT_ITERATIONS))
    final = client.final(unknown_first)
    with pytest.raises(SaslAuthenticationError, match=FAILED):
        unknown.step(final)
    assert unknown.username is None


def test_unknown_user_salt_is_stable_and_per_user() -> None:
    def salt_of(name: str) -> bytes:
        server = ScramServer("SCRAM-SHA-256", lambda _: None)
        return server.step(f"n,,n={name},r=abc".encode()).split(b",")[1]

    assert salt_of("bob") == salt_of("bob") != salt_of("carol")


def test_unknown_user_fails_like_a_wrong_password() -> None:
    messages = []
    for name in ("alice", "bob"):
        client = ScramClient("SCRAM-SHA-256", name, "nope")
        server = ScramServer("SCRAM-SHA-256", lookup_for("SCRAM-SHA-256"))
        with pytest.raises(SaslAuthenticationError) as info:
            server.step(client.final(server.step(client.first())))
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def _server_after_first(client_first: bytes = b"n,,n=alice,r=cnonce") -> ScramServer:
    server = ScramServer("SCRAM-SHA-256", lookup_for("SCRAM-SHA-256"), nonce="snonce")
    server.step(client_first)
    return server


def _good_final(client_first: bytes = b"n,,n=alice,r=cnonce") -> bytes:
    client = ScramClient("SCRAM-SHA-256", "alice", "wonderland", nonce="cnonce")
    client.first()
    server = ScramServer("SCRAM-SHA-256", lookup_for("SCRAM-SHA-256"), nonce="snonce")
    return client.final(server.step(client_first))


def test_authzid_equal_to_user_is_accepted_and_bound() -> None:
    server = _server_after_first(b"n,a=alice,n=alice,r=cnonce")
    with pytest.raises(SaslAuthenticationError, match="channel binding"):
        server.step(_good_final())  # c= must be base64 of "n,a=alice,", not of "n,,"


def test_y_flag_binding_must_be_echoed() -> None:
    server = _server_after_first(b"y,,n=alice,r=cnonce")
    final = _good_final().replace(b"c=biws", b"c=" + base64.b64encode(b"y,,"))
    with pytest.raises(SaslAuthenticationError, match=FAILED):
        server.step(final)  # binding accepted; the proof was computed over c=biws, so it fails


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"p=tls-unique,,n=alice,r=c", "channel binding is not supported"),
        (b"x,,n=alice,r=c", "GS2 header"),
        (b"n,a=bob,n=alice,r=c", "authorization identity"),
        (b"n,,m=ext,n=alice,r=c", "mandatory extensions"),
        (b"n,,n=al=2Dice,r=c", "malformed user name"),
        (b"n,,n=alice", "malformed"),
        (b"n,,r=c,n=alice", "expected n="),
        (b"n,,n=alice,r=", "bad nonce"),
        (b"n,,n=alice,r=\x7f", "bad nonce"),
        (b"n,,n=\xff\xfe,r=c", "not UTF-8"),
        (b"n,,n=alice,r=" + b"c" * MAX_MESSAGE_BYTES, "longer than"),
    ],
)
def test_bad_client_first(message: bytes, error: str) -> None:
    server = ScramServer("SCRAM-SHA-256", lookup_for("SCRAM-SHA-256"))
    with pytest.raises(SaslAuthenticationError, match=error):
        server.step(message)
    assert server.username is None
    with pytest.raises(IllegalSaslStateError):
        server.step(b"n,,n=alice,r=c")


def test_saslname_escapes_are_decoded() -> None:
    seen: list[str] = []

    def lookup(name: str) -> ScramCredential | None:
        seen.append(name)
        return None

    # "a=b" is not a valid logbroker name, so it is never looked up; "a.b" is, after decoding.
    ScramServer("SCRAM-SHA-256", lookup).step(b"n,,n=a=3Db,r=c")
    ScramServer("SCRAM-SHA-256", lookup).step(b"n,,n=a.b,r=c,tokenauth=true")
    assert seen == ["a.b"]


def _tamper(message: bytes, old: bytes, new: bytes) -> bytes:
    assert old in message
    return message.replace(old, new)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda m: _tamper(m, b"r=cnonce", b"r=cnonceX"), "wrong nonce"),
        (lambda m: _tamper(m, b"snonce", b"snoncf"), "wrong nonce"),
        (lambda m: _tamper(m, b"c=biws", b"c=eSws"), "channel binding"),
        (lambda m: _tamper(m, b"c=biws", b"c=biws="), "channel binding"),
        (lambda m: m[:-8], "proof"),
        (lambda m: m + b"AAAA", "proof"),
        (lambda m: m[: m.index(b",p=")] + b",p=!!!!", "not base64"),
        (lambda m: m[: m.index(b",p=")], "malformed"),
        (lambda m: m[: m.index(b",p=")] + b",x=y", "expected p="),
        (lambda m: b"r=x,c=biws,p=abc", "expected c="),
        (lambda m: b"c=biws", "malformed"),
        (lambda m: m.replace(b"c=", b"c=\xff"), "not UTF-8"),
        (lambda m: m + b"A" * MAX_MESSAGE_BYTES, "longer than"),
        (lambda m: _tamper(m, b",p=", b",x=extension,p="), FAILED),  # extensions are signed
    ],
)
def test_bad_client_final(change, error: str) -> None:  # type: ignore[no-untyped-def]
    server = _server_after_first()
    with pytest.raises(SaslAuthenticationError, match=error):
        server.step(change(_good_final()))
    assert server.username is None and not server.done


def test_good_final_is_accepted() -> None:
    server = _server_after_first()
    server.step(_good_final())
    assert server.username == "alice"


def _final_signed_over(nonce: str) -> bytes:
    """A client-final for the RFC 7677 exchange with `nonce` as its r=, and a proof that is right
    for it: computed here from RFC 5802's formulas, not by our client."""
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", RFC_SALT, 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    without_proof = f"c=biws,r={nonce}"
    auth_message = b",".join([RFC_CLIENT_FIRST[3:], RFC_SERVER_FIRST, without_proof.encode()])
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def test_librdkafka_before_2_6_1_sending_its_nonce_twice_logs_in() -> None:
    """librdkafka before 2.6.1 (Debian's kcat) sends r=<cnonce><cnonce+snonce>
    (confluentinc/librdkafka#4895); Kafka 3.8.1-3.9 accept it, and so does logbroker."""
    assert _final_signed_over(RFC_CLIENT_NONCE + RFC_SERVER_NONCE) == RFC_CLIENT_FINAL  # the helper is right
    server = rfc_server()
    server.step(RFC_CLIENT_FIRST)
    doubled = RFC_CLIENT_NONCE + RFC_CLIENT_NONCE + RFC_SERVER_NONCE
    assert server.step(_final_signed_over(doubled)).startswith(b"v=")
    assert (server.done, server.username) == (True, "user")


@pytest.mark.parametrize(
    "nonce",
    [
        RFC_CLIENT_NONCE * 3 + RFC_SERVER_NONCE,  # three times
        "x" + RFC_CLIENT_NONCE + RFC_SERVER_NONCE,  # ends with the right nonce: Kafka 3.9 takes it
        RFC_CLIENT_NONCE + RFC_SERVER_NONCE + RFC_CLIENT_NONCE,
        RFC_CLIENT_NONCE,
    ],
)
def test_no_other_final_nonce_is_taken_even_with_a_proof_signed_over_it(nonce: str) -> None:
    server = rfc_server()
    server.step(RFC_CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationError, match="wrong nonce"):
        server.step(_final_signed_over(nonce))
    assert server.username is None


def test_flipped_proof_bit_fails() -> None:
    final = _good_final()
    head, proof = final.split(b",p=")
    flipped = bytearray(base64.b64decode(proof))
    flipped[0] ^= 1
    server = _server_after_first()
    with pytest.raises(SaslAuthenticationError, match=FAILED):
        server.step(head + b",p=" + base64.b64encode(bytes(flipped)))


def test_third_step_is_illegal() -> None:
    server = rfc_server()
    server.step(RFC_CLIENT_FIRST)
    server.step(RFC_CLIENT_FINAL)
    with pytest.raises(IllegalSaslStateError):
        server.step(RFC_CLIENT_FINAL)
    assert server.username == "user"


def test_client_checks_the_server() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.first()
    client.final(RFC_SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError, match="signature is wrong"):
        client.verify(b"v=" + base64.b64encode(bytes(32)))

    refused = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC_CLIENT_NONCE)
    refused.first()
    refused.final(RFC_SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError, match="invalid-proof"):
        refused.verify(b"e=invalid-proof")


@pytest.mark.parametrize(
    ("server_first", "error"),
    [
        (b"r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (b"r=" + RFC_CLIENT_NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=1024"), "iteration count"),
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=999999999999"), "iteration count"),
        (RFC_SERVER_FIRST.replace(b"s=W22", b"s=*22"), "salt"),
        (b"m=x," + RFC_SERVER_FIRST, "mandatory"),
    ],
)
def test_client_rejects_bad_server_first(server_first: bytes, error: str) -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.first()
    with pytest.raises(SaslAuthenticationError, match=error):
        client.final(server_first)


def test_client_steps_in_order() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil")
    with pytest.raises(IllegalSaslStateError):
        client.final(RFC_SERVER_FIRST)


def test_client_escapes_saslname() -> None:
    assert ScramClient("SCRAM-SHA-256", "a,b=c", "p", nonce="n").first() == b"n,,n=a=2Cb=3Dc,r=n"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_check_password(mechanism: str) -> None:
    credential = CREDENTIALS[("alice", mechanism)]
    assert check_password(credential, "wonderland")
    assert not check_password(credential, "Wonderland")
    assert not check_password(credential, "")


def test_non_ascii_password_is_utf8_without_saslprep() -> None:
    credential = make_credential("p\u00e4ss\u2163", "SCRAM-SHA-256", iterations=4096)
    assert check_password(credential, "p\u00e4ss\u2163")
    assert not check_password(credential, "p\u00e4ssIV")  # SASLprep would map U+2163 to "IV"


def test_make_credential_refuses_few_iterations() -> None:
    with pytest.raises(ValueError, match="iterations"):
        make_credential("pw", "SCRAM-SHA-256", iterations=4095)
    with pytest.raises(ValueError, match="mechanism"):
        make_credential("pw", "SCRAM-SHA-1")


def test_credential_json_round_trip() -> None:
    credential = CREDENTIALS[("alice", "SCRAM-SHA-512")]
    assert ScramCredential.from_json(credential.to_json()) == credential
    assert "wonderland" not in repr(credential) and "stored_key=" not in repr(credential)


@pytest.mark.parametrize(
    "change",
    [
        {"mechanism": "SCRAM-SHA-1"},
        {"mechanism": None},
        {"iterations": "8192"},
        {"iterations": True},
        {"iterations": 100},
        {"salt": 5},
        {"salt": "not base64!"},
        {"salt": ""},
        {"stored_key": base64.b64encode(bytes(31)).decode()},
        {"server_key": "AAAA"},
    ],
)
def test_credential_from_bad_json(change: dict[str, object]) -> None:
    data = {**CREDENTIALS[("alice", "SCRAM-SHA-256")].to_json(), **change}
    with pytest.raises(ValueError):
        ScramCredential.from_json(data)


def test_credential_from_json_not_an_object() -> None:
    with pytest.raises(ValueError):
        ScramCredential.from_json(["SCRAM-SHA-256"])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\0alice\0secret", ("alice", "secret")),
        (b"alice\0alice\0secret", ("alice", "secret")),
        (b"\0alice\0p\xc3\xa4ss\0", None),
        ("\0alice\0p\u00e4ss".encode(), ("alice", "p\u00e4ss")),
    ],
)
def test_parse_plain(message: bytes, expected: tuple[str, str] | None) -> None:
    if expected is None:
        with pytest.raises(SaslAuthenticationError):
            parse_plain(message)
    else:
        assert parse_plain(message) == expected


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"bob\0alice\0secret", "authorization identity"),
        (b"alice\0secret", "malformed"),
        (b"\0\0secret", "malformed"),
        (b"\0alice\0", "malformed"),
        (b"", "malformed"),
        (b"\0alice\0\xff", "not UTF-8"),
        (b"\0alice\0" + b"x" * MAX_MESSAGE_BYTES, "longer than"),
    ],
)
def test_parse_plain_rejects(message: bytes, error: str) -> None:
    with pytest.raises(SaslAuthenticationError, match=error):
        parse_plain(message)


@pytest.mark.parametrize("name", ["alice", "a", "svc.producer-1_x@example.com", "x" * 255])
def test_good_usernames(name: str) -> None:
    check_username(name)


@pytest.mark.parametrize("name", ["", "x" * 256, "a b", "a,b", "a=b", "é", "alice\n", "a/b"])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(ValueError):
        check_username(name)


def test_server_refuses_bad_injected_nonce() -> None:
    with pytest.raises(ValueError):
        ScramServer("SCRAM-SHA-256", lambda _: None, nonce="a,b")

"""kcat (Debian's: librdkafka 2.0.2) logging in to `logbroker serve --authenticate`: SCRAM-SHA-256
and -512 over plain TCP, PLAIN over TLS, and a wrong password.

That librdkafka turns SASL on only when ApiVersions lists SaslHandshake v0, and sends its own
SCRAM nonce twice in its final message; both are served (docs/security.md).

CI installs kcat from Debian (`.ci/run`); elsewhere these tests are skipped without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from logbroker.testing import ServeProcess

from ..kafka.test_kcat import kcat
from .conftest import USERS, Pki

pytestmark = pytest.mark.skipif(
    shutil.which("kcat") is None and not os.environ.get("CI"), reason="kcat is not installed (CI installs it)"
)


def login(mechanism: str, password: str = USERS["alice"], protocol: str = "SASL_PLAINTEXT") -> list[str]:
    settings = {
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": password,
    }
    return [arg for key, value in settings.items() for arg in ("-X", f"{key}={value}")]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kcat_logs_in_with_scram_to_list_produce_and_consume(security_dir: str, mechanism: str) -> None:
    with ServeProcess("--authenticate", "--security-dir", security_dir, kafka=True) as server:
        listing = kcat(server, *login(mechanism), "-L")
        assert "broker 0 at" in listing
        kcat(server, *login(mechanism), "-P", "-t", "logins", input="one\ntwo\n")
        consumed = kcat(server, *login(mechanism), "-C", "-t", "logins", "-e", "-f", "%s\\n")
        assert consumed.split() == ["one", "two"]
        code, log = server.stop()
    assert code == 0
    assert log.count("logged in as User:alice") >= 3


def test_kcat_with_a_wrong_password_fails_and_the_broker_logs_the_user(security_dir: str) -> None:
    with ServeProcess("--authenticate", "--security-dir", security_dir, kafka=True) as server:
        refused = subprocess.run(
            ["kcat", "-b", server.kafka_address, *login("SCRAM-SHA-256", "wrong"), "-L", "-m", "3"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        code, log = server.stop()
    assert refused.returncode != 0
    assert "authentication failed" in refused.stderr
    assert code == 0 and "login failed for user 'alice'" in log


def test_kcat_logs_in_with_plain_over_tls(security_dir: str, pki: Pki) -> None:
    tls = ["--tls-cert", pki.cert, "--tls-key", pki.key]
    with ServeProcess("--authenticate", "--security-dir", security_dir, *tls, kafka=True) as server:
        plain = [*login("PLAIN", protocol="SASL_SSL"), "-X", f"ssl.ca.location={pki.ca}"]
        kcat(server, *plain, "-P", "-t", "secret", input="over tls\n")
        assert kcat(server, *plain, "-C", "-t", "secret", "-e", "-f", "%s\\n") == "over tls\n"

"""A throwaway CA (trustme) for the TLS tests, and brokers that require logins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

from logbroker.security.users import UserStore
from logbroker.testing import BrokerThread, RunningBroker


@attrs.frozen
class Pki:
    ca: str
    cert: str
    key: str
    client_cert: str  # certificate and key in one PEM
    other_client: str  # signed by another CA
    named_client: str  # signed by the CA, with the common name "orders-service"
    odd_client: str  # signed by the CA, with the common name "orders service" (a space)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: str(folder / name) for name in ("ca", "cert", "key", "client", "other", "named", "odd")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["key"])
    server.cert_chain_pems[0].write_to_path(paths["cert"])
    for name, authority in (("client", ca), ("other", other_ca)):
        issued = authority.issue_cert("client@example.org")
        issued.private_key_and_cert_chain_pem.write_to_path(paths[name])
    named = ca.issue_cert("orders@example.org", common_name="orders-service")
    named.private_key_and_cert_chain_pem.write_to_path(paths["named"])
    odd = ca.issue_cert("odd@example.org", common_name="orders service")
    odd.private_key_and_cert_chain_pem.write_to_path(paths["odd"])
    return Pki(*(paths[name] for name in ("ca", "cert", "key", "client", "other", "named", "odd")))


#: Users every login test can use: name -> password.
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture
def security_dir(tmp_path: Path) -> str:
    """A security directory holding USERS (as `logbroker users add` writes them)."""
    store = UserStore(str(tmp_path / "security"))
    for name, password in USERS.items():
        store.add(name, password, iterations=4096)
    return str(tmp_path / "security")


def login_settings(security_dir: str, **more: Any) -> dict[str, Any]:
    """BrokerThread settings for a broker that requires logins, with fast failures."""
    return {
        "authenticate": True,
        "security_dir": security_dir,
        "login_failure_delay": 0.2,
        "kafka_port": 0,
        "kafka_group_initial_delay": 0.0,
        "kafka_min_session_timeout": 0.5,
        **more,
    }


@pytest.fixture
def sasl_broker(security_dir: str) -> Iterator[RunningBroker]:
    with BrokerThread(**login_settings(security_dir, auto_create_topics=True)) as broker:
        yield broker

"""The ports swapped: the CLI on the Kafka port, kcat on the native port, against a `logbroker
serve` subprocess with both listeners. Each side says what happened; the broker logs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from logbroker.testing import ServeProcess
from tests.cli.conftest import Run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(kafka=True, log_path=tmp_path / "serve.log") as process:
        yield process


def test_the_cli_on_the_kafka_port_names_both_ports(run: Run, server: ServeProcess) -> None:
    done = run("topics", "list", "--bootstrap", server.kafka_address)
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: the broker at {server.kafka_address} refused the connection: it is a Kafka listener; "
        f"logbroker's own port is {server.address}\n"
    )
    said = (
        f"a logbroker client (client id 'logbroker-python') connected to the Kafka port "
        f"{server.kafka_address}; logbroker's own port is {server.address}"
    )
    log = server.stderr_text()
    assert [line for line in log.splitlines() if said in line and " WARNING " in line], log


def test_produce_on_the_kafka_port_gives_up_at_once_instead_of_retrying(
    run: Run, server: ServeProcess
) -> None:
    """A wrong port stays wrong: produce retries a broker that cannot be reached, not this."""
    done = run(
        "produce", "t", "--bootstrap", server.kafka_address, "--timeout", "60", input="x\n", timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: the broker at {server.kafka_address} refused the connection: ")
    assert done.stderr.rstrip().endswith("no message was read yet, none was sent")
    warnings = [line for line in server.stderr_text().splitlines() if "connected to the Kafka port" in line]
    assert len(warnings) == 1, warnings  # one attempt


@pytest.mark.skipif(
    shutil.which("kcat") is None and not os.environ.get("CI"), reason="kcat is not installed (CI installs it)"
)
def test_kcat_on_the_native_port_hears_no_broker_is_there_and_the_log_names_the_kafka_port(
    server: ServeProcess,
) -> None:
    done = subprocess.run(
        ["kcat", "-b", server.address, "-L", "-m", "2"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert "ApiVersionRequest failed: Broker: Broker not available" in done.stderr, done.stderr
    assert "SSL" not in done.stderr  # librdkafka's guess when a port closes on it
    log = server.stderr_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line and "Kafka client" in line]
    assert warnings and all(
        f"a Kafka client (client id 'rdkafka') connected to the native port {server.address}; "
        f"Kafka's listener is {server.kafka_address}" in line
        for line in warnings
    ), log

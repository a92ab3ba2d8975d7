"""The data-directory lock across processes: `serve` and an embedded broker exclude each other."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from logbroker.broker.broker import Broker
from logbroker.errors import StorageError
from logbroker.testing import BrokerThread
from tests.cli.conftest import ServeProcess

Serve = Callable[..., ServeProcess]


def test_an_embedded_broker_cannot_open_the_data_directory_of_a_running_serve(
    serve_process: Serve, tmp_path: Path
) -> None:
    serve_process(data_dir=tmp_path / "data")
    with pytest.raises(StorageError, match=f"{tmp_path / 'data'} is locked by another process"):
        Broker.open(str(tmp_path / "data"), now_ms=0)


def test_serve_refuses_the_data_directory_of_an_embedded_broker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerThread(data_dir=str(data)):
        refused = subprocess.run(
            [sys.executable, "-m", "logbroker.cli", "serve", "--port", "0", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 1
    assert f"{data} is locked by another process" in refused.stderr
    assert "Traceback" not in refused.stderr

"""The layers of `logbroker/` as the code imports them (docs/design.md, "Layers")."""

from __future__ import annotations

import subprocess
import sys

import pytest

SANS_IO = [
    "logbroker.records",
    "logbroker.storage",
    "logbroker.protocol",
    "logbroker.security",
    "logbroker.broker",
]


@pytest.mark.parametrize("package", SANS_IO)
def test_importing_a_lower_layer_loads_neither_trio_nor_the_client(package: str) -> None:
    code = (
        f"import sys, {package}, pkgutil, importlib\n"
        f"for info in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'trio' or m.startswith(('trio.', 'logbroker.client', 'logbroker.server')))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == []

"""The layers of `logbroker/` as the code imports them (docs/design.md, "Layers"): each part
imports only what lies below it, and the sans-IO layers load neither trio nor the client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logbroker"

BASE = {"errors", "failpoints"}
#: What each part of `logbroker/` may import of the others (Kafka's import-control file, as a
#: table). A part not listed here is a mistake: add it, with what it may use.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "failpoints": set(),
    "broadcast": set(),
    "tls": {"errors"},
    "records": BASE,
    "storage": BASE | {"records"},
    "protocol": BASE,
    "kafka": BASE | {"protocol"},
    "security": BASE,
    "broker": BASE | {"records", "storage"},
    "groups": BASE | {"records", "storage", "broker", "kafka"},
    "engine": BASE | {"records", "storage", "broker", "groups", "broadcast"},
    "server": BASE
    | {
        "records",
        "storage",
        "broker",
        "groups",
        "engine",
        "protocol",
        "kafka",
        "security",
        "broadcast",
        "tls",
    },
    "client": BASE | {"records", "protocol", "security", "broadcast", "tls"},
    "sync": BASE | {"client", "protocol", "records"},
    "testing": BASE | {"broker", "engine", "server"},
    "pytest_plugin": {"testing"},
    "cli": BASE | {"client", "protocol", "records", "storage", "security", "server", "tls"},
    "__init__": {"client"},
}

SANS_IO = [
    "logbroker.records",
    "logbroker.storage",
    "logbroker.protocol",
    "logbroker.kafka",
    "logbroker.security",
    "logbroker.broker",
    "logbroker.groups",
]


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "logbroker" and len(pieces) > 1 and pieces[1] != "__version__":
                parts.add(pieces[1])
    return parts


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_each_module_imports_only_the_layers_below_its_own(path: Path) -> None:
    part = part_of(path)
    assert part in ALLOWED, f"{part} is not in the layer table of this test"
    imported = imported_parts(path) - {part}
    assert imported <= ALLOWED[part], (
        f"{path.relative_to(PACKAGE)} imports {sorted(imported - ALLOWED[part])}"
    )


@pytest.mark.parametrize("package", SANS_IO)
def test_importing_a_lower_layer_loads_neither_trio_nor_the_client(package: str) -> None:
    code = (
        f"import sys, {package}, pkgutil, importlib\n"
        f"for info in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'trio' or m.startswith(('trio.', 'logbroker.client', 'logbroker.server', 'logbroker.engine')))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == []

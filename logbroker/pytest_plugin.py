"""pytest fixtures for testing code against a real logbroker (registered by an entry point).

- `logbroker_thread`: a memory broker in a background thread; works in any test.
- `logbroker_broker`: a memory broker in the test's own trio loop (needs pytest-trio). A test
  that takes it runs under trio without further setup: no `trio_mode` and no `@pytest.mark.trio`.

Both yield a `logbroker.testing.RunningBroker`; connect to its `.address`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from logbroker.testing import BrokerThread, RunningBroker, run_broker


@pytest.fixture
def logbroker_thread() -> Iterator[RunningBroker]:
    """A memory broker in a background thread, for any test; connect to its `.address`."""
    with BrokerThread() as running:
        yield running


try:
    import pytest_trio
except ImportError:  # pragma: no cover - the trio fixture needs pytest-trio

    @pytest.fixture
    def logbroker_broker() -> None:
        """A memory broker in the test's trio loop: needs pytest-trio."""
        pytest.fail("the logbroker_broker fixture needs pytest-trio: pip install pytest-trio", pytrace=False)

else:

    @pytest_trio.trio_fixture  # type: ignore[untyped-decorator]
    async def logbroker_broker() -> AsyncIterator[RunningBroker]:
        """A memory broker in the test's own trio loop; connect to its `.address`."""
        async with run_broker() as running:
            yield running

    def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
        """Mark async tests that take `logbroker_broker` as trio tests, so a project needs no
        `trio_mode = true` to use the fixture (pytest-trio alone refuses them without it)."""
        for item in items:
            if (
                isinstance(item, pytest.Function)
                and "logbroker_broker" in item.fixturenames
                and inspect.iscoroutinefunction(item.obj)
                and item.get_closest_marker("trio") is None
            ):
                item.add_marker(pytest.mark.trio)

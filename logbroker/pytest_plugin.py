"""pytest fixtures for testing code against a real logbroker (registered by an entry point).

- `logbroker_thread`: a memory broker in a background thread; works in any test.
- `logbroker_broker`: a memory broker in the test's own trio loop (needs pytest-trio).

Both yield a `logbroker.testing.RunningBroker`; connect to its `.address`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from logbroker.testing import BrokerThread, RunningBroker, run_broker


@pytest.fixture
def logbroker_thread() -> Iterator[RunningBroker]:
    with BrokerThread() as running:
        yield running


try:
    import pytest_trio
except ImportError:  # pragma: no cover - the trio fixture needs pytest-trio
    pass
else:

    @pytest_trio.trio_fixture  # type: ignore[untyped-decorator]
    async def logbroker_broker() -> AsyncIterator[RunningBroker]:
        async with run_broker() as running:
            yield running

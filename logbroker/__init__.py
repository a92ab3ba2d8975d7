"""logbroker: a Kafka-style append-only log broker in Python, on trio.

    client = await logbroker.connect("127.0.0.1:9400")

See the README for the client API, `logbroker.testing` for an in-process broker in tests, and
`logbroker.sync` for a blocking facade.

The client names below are loaded on first use, so that importing a lower layer
(`logbroker.records`, `logbroker.storage`, `logbroker.kafka`...) loads neither trio nor the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from logbroker.client import (
        Client,
        Consumer,
        Delivery,
        GroupConsumer,
        GroupMessage,
        Message,
        Producer,
        RecordMetadata,
        connect,
    )

__all__ = [
    "Client",
    "Consumer",
    "Delivery",
    "GroupConsumer",
    "GroupMessage",
    "Message",
    "Producer",
    "RecordMetadata",
    "__version__",
    "connect",
]

_CLIENT_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        import logbroker.client

        return getattr(logbroker.client, name)
    raise AttributeError(f"module 'logbroker' has no attribute {name!r}")

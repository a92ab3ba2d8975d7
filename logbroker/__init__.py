"""logbroker: a Kafka-style append-only log broker in Python, on trio.

    client = await logbroker.connect("127.0.0.1:9400")

See the README for the client API, `logbroker.testing` for an in-process broker in tests, and
`logbroker.sync` for a blocking facade.
"""

__version__ = "0.1.0"

from logbroker.client import Client, Consumer, Delivery, Message, Producer, RecordMetadata, connect

__all__ = [
    "Client",
    "Consumer",
    "Delivery",
    "Message",
    "Producer",
    "RecordMetadata",
    "__version__",
    "connect",
]

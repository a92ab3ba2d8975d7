"""logbroker: a Kafka-style append-only log broker in Python, on trio."""

__version__ = "0.1.0"

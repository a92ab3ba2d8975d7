"""The trio client library: `connect()`, then admin calls, a producer and a consumer."""

from logbroker.client.client import Client, TopicDescription, connect
from logbroker.client.consumer import Consumer, Message
from logbroker.client.group_consumer import GroupConsumer, GroupMessage
from logbroker.client.producer import Delivery, Producer, RecordMetadata

__all__ = [
    "Client",
    "Consumer",
    "Delivery",
    "GroupConsumer",
    "GroupMessage",
    "Message",
    "Producer",
    "RecordMetadata",
    "TopicDescription",
    "connect",
]

"""What every Kafka handler shares: the node it is, and how an error becomes a Kafka error code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from logbroker.errors import LogbrokerError

__all__ = ["CLUSTER_ID", "NODE_ID", "Body", "ErrorBody", "code_of"]

logger = logging.getLogger("logbroker.kafka")

#: This broker's node id and cluster id, as Kafka clients see them.
NODE_ID = 0
CLUSTER_ID = "logbroker"
_UNKNOWN_SERVER_ERROR = -1

#: A request or response body, as `logbroker.kafka.schema` decodes and encodes it.
Body = dict[str, Any]
#: An API's answer to a request body reporting one error (its code, and its message where the
#: response has room for one) wherever its response has room for it.
ErrorBody = Callable[[Body, int, str | None], Body]


def code_of(exc: BaseException) -> int:
    """The Kafka error code of an exception (an unexpected one is logged, and answered as
    UNKNOWN_SERVER_ERROR)."""
    if isinstance(exc, LogbrokerError):
        return exc.code
    logger.exception("unexpected error while answering a Kafka request", exc_info=exc)
    return _UNKNOWN_SERVER_ERROR

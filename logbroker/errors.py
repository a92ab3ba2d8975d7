"""The one error vocabulary of logbroker.

Every error the library raises on purpose is a `LogbrokerError`. Each class carries a wire `code`
(Kafka's error code where Kafka has one, so both protocols speak the same numbers), a `name` and
whether a client may simply retry (`retriable`). `for_code()` maps a code back to its class, so a
client turns an error response into the same exception the broker raised.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BrokerUnavailableError",
    "ClusterAuthorizationFailedError",
    "ConnectionClosedError",
    "CoordinatorNotAvailableError",
    "CorruptLogError",
    "CorruptRecordError",
    "FrameTooLargeError",
    "GroupAuthorizationFailedError",
    "GroupIdNotFoundError",
    "IllegalGenerationError",
    "IllegalSaslStateError",
    "InconsistentGroupProtocolError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidRequiredAcksError",
    "InvalidSessionTimeoutError",
    "InvalidTimestampError",
    "InvalidTopicError",
    "LogReadOnlyError",
    "LogbrokerError",
    "LoginThrottledError",
    "MessageTooLargeError",
    "NonEmptyGroupError",
    "OffsetMetadataTooLargeError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "ProtocolError",
    "RebalanceInProgressError",
    "RecordListTooLargeError",
    "RequestTimedOutError",
    "SaslAuthenticationError",
    "StorageError",
    "TopicAlreadyExistsError",
    "TopicAuthorizationFailedError",
    "UnknownMemberIdError",
    "UnknownTopicOrPartitionError",
    "UnsupportedCompressionError",
    "UnsupportedSaslMechanismError",
    "UnsupportedVersionError",
    "WrongListenerError",
    "for_code",
]


class LogbrokerError(Exception):
    """Base of every error logbroker raises on purpose."""

    code: ClassVar[int] = -1
    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    retriable: ClassVar[bool] = False

    _by_code: ClassVar[dict[int, type[LogbrokerError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The first class that claims a code is the one `for_code` returns.
        LogbrokerError._by_code.setdefault(cls.code, cls)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.name

    @staticmethod
    def from_wire(code: int, message: str | None) -> LogbrokerError:
        """The exception an error response stands for (on the client side of a connection)."""
        cls = LogbrokerError._by_code.get(code, LogbrokerError)
        error = cls.__new__(cls)
        Exception.__init__(error, message or cls.name)
        return error


class CorruptRecordError(LogbrokerError):
    """Bytes that are not a well-formed record batch: bad length, magic, CRC or record layout."""

    code = 2
    name = "CORRUPT_MESSAGE"


class InvalidRecordError(LogbrokerError):
    """A well-formed batch that breaks a rule of the broker (record count, attributes, ...)."""

    code = 87
    name = "INVALID_RECORD"


class RecordListTooLargeError(LogbrokerError):
    """A batch larger than a segment may hold."""

    code = 18
    name = "RECORD_LIST_TOO_LARGE"


class UnsupportedCompressionError(LogbrokerError):
    """A batch compressed with a codec this build cannot decode."""

    code = 76
    name = "UNSUPPORTED_COMPRESSION_TYPE"


class OffsetOutOfRangeError(LogbrokerError):
    """An offset below the log start or beyond the log end."""

    code = 1
    name = "OFFSET_OUT_OF_RANGE"

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is out of range: the log holds offsets "
            f"{log_start_offset} to {log_end_offset} (exclusive)"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class StorageError(LogbrokerError):
    """A write to the disk failed (no space left, I/O error); nothing was stored."""

    code = 56
    name = "KAFKA_STORAGE_ERROR"
    retriable = True


class LogReadOnlyError(StorageError):
    """The log stopped taking writes after a failed fsync; it serves reads until reopened."""


class CorruptLogError(LogbrokerError):
    """Stored data failed its checks: the log refuses to serve at and past `offset`."""

    code = 2
    name = "CORRUPT_MESSAGE"

    def __init__(self, path: str, position: int, offset: int, reason: str) -> None:
        super().__init__(
            f"{path}: damaged batch at byte {position} (offset {offset}): {reason}; "
            f"valid data ends at offset {offset}"
        )
        self.path = path
        self.position = position
        self.offset = offset
        self.reason = reason


class UnknownTopicOrPartitionError(LogbrokerError):
    """The topic or partition does not exist."""

    code = 3
    name = "UNKNOWN_TOPIC_OR_PARTITION"


class RequestTimedOutError(LogbrokerError):
    """The request did not complete in time (for a produce: its records may still be stored)."""

    code = 7
    name = "REQUEST_TIMED_OUT"
    retriable = True


class BrokerUnavailableError(LogbrokerError):
    """The broker is shutting down or cannot be reached."""

    code = 8
    name = "BROKER_NOT_AVAILABLE"
    retriable = True


class MessageTooLargeError(LogbrokerError):
    """A batch larger than the topic's `max.message.bytes`, or a frame larger than the limit."""

    code = 10
    name = "MESSAGE_TOO_LARGE"


class InvalidTopicError(LogbrokerError):
    """A topic name that is not allowed."""

    code = 17
    name = "INVALID_TOPIC_EXCEPTION"


class InvalidTimestampError(LogbrokerError):
    """A record timestamp outside what the topic accepts."""

    code = 32
    name = "INVALID_TIMESTAMP"


class UnsupportedVersionError(LogbrokerError):
    """A request kind or version the broker does not speak."""

    code = 35
    name = "UNSUPPORTED_VERSION"


class TopicAlreadyExistsError(LogbrokerError):
    code = 36
    name = "TOPIC_ALREADY_EXISTS"


class InvalidPartitionsError(LogbrokerError):
    code = 37
    name = "INVALID_PARTITIONS"


class InvalidConfigError(LogbrokerError):
    """A topic or server setting that is unknown or out of range."""

    code = 40
    name = "INVALID_CONFIG"


class InvalidRequestError(LogbrokerError):
    """A request that is well-formed but makes no sense (e.g. a negative max_bytes)."""

    code = 42
    name = "INVALID_REQUEST"


class InvalidRequiredAcksError(InvalidRequestError):
    """A produce asking for acks other than 0, 1 or -1 (all)."""

    code = 21
    name = "INVALID_REQUIRED_ACKS"


class IllegalGenerationError(LogbrokerError):
    """A group request from an old generation, or for a partition the member does not own."""

    code = 22
    name = "ILLEGAL_GENERATION"


class InvalidGroupIdError(LogbrokerError):
    code = 24
    name = "INVALID_GROUP_ID"


class UnknownMemberIdError(LogbrokerError):
    """The member is not (or no longer) in the group: its session expired or it left."""

    code = 25
    name = "UNKNOWN_MEMBER_ID"


class InconsistentGroupProtocolError(LogbrokerError):
    """A member whose protocol does not fit the group's: another protocol type, no assignor in
    common with the other members, or a native member joining a Kafka group (or the reverse)."""

    code = 23
    name = "INCONSISTENT_GROUP_PROTOCOL"


class InvalidSessionTimeoutError(LogbrokerError):
    code = 26
    name = "INVALID_SESSION_TIMEOUT"


class RebalanceInProgressError(LogbrokerError):
    """The group is rebalancing: the member must join again."""

    code = 27
    name = "REBALANCE_IN_PROGRESS"
    retriable = True


class OffsetMetadataTooLargeError(LogbrokerError):
    code = 12
    name = "OFFSET_METADATA_TOO_LARGE"


class CoordinatorNotAvailableError(LogbrokerError):
    """A coordinator this broker does not provide (transactions)."""

    code = 15
    name = "COORDINATOR_NOT_AVAILABLE"
    retriable = True


class InvalidReplicationFactorError(LogbrokerError):
    code = 38
    name = "INVALID_REPLICATION_FACTOR"


class NonEmptyGroupError(LogbrokerError):
    """An operation that needs a group without members (an offset reset)."""

    code = 68
    name = "NON_EMPTY_GROUP"


class OutOfOrderSequenceError(LogbrokerError):
    """An idempotent producer's batch does not follow its previous one: a batch is missing in
    between, or the batch is a retry older than the last five batches the broker remembers."""

    code = 45
    name = "OUT_OF_ORDER_SEQUENCE_NUMBER"


class InvalidProducerEpochError(LogbrokerError):
    """A batch from an older epoch of a producer id: a newer instance of the producer fenced it."""

    code = 47
    name = "INVALID_PRODUCER_EPOCH"


class GroupIdNotFoundError(LogbrokerError):
    code = 69
    name = "GROUP_ID_NOT_FOUND"


class UnsupportedSaslMechanismError(LogbrokerError):
    """The client asked for a SASL mechanism the broker does not offer (or not on this transport)."""

    code = 33
    name = "UNSUPPORTED_SASL_MECHANISM"


class IllegalSaslStateError(LogbrokerError):
    """A SASL request out of turn (an authenticate before the handshake, a second login)."""

    code = 34
    name = "ILLEGAL_SASL_STATE"


class SaslAuthenticationError(LogbrokerError):
    """A login failed: unknown user, wrong password, or a malformed exchange."""

    code = 58
    name = "SASL_AUTHENTICATION_FAILED"


class LoginThrottledError(SaslAuthenticationError):
    """A login attempt from an address that failed recently, before its wait is over (the same
    wire code as a failed login; not counted as another failure)."""


class TopicAuthorizationFailedError(LogbrokerError):
    """The principal may not do this to the topic (ACLs)."""

    code = 29
    name = "TOPIC_AUTHORIZATION_FAILED"


class GroupAuthorizationFailedError(LogbrokerError):
    """The principal may not do this to the group (ACLs)."""

    code = 30
    name = "GROUP_AUTHORIZATION_FAILED"


class ClusterAuthorizationFailedError(LogbrokerError):
    """The principal may not do this to the cluster (ACLs): create topics, manage groups' offsets."""

    code = 31
    name = "CLUSTER_AUTHORIZATION_FAILED"


class ProtocolError(LogbrokerError):
    """Bytes on a connection that are not the protocol: the connection is closed."""

    code = 42
    name = "INVALID_REQUEST"


class FrameTooLargeError(ProtocolError):
    """A frame whose length prefix exceeds the limit; refused before anything is allocated."""


class ConnectionClosedError(BrokerUnavailableError):
    """The connection to the broker closed (or could not be opened)."""


class WrongListenerError(ConnectionClosedError):
    """The address answers, but not as logbroker's native port does (a Kafka listener, an HTTP
    server, a port that takes TLS only): trying again will not help."""

    retriable = False


def for_code(code: int) -> type[LogbrokerError]:
    """The error class for a wire code (`LogbrokerError` for codes this version does not know)."""
    return LogbrokerError._by_code.get(code, LogbrokerError)

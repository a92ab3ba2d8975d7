"""Kafka's classic group requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and the group
listings admin tools send (ListGroups, DescribeGroups), which show native groups too."""

from __future__ import annotations

from logbroker.errors import GroupIdNotFoundError, InvalidSessionTimeoutError
from logbroker.groups.admin import GroupView
from logbroker.groups.classic import JoinRequest
from logbroker.kafka.protocol import KafkaRequest
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import Body
from logbroker.server.security import Need

__all__ = [
    "NATIVE_PROTOCOL_TYPE",
    "describe_groups",
    "describe_groups_error",
    "group_needs",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
    "sync_group",
]

#: How ListGroups and DescribeGroups show native groups to Kafka clients.
NATIVE_PROTOCOL_TYPE = "logbroker"


def group_needs(request: KafkaRequest) -> list[Need]:
    return [("read", "group", request.body["group_id"])]


async def join_group(conn: BaseConnection, request: KafkaRequest) -> Body:
    """Answered when the rebalance it takes part in completes."""
    body = request.body
    timeout = body["session_timeout_ms"]
    low = round(conn.config.kafka_min_session_timeout * 1000)
    high = round(conn.config.kafka_max_session_timeout * 1000)
    if not low <= timeout <= high:
        raise InvalidSessionTimeoutError(f"a session timeout of {timeout} ms is outside {low} to {high} ms")
    answer = await conn.engine.classic.join(
        JoinRequest(
            body["group_id"],
            body["member_id"],
            request.client_id or "",
            conn.host,
            timeout,
            body["rebalance_timeout_ms"],
            body["protocol_type"],
            [(p["name"], p["metadata"]) for p in body["protocols"]],
        )
    )
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "generation_id": answer.generation_id,
        "protocol_name": answer.protocol_name,
        "leader": answer.leader,
        "member_id": answer.member_id,
        "members": [
            {"member_id": m, "group_instance_id": None, "metadata": meta} for m, meta in answer.members
        ],
    }


async def sync_group(conn: BaseConnection, request: KafkaRequest) -> Body:
    """The member's assignment, once the leader has sent them all."""
    body = request.body
    assignments = {a["member_id"]: a["assignment"] for a in body["assignments"]}
    assignment = await conn.engine.classic.sync(
        body["group_id"], body["member_id"], body["generation_id"], assignments
    )
    return {"throttle_time_ms": 0, "error_code": 0, "assignment": assignment}


def heartbeat(conn: BaseConnection, request: KafkaRequest) -> Body:
    body = request.body
    conn.engine.classic.heartbeat(body["group_id"], body["member_id"], body["generation_id"])
    return {"throttle_time_ms": 0, "error_code": 0}


def leave_group(conn: BaseConnection, request: KafkaRequest) -> Body:
    body = request.body
    conn.engine.classic.leave(body["group_id"], body["member_id"])
    return {"throttle_time_ms": 0, "error_code": 0}


def list_groups(conn: BaseConnection, request: KafkaRequest) -> Body:
    """Groups of both kinds that the principal may describe."""
    listed = [
        {"group_id": view.name, "protocol_type": _protocol_type(view)}
        for view in conn.engine.groups.views()
        if conn.may("describe", "group", view.name)
    ]
    return {"throttle_time_ms": 0, "error_code": 0, "groups": listed}


def describe_groups(conn: BaseConnection, request: KafkaRequest) -> Body:
    """Each group asked for (Dead when there is none)."""
    groups = conn.engine.groups
    described = []
    for name in request.body["groups"]:
        entry: Body = {
            "error_code": 0,
            "group_id": name,
            "group_state": "Dead",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
        try:
            view = groups.view(name)
        except GroupIdNotFoundError:
            view = None
        if view is not None:
            entry.update(
                group_state=view.state,
                protocol_type=NATIVE_PROTOCOL_TYPE if view.kind == "native" else view.protocol_type,
                protocol_data=view.protocol,
                members=[
                    {
                        "member_id": m.member_id,
                        "group_instance_id": None,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata,
                        "member_assignment": m.assignment_bytes,
                    }
                    for m in view.members
                ],
            )
        described.append(entry)
    return {"throttle_time_ms": 0, "groups": described}


def describe_groups_error(body: Body, code: int, message: str | None = None) -> Body:
    return {
        "throttle_time_ms": 0,
        "groups": [{"error_code": code, "group_id": name} for name in body["groups"]],
    }


def _protocol_type(view: GroupView) -> str:
    if view.kind == "native":
        return NATIVE_PROTOCOL_TYPE
    return view.protocol_type or "consumer"

"""Kafka's classic consumer groups for the Kafka front door: JoinGroup answered when its
rebalance completes, SyncGroup answered when the leader has sent the assignments, commits acked
once durable. The group state machine is the coordinator's (`logbroker.groups.classic`)."""

from __future__ import annotations

from collections.abc import Callable

from logbroker.broker.broker import TopicPartition
from logbroker.engine import clock
from logbroker.engine.core import EngineCore
from logbroker.errors import RebalanceInProgressError, UnknownMemberIdError
from logbroker.groups.classic import PREPARING, STABLE, ClassicGroup, ClassicMember, JoinRequest, JoinResponse

__all__ = ["ClassicGroupService"]


class ClassicGroupService:
    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._groups = core.groups.classic

    async def join(self, request: JoinRequest) -> JoinResponse:
        """A JoinGroup: answered when the rebalance it takes part in completes."""
        name = request.group
        group = self._groups.group(name, now_ms=clock.wall_ms())
        member, answer = self._groups.join(group, request, now=clock.monotonic_ms())
        self._core.group_changed(name)
        if answer is not None:
            return answer

        def answered() -> bool:
            if member.join_response is not None:
                return True
            if group.members.get(member.member_id) is not member:
                raise UnknownMemberIdError(f"member {member.member_id!r} left group {name!r}")
            return False

        await self._waiting(group, member, answered)
        answer, member.join_response = member.join_response, None
        assert answer is not None
        return answer

    async def sync(
        self, group_name: str, member_id: str, generation: int, assignments: dict[str, bytes]
    ) -> bytes:
        """A SyncGroup: the member's assignment, once the leader has sent them all."""
        group = self._groups.existing(group_name)
        assignment = self._groups.sync(group, member_id, generation, assignments, now=clock.monotonic_ms())
        if assignment is not None:
            self._core.group_changed(group_name)
            return assignment
        member = group.members[member_id]

        def assigned() -> bool:
            if group.members.get(member.member_id) is not member:
                raise UnknownMemberIdError(f"member {member.member_id!r} left group {group_name!r}")
            if group.generation != generation or group.state == PREPARING:
                raise RebalanceInProgressError(f"group {group_name!r} is rebalancing: join again")
            return group.state == STABLE

        await self._waiting(group, member, assigned, wait_first=True)
        return member.assignment

    def heartbeat(self, group_name: str, member_id: str, generation: int) -> None:
        self._groups.heartbeat(
            self._groups.existing(group_name), member_id, generation, now=clock.monotonic_ms()
        )

    def leave(self, group_name: str, member_id: str) -> None:
        self._groups.leave(self._groups.existing(group_name), member_id, now=clock.monotonic_ms())
        self._core.group_changed(group_name)

    async def commit(
        self,
        group: str,
        generation: int,
        member_id: str,
        offsets: dict[TopicPartition, tuple[int, str | None]],
    ) -> dict[TopicPartition, int]:
        """An OffsetCommit: an error code per partition (0: committed), answered once durable."""
        codes, pending = self._groups.commit_offsets(
            group, generation, member_id, offsets, now=clock.monotonic_ms(), now_ms=clock.wall_ms()
        )
        await self._core.flusher.wait_durable(pending)
        return codes

    async def _waiting(
        self,
        group: ClassicGroup,
        member: ClassicMember,
        done: Callable[[], bool],
        *,
        wait_first: bool = False,
    ) -> None:
        """Wait for the group to change until `done()` (which may raise); the member counts as
        alive meanwhile."""
        member.waiting += 1
        try:
            if wait_first:
                await self._core.signals.wait([], [group.name])
            while not done():
                await self._core.signals.wait([], [group.name])
        finally:
            member.waiting -= 1
            member.last_seen = clock.monotonic_ms()
            self._core.group_timer.fire()

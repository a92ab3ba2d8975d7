"""`GroupCoordinator`: every consumer group of one broker, native and Kafka's classic.

Fan-out is several groups reading one topic (each has its own committed offsets and cursors);
direct delivery is one group whose members share the partitions. The coordinator owns the groups
and their `__offsets` log, loads them at start, and composes one module per idea:

    membership    native members, assignments, generations, sessions    (`membership`)
    delivery      polls, commits, nacks, ack timeouts, nack delays       (`delivery`, `cursor`)
    dead_letters  copies of records that keep failing                    (`dead_letters`)
    classic       Kafka's JoinGroup/SyncGroup groups                     (`classic`)
    admin         views of groups of both kinds, offset resets           (`admin`)

A group name is one kind or the other; a group of either kind with no members is taken over by
the other kind with its committed offsets. The coordinator also runs the timers of all of them
(`expire`, `next_deadline`), and forgets the offsets of a topic that is deleted.

Like the rest of the broker core it is synchronous and reads no clock: `now` is monotonic
milliseconds (timeouts), `now_ms` wall-clock milliseconds (record timestamps). What must wait -
a long poll, an fsync before acking a commit - is the engine's to do: operations that write
return a `Durable` for it to wait on.
"""

from __future__ import annotations

from logbroker.broker.broker import Broker, TopicPartition
from logbroker.errors import InconsistentGroupProtocolError
from logbroker.groups.admin import GroupAdmin
from logbroker.groups.classic import CLASSIC, ClassicGroups
from logbroker.groups.cursor import PartitionCursor
from logbroker.groups.dead_letters import DeadLetters
from logbroker.groups.delivery import Delivery
from logbroker.groups.membership import Group, Membership, settings_from
from logbroker.groups.offsets_store import Changes, OffsetsStore

__all__ = ["GroupCoordinator"]


class GroupCoordinator:
    def __init__(self, broker: Broker, *, now_ms: int) -> None:
        self.broker = broker
        self.store = OffsetsStore(broker, now_ms=now_ms)
        #: Native groups, by name.
        self.groups: dict[str, Group] = {}
        self.membership = Membership(broker, self.groups, self.store, claim=self._claim_for_native)
        self.dead_letters = DeadLetters(broker, self.groups, self.store)
        self.delivery = Delivery(broker, self.membership, self.dead_letters, self.store)
        #: Kafka's classic groups (JoinGroup/SyncGroup).
        self.classic = ClassicGroups(
            broker, self.store, claim=self._claim_for_classic, known=self.groups.__contains__
        )
        self.admin = GroupAdmin(broker, self.membership, self.classic, self.store)
        self._load(now_ms)
        broker.topic_listeners.append(self._topic_changed)

    def close(self) -> None:
        """Stop following the broker's topics (the broker outlives this coordinator)."""
        if self._topic_changed in self.broker.topic_listeners:
            self.broker.topic_listeners.remove(self._topic_changed)

    # -- timers --------------------------------------------------------------------------------

    def expire(self, now: int, now_ms: int) -> set[str]:
        """Apply every timeout that is due: the first assignment after its delay, session
        expiry (the member's partitions move), ack timeouts (the cursor rewinds), nack delays,
        Kafka rebalances. Returns the names of the groups where something changed."""
        changed = self.classic.expire(now)
        members, changes = self.membership.expire(now, now_ms)
        changed |= members
        changed |= self.delivery.expire(now)
        self.store.write(changes, now_ms)
        return changed

    def next_deadline(self) -> int | None:
        """When `expire` next has something to do (monotonic ms), or None."""
        times = [self.classic.next_deadline(), self.membership.next_deadline(), self.delivery.next_deadline()]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def maybe_compact(self, now_ms: int) -> bool:
        if self.store.needs_compaction():
            self.store.compact(now_ms)
            return True
        return False

    # -- internals -----------------------------------------------------------------------------

    def _load(self, now_ms: int) -> None:
        """The groups `__offsets` holds; a dead letter a crash interrupted is finished."""
        defaults = self.membership.defaults
        for name, value in self.store.groups():
            if value.get("type") == CLASSIC:
                self.classic.load(name)
            else:
                self.groups[name] = Group(
                    name, settings_from(value, defaults), start=value.get("start", "earliest")
                )
        finished: Changes = []
        for group_name, topic, partition, committed, marker in list(self.store.offsets()):
            classic = self.classic.groups.get(group_name)
            if classic is not None:
                metadata = self.store.live[OffsetsStore.offset_key(group_name, topic, partition)].get(
                    "metadata"
                )
                classic.offsets[(topic, partition)] = (committed, metadata)
                continue
            if marker is not None and self.dead_letters.was_copied(
                group_name, topic, partition, committed, marker
            ):
                committed += 1  # the copy was made; the commit past it was not
                finished.append(
                    (OffsetsStore.offset_key(group_name, topic, partition), {"offset": committed})
                )
            group = self.groups.setdefault(group_name, Group(group_name, defaults))
            group.partitions[(topic, partition)] = PartitionCursor(topic, partition, committed, committed)
        self.store.write(finished, now_ms)

    def _claim_for_native(self, name: str) -> None:
        """A native join for the name of a classic group: refused while it has members, else
        the group becomes native, keeping its committed offsets."""
        classic = self.classic.groups.get(name)
        if classic is None:
            return
        if classic.members:
            raise InconsistentGroupProtocolError(
                f"group {name!r} has Kafka members; a native member cannot join it"
            )
        del self.classic.groups[name]
        group = self.groups[name] = Group(name, self.membership.defaults)
        for tp, (offset, _) in classic.offsets.items():
            group.partitions[tp] = PartitionCursor(tp[0], tp[1], offset, offset)

    def _claim_for_classic(self, name: str) -> dict[TopicPartition, tuple[int, str | None]]:
        """A Kafka member for the name of a native group: refused while it has members, else the
        group becomes classic; returns its committed offsets."""
        native = self.groups.get(name)
        if native is None:
            return {}
        if native.members:
            raise InconsistentGroupProtocolError(
                f"group {name!r} has members of the native protocol; a Kafka member cannot join it"
            )
        del self.groups[name]
        return {tp: (state.committed, None) for tp, state in native.partitions.items()}

    def _topic_changed(self, topic: str) -> None:
        if not self.broker.has_topic(topic):
            self.store.write(self.admin.forget_topic(topic), now_ms=0)

"""Consumer groups, the second half of the broker core: native groups (membership, delivery,
dead letters) and Kafka's classic groups over the broker's logs, their committed offsets in the
internal `__offsets` log, and the views admin tools read. `GroupCoordinator` (in `coordinator`)
owns them all. Synchronous and clock-free like `logbroker.broker`, which it builds on."""

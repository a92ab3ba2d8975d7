"""The broker core: topics of partition logs, produce (with the idempotent-producer rules),
fetch, list offsets, retention, and the broker's settings. Synchronous and clock-free (time
comes in as `now_ms`), so it is tested without an event loop; consumer groups build on it
(`logbroker.groups`) and the engine drives both (`logbroker.engine`)."""

"""The broker core: topics, produce, fetch, offsets. Synchronous and clock-free (time comes in as
`now_ms`), so it is tested without an event loop; the trio server drives it."""

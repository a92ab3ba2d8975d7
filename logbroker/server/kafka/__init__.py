"""Kafka's front door: its connection (`connection`, answers in request order), the table of the
Kafka APIs served (`endpoints`), and their handlers, one module per area (`produce`, `fetch`,
`metadata`, `offsets`, `groups`, `admin`, `session`), each turning a Kafka request into engine
calls and the result into Kafka's answer. The wire format itself (schemas, framing) is
`logbroker.kafka`, which does no I/O."""

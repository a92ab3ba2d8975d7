"""The native protocol's front door: its connection (`connection`), the table of its requests
(`endpoints`), and their handlers, one module per area (`session`, `topics`, `records`,
`groups`), each turning a request into engine calls and the result into a response."""

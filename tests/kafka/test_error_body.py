"""Each endpoint's error body: whatever request failed, its answer encodes at that version and
carries the code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbroker.kafka.apis import APIS, Api
from logbroker.kafka.types import Reader, Writer
from logbroker.server.kafka.endpoints import ENDPOINTS
from tests.kafka.test_codec import values

CASES = [(api, version) for api in APIS.values() for version in range(api.min_version, api.max_version + 1)]


# Where each request lists the things its answer must report on, one by one.
ITEMS = {
    "Produce": ("topic_data", "partition_data"),
    "Fetch": ("topics", "partitions"),
    "ListOffsets": ("topics", "partitions"),
    "OffsetCommit": ("topics", "partitions"),
    "OffsetFetch": ("topics", "partition_indexes"),
    "Metadata": ("topics",),
    "CreateTopics": ("topics",),
    "DeleteTopics": ("topic_names",),
    "DescribeConfigs": ("resources",),
    "DescribeGroups": ("groups",),
}


def count_items(value: Any, path: tuple[str, ...]) -> int:
    items = value[path[0]] or []
    if len(path) == 1:
        return len(items)
    return sum(count_items(item, path[1:]) for item in items)


def count_codes(value: Any) -> int:
    """How many items of the lists in an answer carry an error code."""
    if isinstance(value, list):
        return sum((isinstance(v, dict) and "error_code" in v) + count_codes(v) for v in value)
    if isinstance(value, dict):
        return sum(count_codes(v) for v in value.values())
    return 0


def codes(value: Any) -> set[int]:
    if isinstance(value, dict):
        found = {value["error_code"]} if "error_code" in value else set()
        for item in value.values():
            found |= codes(item)
        return found
    if isinstance(value, list):
        return set().union(*(codes(v) for v in value)) if value else set()
    return set()


@pytest.mark.parametrize(("api", "version"), CASES, ids=[f"{a.name}-v{v}" for a, v in CASES])
@settings(max_examples=10)
@given(data=st.data())
def test_an_error_answer_encodes_and_says_what_failed(api: Api, version: int, data: st.DataObject) -> None:
    flexible = api.flexible(version)
    writer = Writer()
    api.request.encode(writer, data.draw(values(api.request, version, flexible)), version, flexible)
    body = api.request.decode(Reader(writer.getvalue()), version, flexible)
    answer = ENDPOINTS[api.key].error_body(body, 42, "failed")
    out = Writer()
    api.response.encode(out, answer, version, flexible)
    decoded = api.response.decode(Reader(out.getvalue()), version, flexible)
    top_level = any(
        f.name == "error_code" and f.versions[0] <= version <= f.versions[1]  # type: ignore[index]
        for f in api.response.fields
    )
    if not top_level:
        decoded.pop("error_code", None)  # the answer's own field, which this version does not carry
    found = codes(decoded)
    assert found <= {42}  # no item of the answer claims success
    if top_level:
        assert found == {42}
    if api.name in ITEMS:
        assert count_codes(decoded) >= count_items(body, ITEMS[api.name])  # every item is answered


def test_every_api_the_codec_serves_has_one_endpoint_and_no_other() -> None:
    assert set(ENDPOINTS) == set(APIS)
    assert all(endpoint.api is APIS[key] for key, endpoint in ENDPOINTS.items())

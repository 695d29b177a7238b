"""The relay places messages as Kafka's default partitioner does (murmur2 of the key, as the
Java client and aiokafka do): consumers and the relay's own checks rely on one aggregate's
events staying in one partition."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.shared.outbox_checks import partition_of


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_a_keyed_message_goes_where_the_default_partitioner_sends_it(
    key: bytes, partitions: int
) -> None:
    expected = DefaultPartitioner()(key, list(range(partitions)), [])
    assert partition_of(key, partitions) == expected
    assert partition_of(key, partitions) == expected  # remembered, still the same

"""The transformer's compiled hot path (services/fastpath, Rust)."""

from collections.abc import Callable
from typing import Any

class Producer:
    """A Kafka producer on librdkafka's C API (the librdkafka at ``library``, the one
    confluent-kafka loaded), configured with librdkafka's properties as a
    confluent-kafka Producer is. Its errors are confluent-kafka's KafkaExceptions.
    Only failed deliveries are reported, as counts: see ``delivery_failures``."""

    def __init__(self, library: str, config: dict[str, Any]) -> None: ...
    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        timestamp: int = 0,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Produce one message (a timestamp of 0 or less: now), waiting while the
        local queue is full."""
    def poll(self, timeout: float = 0.0) -> int: ...
    def flush(self, timeout: float = -1.0) -> int:
        """Wait until every message is delivered or failed; how many still wait."""
    def __len__(self) -> int: ...
    @property
    def delivery_failures(self) -> int:
        """Messages that failed to be delivered, since the producer was made."""
    @property
    def last_delivery_error(self) -> str:
        """Why the last failed message failed ("" when none has)."""
    def init_transactions(self, timeout: float = -1.0) -> None: ...
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(
        self, offsets: list[Any], group_metadata: bytes, timeout: float = -1.0
    ) -> None:
        """Add a consumer's offsets (TopicPartitions) to the transaction;
        ``group_metadata`` is the consumer's ``consumer_group_metadata()``."""
    def commit_transaction(self, timeout: float = -1.0) -> None: ...
    def abort_transaction(self, timeout: float = -1.0) -> None: ...

class FastPath:
    """Validates, flags, produces and counts a batch of readings, for given thresholds
    and the reading schema's limits."""

    def __init__(
        self,
        default_threshold: float,
        area_thresholds: dict[str, float],
        max_message_bytes: int,
        max_string_length: int,
    ) -> None: ...
    def accept(self, raw: bytes) -> tuple[bytes, bool, str, str, float] | None:
        """``(processed value, high, area, timestamp, energy consumption)`` if ``raw``
        is a plain valid reading, else None (the Python path decides)."""
    def transform(
        self,
        messages: list[Any],
        producer: Producer,
        processed_topic: str,
        alerts_topic: str,
        other: Callable[[Any], None],
    ) -> tuple[dict[tuple[str, str], list[float]], dict[int, int]]:
        """Transform consumed messages of one class, in order: each plain valid reading
        is produced to ``processed_topic`` with ``isHighConsumption`` (and to
        ``alerts_topic`` when high) with its key and timestamp; every other message is
        passed to ``other``. Returns ``(area, timestamp) -> [readings, energy, high
        readings]`` of the readings produced here, and each partition's offset after
        its last message."""

"""The transformer's compiled hot path (services/fastpath, Rust)."""

from typing import Any

class FastPath:
    """Validates, flags and counts a batch of readings, for given thresholds and the
    reading schema's limits."""

    def __init__(
        self,
        default_threshold: float,
        area_thresholds: dict[str, float],
        max_message_bytes: int,
        max_string_length: int,
    ) -> None: ...
    def transform(
        self, messages: list[Any]
    ) -> tuple[
        list[bytes | None],
        list[bool],
        dict[tuple[str, str], list[float]],
        dict[int, int],
    ]:
        """``(values, high, groups, next_offsets)`` for a list of consumed messages of
        one class: the processed value of each message (None: the Python path must
        handle it), whether it is high, ``(area, timestamp) -> [readings, energy, high
        readings]`` of the messages with a value, and each partition's offset after its
        last message."""

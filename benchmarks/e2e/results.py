"""What a measured run produces, as plain data that crosses process boundaries as JSON."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How long a run lasts: a number of requests, or seconds (requests started until then)."""

    count: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.seconds is None):
            raise ValueError("a budget is a count or a duration, not both or neither")

    def describe(self) -> str:
        """`1000 requests` or `1.0 s`."""
        return f"{self.count} requests" if self.count is not None else f"{self.seconds:g} s"


@dataclass(frozen=True)
class Plan:
    """One scenario as a client runs it: warm up, then measure."""

    scenario: str
    warmup: Budget
    measure: Budget
    timeout: float
    "Seconds for the whole scenario, connections included, before it counts as failed."

    def to_json(self) -> dict[str, Any]:
        """For the worker's command line."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The inverse of `to_json`."""
        return cls(
            scenario=str(data["scenario"]),
            warmup=Budget(**data["warmup"]),
            measure=Budget(**data["measure"]),
            timeout=float(data["timeout"]),
        )


@dataclass
class Sample:
    """One measured run of one scenario by one variant."""

    variant: str
    scenario: str
    repeat: int = 0
    requests: int = 0
    "Requests answered in the measured run."
    wrong: int = 0
    "Answers whose result was not the data sent (must be 0)."
    seconds: float = 0.0
    payload_bytes: int = 0
    "Characters of the string payload each request carries (0 for the small object)."
    p50_us: float | None = None
    p99_us: float | None = None
    server_cpu: float | None = None
    "CPU seconds the server process used during the measured run."
    client_cpu: float | None = None
    "CPU seconds the client process used during the measured run."
    server_wait: float | None = None
    "Seconds the server's event loop thread waited for a core (taken by other processes)."
    client_wait: float | None = None
    "Seconds the client's event loop thread waited for a core."
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Measured, with every answer right."""
        return self.error is None and self.wrong == 0 and self.requests > 0 and self.seconds > 0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def megabytes(self) -> float:
        """Payload MB (10^6 bytes) echoed per second, counted one way."""
        return self.rate * self.payload_bytes / 1e6

    @property
    def headline(self) -> float:
        """MB/s for payload scenarios, requests/s otherwise."""
        return self.megabytes if self.payload_bytes else self.rate

    @property
    def server_us(self) -> float | None:
        """Server CPU microseconds per request."""
        if self.server_cpu is None or self.requests == 0:
            return None
        return self.server_cpu / self.requests * 1e6

    @property
    def client_us(self) -> float | None:
        """Client CPU microseconds per request."""
        if self.client_cpu is None or self.requests == 0:
            return None
        return self.client_cpu / self.requests * 1e6

    def to_json(self) -> dict[str, Any]:
        """As the worker prints it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        """The inverse of `to_json` (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Spread:
    """Median, min and max of some values."""

    median: float
    low: float
    high: float
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        """None for no values."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), list(values))

    @property
    def relative_range(self) -> float:
        """(max - min) / median: how noisy the repeats were."""
        return (self.high - self.low) / self.median if self.median else 0.0


def percentile(sorted_values: list[int], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])

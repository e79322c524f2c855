"""What every stream source is, independent of its file format: the `Stream` interface and the
DAQ's `TestPulses`. The format modules (`cryopipe.io.csmpl`, `cryopipe.io.ljh`) implement it,
`cryopipe.io.sources` picks one; this module imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import numpy as np


def whole_records_hint(whole_bytes: int) -> str:
    """What to do with a file whose writer stopped inside its last record: read a copy cut to its
    first `whole_bytes` bytes (the whole records)."""
    return (f"if the writer stopped inside the last record, a copy cut to the whole records reads: "
            f"cp FILE COPY && truncate -s {whole_bytes} COPY")


@dataclass(frozen=True)
class TestPulses:
    """Test and control pulses injected by the DAQ into a stream.

    samples : stream index of each pulse's trigger position (int64)
    tpa : test-pulse amplitude (V of the DAQ's pulser; control pulses have the largest)
    """

    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tpa: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.samples)


class Stream(Protocol):
    """What the trigger and records stages need of a continuous stream (volts, polarity applied)."""

    sample_frequency: float  # Hz
    n_samples: int  # per channel
    start_time: float  # s since the Unix epoch (0 when unknown)
    test_pulses: TestPulses

    @property
    def n_channels(self) -> int: ...

    @property
    def duration(self) -> float: ...

    def read(self, start: int, stop: int, channels: Sequence[int] | None = None) -> np.ndarray: ...

    def read_records(self, starts: np.ndarray, length: int, *, channels: Sequence[int] | None = None,
                     batch: int = 1024) -> Iterator[tuple[slice, np.ndarray]]: ...

    def iter_chunks(self, chunk_size: int, before: int = 0, after: int = 0, start: int = 0,
                    stop: int | None = None, *, channels: Sequence[int] | None = None
                    ) -> Iterator[tuple[int, int, np.ndarray]]: ...

    def release_pages(self, channel: int, start: int, stop: int) -> None: ...

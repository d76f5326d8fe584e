"""A backup's statistics (pure): where its pipeline's time went and what its bytes became.

Veeam's terms: *processed* is the size of the disks handled (their capacity), *read* the bytes
read from the source, *transferred* the bytes written to the repository (after deduplication
and compression). The deduplication ratio is read / the new unique blocks' bytes before
compression; the compression ratio is those bytes / transferred. The pipeline's main loop
waits on one of three stages (source read, hashing/compression, repository write); the
bottleneck is the stage with the largest share of that waiting, over a batch (a disk's live
stage) or over a whole run (a VM's, a session's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

#: The pipeline's stages, as sessions name the bottleneck.
STAGE_READ: Final = "source read"
STAGE_CPU: Final = "hashing/compression"
STAGE_WRITE: Final = "repository write"
STAGES: Final = (STAGE_READ, STAGE_CPU, STAGE_WRITE)


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds the pipeline waited on each stage."""

    source: float = 0.0
    cpu: float = 0.0
    target: float = 0.0

    def __add__(self, other: StageTimes) -> StageTimes:
        return StageTimes(self.source + other.source, self.cpu + other.cpu,
                          self.target + other.target)

    def shares(self) -> dict[str, float]:
        """Each stage's share of the waiting (0..1, adding up to 1; all 0 when none)."""
        values = (self.source, self.cpu, self.target)
        total = sum(values)
        return {s: (v / total if total > 0 else 0.0) for s, v in zip(STAGES, values,
                                                                       strict=True)}

    def bottleneck(self) -> str:
        """The stage waited on longest (the source when nothing was measured)."""
        values = {STAGE_READ: self.source, STAGE_CPU: self.cpu, STAGE_WRITE: self.target}
        return max(values, key=lambda k: values[k])


def stage_waits(read_wait: float, read_s: float, hash_s: float, compress_wait: float,
                write_wait: float) -> StageTimes:
    """The main loop's waits by stage: waiting for a read future is split between reading
    and hashing in the proportion the reader threads spent on each."""
    busy = read_s + hash_s
    share = read_s / busy if busy > 0 else 1.0
    return StageTimes(read_wait * share, read_wait * (1 - share) + compress_wait, write_wait)


@dataclass(frozen=True, slots=True)
class BackupStats:
    """What one backup (or several, summed) handled, read, found new and stored, in how long,
    and where its pipeline waited."""

    processed: int = 0  # the disks' capacity
    read: int = 0  # bytes read from the source
    new: int = 0  # the new unique blocks' bytes, before compression
    transferred: int = 0  # bytes written to the repository
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)

    def __add__(self, other: BackupStats) -> BackupStats:
        return BackupStats(self.processed + other.processed, self.read + other.read,
                           self.new + other.new, self.transferred + other.transferred,
                           self.seconds + other.seconds, self.stages + other.stages)

    @property
    def dedup_ratio(self) -> float | None:
        """read / new (None when nothing new was found: every block was known)."""
        return self.read / self.new if self.new > 0 else None

    @property
    def compression_ratio(self) -> float | None:
        """new / transferred (None when nothing was stored)."""
        return self.new / self.transferred if self.transferred > 0 else None


def total(stats: Iterable[BackupStats]) -> BackupStats:
    """The sum of several backups' statistics (a session's VMs)."""
    out = BackupStats()
    for s in stats:
        out = out + s
    return out

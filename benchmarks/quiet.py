"""Was the machine quiet while a benchmark ran? Measured, not assumed.

A benchmark's own child keeps one or two cores busy, so the load average alone cannot
tell a busy machine from a working benchmark. :class:`Watch` reads the kernel's CPU
accounting (``/proc/stat``) before and after one timed child and subtracts the child's
own CPU time (its rusage): what is left is **foreign CPU**, work of other processes
during the run, as a fraction of the machine's capacity over that time. It also reads
the hypervisor's **steal** time and the 1-minute load average before the run.

A run is quiet when foreign CPU and steal each stay under 10 % of the machine and the
load average before it was under 0.5 per core; a benchmark table is quiet when all its
runs are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FOREIGN_LIMIT = 0.10
STEAL_LIMIT = 0.10
LOAD_PER_CORE_LIMIT = 0.5
_PROC = Path("/proc")


@dataclass(frozen=True)
class CpuTimes:
    """Seconds since boot, all cores summed (``/proc/stat``, first line)."""

    busy_s: float  # user + nice + system + irq + softirq (guest time is inside user)
    steal_s: float
    total_s: float  # busy + idle + iowait + steal

    @classmethod
    def read(cls, proc: Path = _PROC) -> CpuTimes:
        fields = (proc / "stat").read_text().splitlines()[0].split()
        if fields[0] != "cpu":
            raise ValueError(f"{proc / 'stat'}: unexpected first line")
        ticks = [int(v) for v in fields[1:9]]
        user, nice, system, idle, iowait, irq, softirq, steal = ticks
        hertz = os.sysconf("SC_CLK_TCK")
        busy = user + nice + system + irq + softirq
        return cls(busy / hertz, steal / hertz, (busy + idle + iowait + steal) / hertz)


@dataclass(frozen=True)
class Quietness:
    """How busy the rest of the machine was during one run (fractions of its capacity)."""

    load_before: float  # 1-minute load average per core before the run
    foreign: float  # CPU used by other processes / (cores x wall time)
    steal: float  # time the hypervisor gave to others / (cores x wall time)

    @property
    def quiet(self) -> bool:
        return (
            self.load_before < LOAD_PER_CORE_LIMIT
            and self.foreign < FOREIGN_LIMIT
            and self.steal < STEAL_LIMIT
        )

    def describe(self) -> str:
        return (
            f"load/core before {self.load_before:.2f}, foreign CPU {self.foreign:.0%}, "
            f"steal {self.steal:.0%}"
        )


def quietness(before: CpuTimes, after: CpuTimes, own_cpu_s: float, load_before: float,
              cores: int) -> Quietness:  # fmt: skip
    """Foreign CPU and steal between two readings, given the benchmark child's CPU time."""
    capacity = max(after.total_s - before.total_s, 1e-9)
    foreign = max(0.0, (after.busy_s - before.busy_s) - own_cpu_s) / capacity
    steal = (after.steal_s - before.steal_s) / capacity
    return Quietness(load_before / cores, foreign, steal)


class Watch:
    """Readings around one child process: ``start()`` before it, ``stop(child_cpu_s)`` after."""

    def __init__(self, proc: Path = _PROC) -> None:
        self.proc = proc
        self.cores = os.cpu_count() or 1
        self._before: CpuTimes | None = None
        self._load = 0.0

    def start(self) -> None:
        self._load = float((self.proc / "loadavg").read_text().split()[0])
        self._before = CpuTimes.read(self.proc)

    def stop(self, own_cpu_s: float) -> Quietness:
        if self._before is None:
            raise RuntimeError("Watch.stop() before start()")
        return quietness(self._before, CpuTimes.read(self.proc), own_cpu_s, self._load,
                         self.cores)  # fmt: skip

"""Was the machine quiet while a benchmark ran? Measured, not assumed.

A benchmark's own child keeps one or two cores busy, so the load average alone cannot
tell a busy machine from a working benchmark. :class:`Watch` reads the kernel's CPU
accounting (``/proc/stat``) before and after one timed child and subtracts the child's
own CPU time (its rusage): what is left is **foreign CPU**, work of other processes
during the run, as a fraction of the machine's capacity over that time. It also reads
the hypervisor's **steal** time.

A run is quiet when foreign CPU and steal each stay under 10 % of the machine; a benchmark
is quiet when all its runs are and the 1-minute load average was under 0.5 per core
before its first run (later runs cannot use it: it still holds the benchmark's own
previous run, decaying over minutes).
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

    foreign: float  # CPU used by other processes / (cores x wall time)
    steal: float  # time the hypervisor gave to others / (cores x wall time)

    @property
    def quiet(self) -> bool:
        return self.foreign < FOREIGN_LIMIT and self.steal < STEAL_LIMIT

    def describe(self) -> str:
        return f"foreign CPU {self.foreign:.0%}, steal {self.steal:.0%}"


def quietness(before: CpuTimes, after: CpuTimes, own_cpu_s: float) -> Quietness:
    """Foreign CPU and steal between two readings, given the benchmark child's CPU time."""
    capacity = max(after.total_s - before.total_s, 1e-9)
    foreign = max(0.0, (after.busy_s - before.busy_s) - own_cpu_s) / capacity
    steal = (after.steal_s - before.steal_s) / capacity
    return Quietness(foreign, steal)


def load_per_core(proc: Path = _PROC) -> float:
    """The 1-minute load average per core (``/proc/loadavg``)."""
    return float((proc / "loadavg").read_text().split()[0]) / (os.cpu_count() or 1)


def idle_at_start(proc: Path = _PROC) -> bool:
    """Nothing else running before a benchmark starts (read before its first run only)."""
    return load_per_core(proc) < LOAD_PER_CORE_LIMIT


class Watch:
    """Readings around one child process: ``start()`` before it, ``stop(child_cpu_s)`` after."""

    def __init__(self, proc: Path = _PROC) -> None:
        self.proc = proc
        self._before: CpuTimes | None = None

    def start(self) -> None:
        self._before = CpuTimes.read(self.proc)

    def stop(self, own_cpu_s: float) -> Quietness:
        if self._before is None:
            raise RuntimeError("Watch.stop() before start()")
        return quietness(self._before, CpuTimes.read(self.proc), own_cpu_s)

"""CPU each process on this machine takes over a window, and its nice value, from /proc (Linux).

    python bench/process_cpu.py --seconds 60

Run it beside a job (a training run, a server under load) to see what the processes next to the
workers cost: it prints the busiest processes with their share of one core and their nice value, then
the total. docs/benchmarks.md uses it for Ray Train's overhead.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # run as a file: the checkout, after any PYTHONPATH

from bench.common import bench_parser


@dataclass(frozen=True)
class ProcStat:
    """One process as /proc/<pid>/stat shows it now."""

    ppid: int
    ticks: int  # user + system CPU time, in clock ticks (os.sysconf("SC_CLK_TCK") a second)
    nice: int
    command: str


def snapshot() -> dict[int, ProcStat]:
    """pid -> its ProcStat, for every process readable now."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended meanwhile
            continue
        # Fields after the parenthesised command name: ppid is the 2nd, utime and stime the 12th and 13th,
        # nice the 17th.
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = ProcStat(
            ppid=int(fields[1]), ticks=int(fields[11]) + int(fields[12]), nice=int(fields[16]),
            command=cmdline or stat.split()[1],
        )
    return out


def main() -> None:
    parser = bench_parser(__doc__, out=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    ticks = os.sysconf("SC_CLK_TCK")
    before = snapshot()
    time.sleep(args.seconds)
    after = snapshot()
    rows = sorted(
        ((after[pid].ticks - before[pid].ticks) / ticks / args.seconds, after[pid].nice, after[pid].command[:100])
        for pid in after.keys() & before.keys()
    )
    for share, nice, command in reversed(rows[-args.top :]):
        print(f"{100 * share:6.1f}%  nice {nice:3d}  {command}")
    print(f"total {100 * sum(r[0] for r in rows):.1f}% of one core over {args.seconds:g} s")


if __name__ == "__main__":
    main()

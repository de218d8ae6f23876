"""
CPU of a measured process tree, every process it starts included (ssh, and the SSH
multiplex master that outlives the ssh which forked it).

With cgroup v2 here (``cgroup.controllers`` in ``/sys/fs/cgroup`` or, on a hybrid
host, ``/sys/fs/cgroup/unified``) and writable, this process moves into a child cgroup
of its own for the run; every process it starts is born in it, so ``cpu.stat``'s
``usage_usec`` counts all of them, the mux master included, while they run. Otherwise
the meter falls back to this process's time plus ``RUSAGE_CHILDREN`` (finished
children only) plus the CPU, from ``/proc/<pid>/stat``, of the mux masters the caller
names. :attr:`Meter.method` says which one was used.
"""

import os
import resource
import time
from pathlib import Path

ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
CGROUP = "cgroup v2 cpu.stat of a child cgroup holding the bench and every process it starts"
RUSAGE = ("this process + RUSAGE_CHILDREN + the mux master's utime+stime from /proc/<pid>/stat "
          "(no writable cgroup v2 here)")


def _v2_root():
    """The mount point of the cgroup v2 hierarchy, or None."""
    return next((root for root in ROOTS if (root / "cgroup.controllers").is_file()), None)


def _own_cgroup():
    """This process's cgroup v2 path (the ``0::`` line of /proc/self/cgroup)."""
    for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def proc_cpu_seconds(pid):
    """utime + stime of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """``with Meter() as meter: ... meter.seconds()``: CPU seconds of the tree so far."""

    def __init__(self):
        self.method = RUSAGE
        self.group = None
        self.home = None

    def __enter__(self):
        root, own = _v2_root(), _own_cgroup()
        if root is not None and own is not None:
            group = root / f"proxysql-ha-bench-{os.getpid()}"
            try:
                group.mkdir(exist_ok=True)
                (group / "cgroup.procs").write_text(str(os.getpid()), encoding="utf-8")
            except OSError:
                if group.exists():
                    group.rmdir()
            else:
                self.group, self.home = group, root / own.lstrip("/")
                self.method = CGROUP
        return self

    def __exit__(self, *exc):
        if self.group is None:
            return False
        (self.home / "cgroup.procs").write_text(str(os.getpid()), encoding="utf-8")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # processes left in it (a mux master) keep it busy
            try:
                self.group.rmdir()
                break
            except OSError:
                for pid in (self.group / "cgroup.procs").read_text(encoding="utf-8").split():
                    (self.home / "cgroup.procs").write_text(pid, encoding="utf-8")
                time.sleep(0.05)
        return False

    def seconds(self, masters=()):
        """CPU seconds used so far; ``masters``: pids of mux masters (the fallback only)."""
        if self.group is not None:
            for line in (self.group / "cpu.stat").read_text(encoding="utf-8").splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (time.process_time() + kids.ru_utime + kids.ru_stime
                + sum(proc_cpu_seconds(pid) for pid in masters))

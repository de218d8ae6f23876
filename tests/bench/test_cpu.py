"""
bench.cpu counts the CPU of every process the measured code starts, one that outlives its parent
(as an SSH multiplex master does) included: in a cgroup v2 child when this machine has a writable
one, else from /proc/<pid>/stat of the pids named.
"""

import os
import subprocess
import sys
import time

from bench import cpu

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def detached_burner(seconds):
    """A process that burns ``seconds`` of CPU, then sleeps, started so that it outlives the
    process that started it (like ``ssh``'s ControlPersist master). Returns its pid."""
    code = ("import os, sys, time\n"
            "if os.fork(): os._exit(0)\n"
            "os.setsid()\n"
            "print(os.getpid(), flush=True)\n"
            + BURN.format(seconds=seconds) + "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    proc.wait(timeout=30)
    return pid


def test_the_meter_counts_a_finished_child():
    with cpu.Meter() as meter:
        before = meter.seconds()
        subprocess.run([sys.executable, "-c", BURN.format(seconds=0.3)], check=True, timeout=60)
        assert meter.seconds() - before >= 0.25
    assert meter.method in (cpu.CGROUP, cpu.RUSAGE)


def test_the_meter_counts_a_detached_process_that_is_still_running():
    with cpu.Meter() as meter:
        before = meter.seconds()
        pid = detached_burner(0.3)
        try:
            deadline = time.monotonic() + 60
            while cpu.proc_cpu_seconds(pid) < 0.29 and time.monotonic() < deadline:
                time.sleep(0.05)
            used = meter.seconds(masters=[pid]) - before
            assert used >= 0.25, (meter.method, used)
        finally:
            os.kill(pid, 9)


def test_the_process_goes_home_and_the_cgroup_is_removed_when_the_meter_closes():
    with cpu.Meter() as meter:
        group = meter.group
    if group is None:
        assert meter.method == cpu.RUSAGE
        return
    assert not group.exists()
    assert str(os.getpid()) in (meter.home / "cgroup.procs").read_text(encoding="utf-8").split()

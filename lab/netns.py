"""Network namespaces, links and the processes that run inside them.

Everything here drives ``ip`` (iproute2). A namespace does not separate files, only the
network: paths are shared with the host, so each daemon keeps its files in its own directory.
``ip netns exec`` execs the command, so a started process's pid is the daemon's own.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"
# Binaries the lab runs, with the Debian package that brings each one (`make deps`).
BINARIES = (("ip", "iproute2"), ("ucarp", "ucarp"), ("sshd", "openssh-server"),
            ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"), ("timeout", "coreutils"))
SWEEP_SECONDS = 5


class LabUnavailable(Exception):
    """The lab cannot run on this machine; the message says why and what to do."""


def which(name):
    """Absolute path of ``name`` on PATH or in /usr/sbin, or None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def require():
    """Raise LabUnavailable unless this is root with network namespaces and every binary."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces, sshd, ucarp): run it as root")
    missing = sorted({package for name, package in BINARIES if not which(name)})
    if missing:
        raise LabUnavailable(f"missing Debian packages: {' '.join(missing)} (run `make deps` as root)")
    probe = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, timeout=10,
                           check=False)
    if probe.returncode != 0:
        raise LabUnavailable(f"`ip netns` is not available here: {probe.stderr.strip()}")


def ip(*args, namespace=None, check=True):
    """Run ``ip [-n namespace] args``; return its stdout. Raises RuntimeError on failure."""
    argv = [IP] + (["-n", namespace] if namespace else []) + [str(a) for a in args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")
    return out.stdout


def exec_argv(namespace, argv):
    """The command line that runs ``argv`` inside ``namespace``."""
    return [IP, "netns", "exec", namespace] + [str(a) for a in argv]


def add(namespace):
    """Create ``namespace`` with its loopback up."""
    ip("netns", "add", namespace)
    ip("link", "set", "lo", "up", namespace=namespace)


def exists(namespace):
    return namespace in listed()


def listed():
    """Names of the existing network namespaces."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def pids(namespace):
    """Pids of the processes inside ``namespace``."""
    out = ip("netns", "pids", namespace, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def sweep(namespace, seconds=SWEEP_SECONDS):
    """SIGKILL every process inside ``namespace`` until none is left; return the pids still there."""
    deadline = time.monotonic() + seconds
    while True:
        left = pids(namespace)
        if not left or time.monotonic() >= deadline:
            return left
        for pid in left:
            with_process(pid, signal.SIGKILL)
        time.sleep(0.05)


def orphans(pattern):
    """Delete the namespaces named ``pattern`` (a regex with a ``pid`` group) whose process is
    gone (a lab killed with SIGKILL cannot clean up); return their names."""
    found = []
    for namespace in listed():
        match = re.fullmatch(pattern, namespace)
        if match and not Path(f"/proc/{match.group('pid')}").exists():
            delete(namespace)
            found.append(namespace)
    return found


def process_stat(pid):
    """``(state, ppid, start time in clock ticks)`` of ``pid`` from ``/proc``, or None once it is
    gone. A zombie (state Z) is not gone: it holds its pid until its parent (or init) reaps it."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
    return fields[0], int(fields[1]), int(fields[19])


def tree(namespace, chosen):
    """The live processes inside ``namespace`` (zombies are not listed) that ``chosen(pid)``
    selects, and their descendants: ``{pid: start time}``."""
    found = {pid: process_stat(pid) for pid in pids(namespace)}
    found = {pid: stat for pid, stat in found.items() if stat and stat[0] != "Z"}
    picked = {pid for pid in found if chosen(pid)}
    grown = True
    while grown:
        children = {pid for pid, stat in found.items() if stat[1] in picked} - picked
        picked |= children
        grown = bool(children)
    return {pid: found[pid][2] for pid in picked}


def kill_tree(namespace, chosen, seconds=SWEEP_SECONDS):
    """
    SIGKILL a process tree at once, as a crash ends it: the processes ``chosen`` selects and
    their descendants (:func:`tree`) are stopped (SIGSTOP: none forks or reparents a child
    meanwhile), looked for again until no new one appears (bounded by ``seconds``), then
    killed. Returns ``{pid: start time}`` of the killed; :func:`wait_gone` waits for them.
    """
    stopped = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        new = {pid: start for pid, start in tree(namespace, lambda p: chosen(p) or p in stopped).items()
               if pid not in stopped}
        if not new:
            break
        for pid in new:
            with_process(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        with_process(pid, signal.SIGKILL)
    return stopped


def crash(process, marker, seconds=SWEEP_SECONDS):
    """
    A crash of ``process`` (a started :class:`Process`) and of everything it forked: its tree and
    the processes whose command line contains ``marker`` (what it detached into a session of its
    own, found by the command line it inherited), with their trees, SIGKILLed at once
    (:func:`kill_tree`); ``process`` reaped. Returns the pids still there after ``seconds``
    (:func:`wait_gone`): what it detached by a double fork and whose command line is its own,
    such as a daemon it started, is not touched.
    """
    root, marker = process.pid, marker.encode()
    killed = kill_tree(process.namespace, lambda pid: pid == root or marker in cmdline(pid), seconds)
    process.kill()
    return wait_gone(killed, seconds)


def wait_gone(processes, seconds=SWEEP_SECONDS):
    """Wait until each of ``{pid: start time}`` is gone, reaped too (init reaps an orphan's
    zombie at its own pace); return the pids still there after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = [pid for pid, start in processes.items()
                if (process_stat(pid) or (None, None, None))[2] == start]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def kill_matching(namespace, text):
    """SIGKILL the processes inside ``namespace`` whose command line contains ``text``."""
    for pid in pids(namespace):
        if text.encode() in cmdline(pid):
            with_process(pid, signal.SIGKILL)


def cmdline(pid):
    """The command line of ``pid`` (NUL-separated bytes), empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def delete(namespace):
    """Kill what runs inside ``namespace`` and delete it; return the pids that would not die."""
    if not exists(namespace):
        return []
    left = sweep(namespace)
    ip("netns", "del", namespace, check=False)
    return left


def with_process(pid, sig):
    """Send ``sig`` to ``pid``; a process already gone is fine."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def veth(namespace, name, peer_namespace, peer_name):
    """A veth pair created straight inside the two namespaces (no name in the host's)."""
    ip("link", "add", name, "netns", namespace, "type", "veth",
       "peer", "name", peer_name, "netns", peer_namespace)


def address(namespace, device, cidr, action="add", check=True):
    ip("addr", action, cidr, "dev", device, namespace=namespace, check=check)


def link(namespace, device, state):
    """Set ``device`` ``up`` or ``down``."""
    ip("link", "set", device, state, namespace=namespace)


def addresses(namespace, device):
    """IPv4 addresses (without prefix) of ``device``."""
    out = ip("-4", "-o", "addr", "show", "dev", device, namespace=namespace, check=False)
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]


# Set on some developer and CI machines, never on a production minion, which caches the
# bytecode of its synced modules (extmods' __pycache__): without the cache every job the
# minion forks compiles the extension's modules again (~0.13 s of CPU here), which the
# failover and idle measurements would count. The lab's daemons run without it.
NOT_IN_PRODUCTION = ("PYTHONDONTWRITEBYTECODE",)


def daemon_env(extra=None):
    """The environment a lab daemon runs with: this one, less :data:`NOT_IN_PRODUCTION`, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_IN_PRODUCTION}
    env.update(extra or {})
    return env


class Process:
    """One long-lived command inside a namespace, in a process group of its own, logging to a file."""

    def __init__(self, namespace, argv, log, env=None):
        self.namespace = namespace
        self.argv = [str(a) for a in argv]
        self.log = Path(log)
        self.env = env
        self.popen = None

    def start(self):
        if self.running():
            raise RuntimeError(f"{self.argv[0]} already runs (pid {self.popen.pid})")
        command = exec_argv(self.namespace, self.argv) if self.namespace else self.argv
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(  # pylint: disable=consider-using-with
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=daemon_env(self.env),
                start_new_session=True,
            )
        return self

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def send(self, sig):
        """Send ``sig`` to the process only (not its group)."""
        if self.running():
            with_process(self.popen.pid, sig)

    def stop(self, sig=signal.SIGTERM, seconds=10):
        """Send ``sig`` to the whole group, wait up to ``seconds``, then SIGKILL the group."""
        if self.popen is None:
            return
        self._group(sig)
        try:
            self.popen.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        self._group(signal.SIGKILL)
        self.popen.wait(timeout=SWEEP_SECONDS)
        self.popen = None

    def kill(self):
        """SIGKILL the group at once: the process dies without running any exit handler."""
        self.stop(signal.SIGKILL, seconds=0)

    def _group(self, sig):
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

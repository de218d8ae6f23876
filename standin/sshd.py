"""A real OpenSSH ``sshd``, for tests and the lab: one instance per directory.

``Sshd(directory)`` writes its own ed25519 host key, ``sshd_config`` and ``authorized_keys``
into ``directory`` and runs ``sshd -D -e -f sshd_config`` as a child process (not a daemon)
on a free port of 127.0.0.1, logging to ``directory/sshd.log``. Only public-key logins for
the keys given to :meth:`Sshd.authorize` are accepted. Root is needed (sshd's privilege
separation); :func:`missing` says why an instance cannot run here.

``Sshd(directory, host="198.18.0.12", port=22, prefix=["ip", "netns", "exec", "ns"])`` listens
on another address, started through ``prefix`` (a network namespace, say): sshd is ready when
its log says it listens, so readiness is seen from any namespace.

``StrictModes`` is off: the directory usually lies under the world-writable ``/tmp``, which
sshd's ownership check of the authorized keys path would reject.

Standard library only, and no pytest.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
START_SECONDS = 10


def missing():
    """Why no sshd can run here (a sentence), or None when it can."""
    if os.geteuid() != 0:
        return "sshd needs root (privilege separation)"
    for name, path in (("sshd", SSHD), ("ssh", SSH), ("ssh-keygen", SSH_KEYGEN)):
        if not path or not os.access(path, os.X_OK):
            return f"{name} is not installed (Debian: openssh-server, openssh-client)"
    return None


def free_port(host="127.0.0.1"):
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def generate_key(path, comment="test"):
    """Create an ed25519 key pair without passphrase at ``path``; return the public key line."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )
    return Path(f"{path}.pub").read_text(encoding="utf-8").strip()


def restricted_key_line(public_key, command):
    """An ``authorized_keys`` line that lets ``public_key`` run ``command`` and nothing else."""
    if '"' in command or "\n" in command:
        raise ValueError(f"forced command must not contain quotes or newlines: {command!r}")
    return f'restrict,command="{command}" {public_key}'


def _children(pid):
    """The pids whose parent is ``pid`` (sshd's per-connection processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


class Sshd:
    """One sshd on ``host`` with its files in ``directory``; its port survives restarts.

    ``port`` defaults to a free port of ``host`` in this process's network namespace; give it
    when sshd runs elsewhere (``prefix``: the argv its command line is appended to).
    """

    def __init__(self, directory, port=None, host="127.0.0.1", prefix=()):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.prefix = list(prefix)
        self.host_key = self.directory / "ssh_host_ed25519_key"
        self.config = self.directory / "sshd_config"
        self.authorized_keys = self.directory / "authorized_keys"
        self.log = self.directory / "sshd.log"
        self.process = None
        self.host_public_key = generate_key(self.host_key, "sshd-host")
        self.authorized_keys.write_text("", encoding="utf-8")
        self.authorized_keys.chmod(0o600)
        self.config.write_text(self._config_text(), encoding="utf-8")

    def _config_text(self):
        settings = {
            "ListenAddress": self.host,
            "Port": self.port,
            "HostKey": self.host_key,
            "PidFile": self.directory / "sshd.pid",
            "AuthorizedKeysFile": self.authorized_keys,
            "UsePAM": "no",
            "StrictModes": "no",
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PermitRootLogin": "prohibit-password",
            "LoginGraceTime": 10,
            "LogLevel": "VERBOSE",
        }
        return "".join(f"{key} {value}\n" for key, value in settings.items())

    def known_hosts_line(self):
        """The ``known_hosts`` line that makes ssh trust this server's host key on its port."""
        key_type, key = self.host_public_key.split()[:2]
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {key_type} {key}"

    def authorize(self, public_key, command):
        """Let ``public_key`` log in, restricted to running ``command``."""
        with self.authorized_keys.open("a", encoding="utf-8") as handle:
            handle.write(restricted_key_line(public_key, command) + "\n")

    def start(self):
        """Start sshd; return once it accepts connections, else raise RuntimeError with its log."""
        if self.process is not None:
            raise RuntimeError("sshd already started")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        logged = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                self.prefix + [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + START_SECONDS
        while not self._listening(logged):
            if self.process.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"sshd did not start on {self.host} port {self.port}: {self.log_text()}")
            time.sleep(0.05)

    def _listening(self, offset):
        """Whether sshd logged, after ``offset`` bytes of its log, that it listens (after listen(2))."""
        with self.log.open("rb") as log:
            log.seek(offset)
            return f"Server listening on {self.host} port {self.port}.".encode() in log.read()

    def stop(self):
        """
        Stop sshd and the sessions it serves, as when the peer's sshd goes away:
        a client multiplexing over an open connection must see it gone too.
        Does nothing when it is not running.
        """
        if self.process is None:
            return
        for child in _children(self.process.pid):
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.process.terminate()
        try:
            self.process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=START_SECONDS)
        self.process = None

    def log_text(self):
        """What sshd logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def ssh_argv(self, identity_file, known_hosts, user, *command):
        """An ``ssh`` command line to this server that trusts nothing but ``known_hosts``."""
        return [
            SSH, "-F", "/dev/null", "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
            "-i", str(identity_file),
            "-p", str(self.port),
            "-l", user,
            self.host, *command,
        ]

"""Run a service command late: exit 0 at once, run the command ``DELAY`` seconds later, detached.

    delayed_service.py DELAY COMMAND [ARGS...]
    delayed_service.py never COMMAND [ARGS...]    (exit 0, never run it: a service that never comes up)

A service manager whose start (or stop) returns before the daemon is up (or down) does this: the
extension must then wait for the state it asked for, and give up after ``service:timeout``. The
late command runs in a new session with no inherited descriptors, so the caller does not wait on
its output. Standard library only.
"""

import os
import subprocess
import sys
import time


def main(argv):
    delay, command = argv[0], argv[1:]
    if not command:
        sys.exit("usage: delayed_service.py DELAY|never COMMAND [ARGS...]")
    if delay == "never":
        return 0
    if os.fork():
        return 0
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    time.sleep(float(delay))
    subprocess.run(command, check=False, timeout=60)
    os._exit(0)  # pylint: disable=protected-access


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

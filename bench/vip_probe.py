"""
A client's view of a failover: the first moment a TCP connection to ``HOST:PORT`` (ProxySQL's
traffic port on the VIP) is accepted. Run by the lab bench inside the lab's ``net`` namespace
(neither host of the pair), standard library only::

    python vip_probe.py HOST PORT SECONDS

Prints one JSON line ``{"started": epoch, "served": epoch or null, "attempts": n}`` and exits.
A new non-blocking connect is started every ``EVERY`` seconds while the earlier ones are still
in flight (a SYN sent to the old MAC before the new MASTER's gratuitous ARP is lost, not
refused, and waiting out its retransmission would measure the kernel's SYN timer, not the
failover), so the moment is known to about ``EVERY``. Each attempt is given up after
``GIVE_UP`` seconds; the probe as a whole after ``SECONDS``.
"""

import errno
import json
import selectors
import socket
import sys
import time

EVERY = 0.005  # s between new attempts
GIVE_UP = 0.5  # s an attempt stays in flight


def probe(host, port, seconds):
    started = time.time()
    deadline = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    attempts, served, next_at = 0, None, 0.0
    try:
        while served is None and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_at:
                next_at = now + EVERY
                attempts += 1
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex((host, port))
                if code in (0, errno.EINPROGRESS):
                    selector.register(sock, selectors.EVENT_WRITE, now + GIVE_UP)
                else:  # refused or unreachable at once: try again at the next tick
                    sock.close()
            for key, _ in selector.select(timeout=max(0.0, next_at - time.monotonic())):
                sock = key.fileobj
                selector.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    served = time.time() if served is None else served
                sock.close()
            now = time.monotonic()
            for key in list(selector.get_map().values()):
                if key.data <= now:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    return {"started": started, "served": served, "attempts": attempts}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))), flush=True)

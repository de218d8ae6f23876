"""
The two-host failover lab: a real CARP failover of a proxysql-ha pair on one Linux machine.

Two hosts, A and B, are network namespaces joined by a bridge; each runs ucarp (whose scripts
are the project's hook), sshd (the restricted receive command), a salt-minion and a ProxySQL
stand-in. One salt-master with the project's reactor serves the extension. Root is needed.

- ``lab.netns``: namespaces, links, processes inside them, the sweep at teardown
- ``lab.salt``: master, minion and pillar configuration, the salt CLIs, bounded
- ``lab.events``: recorder of a daemon's event bus (run as ``python -m lab.events``)
- ``lab.hosts``: one host: its daemons, its failures (kill, cut link), what it looks like
- ``lab.lab``: the Lab context manager, the timeline, teardown

Used by ``make demo`` (``demo/demo.py``) and the end-to-end tests.
"""

from lab.lab import Lab, LabTimeout
from lab.netns import LabUnavailable

__all__ = ["Lab", "LabTimeout", "LabUnavailable"]

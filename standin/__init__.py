"""Stand-ins and helpers shared by the tests, the lab, the demo and the benchmarks.

None of this is installed or used at run time. ``proxysql_standin`` and ``proxysql_admin``
play ProxySQL (they are not ProxySQL; each behaviour cites the ProxySQL source it follows),
``proxysql_db`` builds ``proxysql.db`` files from ProxySQL's real DDL in ``../shared``,
``sshd`` runs a real OpenSSH server, ``node`` lays out one node's directories and pillar,
``checkout`` makes a clean copy of the tree.
"""

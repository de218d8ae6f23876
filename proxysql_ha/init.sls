# proxysql-ha formula: makes this minion one node of the ProxySQL pair.
# Include it from a top file:   base: {'proxysql-*': [proxysql_ha]}
# Configuration: the proxysql_ha pillar key (pillar.example).
include:
  - proxysql_ha.dirs
  - proxysql_ha.files
  - proxysql_ha.ssh
  - proxysql_ha.carp
  - proxysql_ha.minion
  - proxysql_ha.schedule
  - proxysql_ha.converged

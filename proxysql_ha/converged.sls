# Last: the node's ProxySQL and shipping match its CARP role.
include:
  - proxysql_ha.dirs
  - proxysql_ha.files
  - proxysql_ha.schedule

proxysql_ha_converged:
  proxysql_ha.converged:
    - require:
      - sls: proxysql_ha.dirs
      - sls: proxysql_ha.files
      - sls: proxysql_ha.schedule

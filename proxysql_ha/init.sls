# proxysql-ha formula: makes this minion one node of the ProxySQL pair.
# Include it from a top file:   base: {'proxysql-*': [proxysql_ha]}
# Configuration: the proxysql_ha pillar key (pillar.example).
# It installs ucarp or keepalived where chosen and the MySQL client where the admin
# interface is used, never ProxySQL itself (README).
{%- from "proxysql_ha/map.jinja" import no_daemon, no_daemon_msg with context %}
{%- if no_daemon %}

proxysql_ha_minion_daemon:
  test.fail_without_changes:
    - name: {{ no_daemon_msg | yaml_dquote }}
{%- else %}
include:
  - proxysql_ha.dirs
  - proxysql_ha.files
  - proxysql_ha.ssh
  - proxysql_ha.carp
  - proxysql_ha.admin
  - proxysql_ha.minion
  - proxysql_ha.schedule
  - proxysql_ha.converged
{%- endif %}

{%- from "proxysql_ha/map.jinja" import ha, f with context %}
# The MySQL client the admin client runs (proxysql_ha:admin:enabled): the layer
# checks and the health rule talk to ProxySQL's admin interface through it.
{%- if ha.admin.enabled and f.mysql_client_package %}

proxysql_ha_mysql_client:
  pkg.installed:
    - name: {{ f.mysql_client_package | yaml_dquote }}
{%- endif %}

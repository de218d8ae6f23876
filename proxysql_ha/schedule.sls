# The minion's own schedule (not pillar schedules, which cannot be enabled or
# disabled at run time): ship, purge, reconcile, check; enabled as the role wants.
{%- from "proxysql_ha/map.jinja" import no_daemon, no_daemon_msg with context %}
{%- if no_daemon %}

proxysql_ha_minion_daemon:
  test.fail_without_changes:
    - name: {{ no_daemon_msg | yaml_dquote }}
{%- endif %}
{%- for job, args in ([] if no_daemon else salt['proxysql_ha.jobs']().items()) %}

{{ job }}:
  schedule.present:
{%- for key, value in args | dictsort %}
    - {{ key }}: {{ value | json }}
{%- endfor %}
{%- endfor %}

# The minion's own schedule (not pillar schedules, which cannot be enabled or
# disabled at run time): ship, purge, reconcile, check; enabled as the role wants.
{%- for job, args in salt['proxysql_ha.jobs']().items() %}

{{ job }}:
  schedule.present:
{%- for key, value in args | dictsort %}
    - {{ key }}: {{ value | json }}
{%- endfor %}
{%- endfor %}

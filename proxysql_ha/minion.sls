{%- from "proxysql_ha/map.jinja" import ha, f, minion_d, config_dir, salt_call with context %}
# The engine notices a saved configuration within watch_interval and runs the
# ship job, reads the role and ProxySQL's pid every engine_check_interval and
# runs reconcile when they are out of line, and relays the CARP hook's
# transitions from its spool at once. It reads the rest from the pillar (and
# follows its refreshes); engines are read from the minion's config at its start.
proxysql_ha_engine_conf:
  file.managed:
    - name: {{ (minion_d ~ '/proxysql_ha.conf') | yaml_dquote }}
    - user: root
    - mode: '0644'
    - makedirs: True
    - contents: |
        # proxysql-ha (managed by Salt)
        engines:
          - proxysql_ha:
              spool: {{ ha.state_dir }}/carp
{%- if f.restart_minion %}

proxysql_ha_restart_minion:
  cmd.run:
    # -c: this minion's own configuration directory, wherever it is
    - name: {{ salt_call }} --local -c {{ config_dir }} service.restart salt-minion
    - bg: True
    - onchanges:
      - file: proxysql_ha_engine_conf
{%- endif %}

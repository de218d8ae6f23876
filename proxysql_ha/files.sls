{%- from "proxysql_ha/map.jinja" import ha, f, python, minion_conf, lib_dir, hook with context %}
# The CARP hook and the SSH receive command, run with the minion's Python.
proxysql_ha_lib_dir:
  file.directory:
    - name: {{ lib_dir | yaml_dquote }}
    - user: root
    - mode: '0755'
    - makedirs: True

{%- for name, source in (('event.py', 'proxysql-ha-event'), ('receive.py', 'proxysql-ha-receive')) %}

proxysql_ha_{{ name }}:
  file.managed:
    - name: {{ (lib_dir ~ '/' ~ name) | yaml_dquote }}
    - source: salt://proxysql_ha/files/{{ source }}
    - user: root
    - mode: '0755'
    - require:
      - file: proxysql_ha_lib_dir
{%- endfor %}

{#- devd and keepalived call the hook directly; ucarp's scripts get no extra
    argument, so each has a wrapper saying which way the VIP moved. #}
{%- for name, flag in (('proxysql-ha-event', ''), ('proxysql-ha-ucarp-up', '--ucarp-up '), ('proxysql-ha-ucarp-down', '--ucarp-down ')) %}

proxysql_ha_wrapper_{{ name }}:
  file.managed:
    - name: {{ (f.libexec_dir ~ '/' ~ name) | yaml_dquote }}
    - user: root
    - mode: '0755'
    - contents: |
        #!/bin/sh
        # the hook reads its configuration from formula:etc_dir, wherever that is
        PROXYSQL_HA_HOOK_CONF={{ f.etc_dir }}/hook.json
        export PROXYSQL_HA_HOOK_CONF
        exec {{ python }} -S {{ lib_dir }}/event.py {{ flag }}"$@"
    - require:
      - file: proxysql_ha_event.py
{%- endfor %}

proxysql_ha_hook_conf:
  file.serialize:
    - name: {{ (f.etc_dir ~ '/hook.json') | yaml_dquote }}
    - serializer: json
    - user: root
    - mode: '0600'
    - dataset:
        vhid: {{ ha.vhid }}
        interface: {{ ha.interface | yaml_dquote }}
        minion_config: {{ minion_conf | yaml_dquote }}
        reconcile_job: {{ ha.schedule.reconcile_job | yaml_dquote }}
        spool_dir: {{ (ha.state_dir ~ '/carp') | yaml_dquote }}
        prefix: {{ f.ucarp.prefix }}
        ip_command: {{ (salt['cmd.which']('ip') or '/sbin/ip') | yaml_dquote }}
    - require:
      - file: proxysql_ha_etc_dir

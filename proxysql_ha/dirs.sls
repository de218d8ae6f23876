{%- from "proxysql_ha/map.jinja" import ha, f, base_dir with context %}
# Backups hold MySQL credentials: every directory is 0700. The base directory
# is only traversable, so the receive user reaches its inbox and nothing else.
proxysql_ha_receive_user:
  user.present:
    - name: {{ f.receive_user | yaml_dquote }}
    - home: {{ base_dir | yaml_dquote }}
    - createhome: False
    - shell: /bin/sh
    - system: True

proxysql_ha_base_dir:
  file.directory:
    - name: {{ base_dir | yaml_dquote }}
    - user: root
    - mode: '0755'
    - makedirs: True

{%- for key in ('backup_dir', 'state_dir') %}

proxysql_ha_{{ key }}:
  file.directory:
    - name: {{ ha[key] | yaml_dquote }}
    - user: root
    - mode: '0700'
    - makedirs: True
    - require:
      - file: proxysql_ha_base_dir
{%- endfor %}

proxysql_ha_inbox_dir:
  file.directory:
    - name: {{ ha.inbox_dir | yaml_dquote }}
    - user: {{ f.receive_user | yaml_dquote }}
    - mode: '0700'
    - makedirs: True
    - require:
      - user: proxysql_ha_receive_user
      - file: proxysql_ha_base_dir

proxysql_ha_etc_dir:
  file.directory:
    - name: {{ f.etc_dir | yaml_dquote }}
    - user: root
    - mode: '0700'
    - makedirs: True

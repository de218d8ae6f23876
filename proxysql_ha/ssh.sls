{%- from "proxysql_ha/map.jinja" import ha, f, receive with context %}
# SSH trust between the pair, one way per node: this node's key may only drop
# files into the peer's inbox; the peer's key may only drop files into ours.
{%- if ha.peer.transport == 'ssh' %}
{%- if salt['pillar.get']('proxysql_ha:formula:ssh_private_key') %}

proxysql_ha_identity:
  file.managed:
    - name: {{ ha.peer.identity_file | yaml_dquote }}
    - contents_pillar: proxysql_ha:formula:ssh_private_key
    - user: root
    - mode: '0600'
    - show_changes: False
    - makedirs: True
{%- endif %}
{%- if f.peer_host_key %}
{%- set host_key = f.peer_host_key.split() %}

proxysql_ha_known_host:
  ssh_known_hosts.present:
    - name: {{ ha.peer.host | yaml_dquote }}
    - port: {{ ha.peer.port }}
    - user: root
    - config: {{ ha.peer.known_hosts | yaml_dquote }}
    - enc: {{ host_key[0] | yaml_dquote }}
    - key: {{ host_key[1] | yaml_dquote }}
    - hash_known_hosts: False
{%- endif %}
{%- endif %}
{%- if f.peer_public_key %}
{%- set peer_key = f.peer_public_key.split() %}

proxysql_ha_authorized_peer:
  ssh_auth.present:
    - name: {{ peer_key[1] | yaml_dquote }}
    - user: {{ f.receive_user | yaml_dquote }}
    - enc: {{ peer_key[0] | yaml_dquote }}
    - comment: proxysql-ha-peer
    - options:
      - restrict
      - {{ ('command="' ~ receive ~ '"') | yaml_dquote }}
    - require:
      - user: proxysql_ha_receive_user
      - file: proxysql_ha_receive.py
{%- endif %}

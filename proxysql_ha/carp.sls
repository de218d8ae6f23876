{%- from "proxysql_ha/map.jinja" import ha, f, carp, hook with context %}
# How CARP transitions reach the hook.
{%- if carp == 'devd' %}

proxysql_ha_devd_rules:
  file.managed:
    - name: /usr/local/etc/devd/proxysql-ha.conf
    - user: root
    - mode: '0644'
    - makedirs: True
    - contents: |
        # proxysql-ha: CARP transitions of vhid {{ ha.vhid }} on {{ ha.interface }} (managed by Salt).
        notify 30 {
        	match "system"		"CARP";
        	match "subsystem"	"{{ ha.vhid }}@{{ ha.interface }}";
        	match "type"		"(MASTER|BACKUP|INIT)";
        	action "{{ hook }} $type $subsystem 2>&1 | /usr/bin/logger -t proxysql-ha";
        };

proxysql_ha_devd:
  service.running:
    - name: devd
    - watch:
      - file: proxysql_ha_devd_rules
{%- if ha.health.enabled %}

# The VIP follows ProxySQL: a node whose ProxySQL cannot run raises its vhid's
# advskew; with preemption its peer, advertising faster, takes the VIP (carp(4)).
proxysql_ha_carp_preempt:
  sysctl.present:
    - name: net.inet.carp.preempt
    - value: 1
{%- endif %}
{%- elif carp == 'ucarp' %}
{%- if not f.ucarp.src_ip or not salt['pillar.get']('proxysql_ha:formula:ucarp:password') or not ha.vip %}

proxysql_ha_ucarp:
  test.fail_without_changes:
    - name: "carp: ucarp needs proxysql_ha:vip, proxysql_ha:formula:ucarp:src_ip and proxysql_ha:formula:ucarp:password"
{%- else %}

proxysql_ha_ucarp_pkg:
  pkg.installed:
    - name: ucarp

proxysql_ha_ucarp_passfile:
  file.managed:
    - name: {{ (f.etc_dir ~ '/ucarp.pass') | yaml_dquote }}
    - contents_pillar: proxysql_ha:formula:ucarp:password
    - user: root
    - mode: '0600'
    - show_changes: False

proxysql_ha_ucarp_unit:
  file.managed:
    - name: /etc/systemd/system/proxysql-ha-ucarp.service
    - user: root
    - mode: '0644'
    - contents: |
        # proxysql-ha: ucarp for vhid {{ ha.vhid }} on {{ ha.interface }} (managed by Salt).
        [Unit]
        Description=ucarp holding the ProxySQL virtual IP {{ ha.vip }}
        After=network-online.target salt-minion.service
        [Service]
        ExecStart=/usr/sbin/ucarp --interface={{ ha.interface }} --srcip={{ f.ucarp.src_ip }} --vhid={{ ha.vhid }} --passfile={{ f.etc_dir }}/ucarp.pass --addr={{ ha.vip }} --advbase={{ f.ucarp.advbase }} --advskew={{ f.ucarp.advskew }}{{ ' --preempt' if f.ucarp.preempt else '' }} --upscript={{ f.libexec_dir }}/proxysql-ha-ucarp-up --downscript={{ f.libexec_dir }}/proxysql-ha-ucarp-down --shutdown
        ExecStartPost=/bin/sh -c 'echo "$$MAINPID" > "$$1"' proxysql-ha-ucarp-pid {{ ha.health.ucarp_pidfile }}
        ExecStopPost=/bin/rm -f {{ ha.health.ucarp_pidfile }}
        Restart=always
        [Install]
        WantedBy=multi-user.target
    - require:
      - pkg: proxysql_ha_ucarp_pkg
{%- if grains.get('init') == 'systemd' %}

proxysql_ha_ucarp_service:
  service.running:
    - name: proxysql-ha-ucarp
    - enable: True
    - watch:
      - file: proxysql_ha_ucarp_unit
      - file: proxysql_ha_ucarp_passfile
{%- endif %}
{%- endif %}
{%- elif carp == 'keepalived' %}

{#- keepalived.conf is the operator's (README: a complete vrrp_instance); its
    vrrp_instance must say:  notify "{{ hook }}"  #}
proxysql_ha_keepalived_pkg:
  pkg.installed:
    - name: keepalived
{%- endif %}
{%- if carp == 'keepalived' and ha.health.enabled %}

# keepalived reads this file through a vrrp_track_file with weight 0 (README):
# 1 (written by proxysql_ha when ProxySQL cannot run) puts the instance in FAULT.
proxysql_ha_keepalived_track_file:
  file.managed:
    - name: {{ ha.health.keepalived_track_file | yaml_dquote }}
    - contents: "0"
    - replace: False
    - user: root
    - mode: '0644'
    - makedirs: True
{%- endif %}

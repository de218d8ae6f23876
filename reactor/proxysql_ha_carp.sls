{#- proxysql-ha reactor: a CARP transition on a minion -> promote or demote on that minion.

Master configuration (see README):

    reactor:
      - 'proxysql_ha/carp/*':
        - salt://reactor/proxysql_ha_carp.sls

The job always targets data['id'], the minion that sent the event
(authenticated by Salt), never a minion named inside the payload. The payload
is checked here and again by the module, which also requires vhid and
interface to be that minion's own. Anything else is logged and ignored.
#}
{%- set payload = data.get('data') if data.get('data') is mapping else {} %}
{%- set minion = data.get('id', '') | string %}
{%- set state = payload.get('state', '') | string %}
{%- set vhid = payload.get('vhid', '') | string %}
{%- set iface = payload.get('iface', '') | string %}
{#- `match` is re.match, whose $ also matches before a final newline: each value
    gets a sentinel "|" appended, so the whole value must match. #}
{%- set ok_minion = (minion ~ '|') is match('^[A-Za-z0-9_.-]{1,255}[|]$') %}
{%- set ok_state = state in ['MASTER', 'BACKUP', 'INIT'] %}
{%- set ok_vhid = (vhid ~ '|') is match('^[0-9]{1,3}[|]$') and 1 <= vhid | int <= 255 %}
{%- set ok_iface = (iface ~ '|') is match('^[A-Za-z][A-Za-z0-9_.-]{0,14}[|]$') %}
{%- if ok_minion and ok_state and ok_vhid and ok_iface %}
{%- set action = 'promote' if state == 'MASTER' else 'demote' %}
proxysql_ha_{{ action }}:
  local.proxysql_ha.{{ action }}:
    - tgt: {{ minion | yaml_dquote }}
    - tgt_type: list
    - kwarg:
        vhid: {{ vhid | int }}
        interface: {{ iface | yaml_dquote }}
{%- else %}
{%- do salt['log.warning']('proxysql_ha reactor: ignored ' ~ tag ~ ' from ' ~ minion|tojson ~ ': bad payload ' ~ payload|tojson) %}
{%- endif %}

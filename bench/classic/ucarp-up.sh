#!/bin/sh
# The classic recipe's CARP action on MASTER, as a ucarp up-script (a faithful baseline for the
# benchmark, not part of proxysql-ha): take the virtual IP (ucarp leaves that to its scripts),
# then run the devd action, restore.sh: the newest file of the inbox by mtime is copied over
# ProxySQL's database, chowned, and ProxySQL started. No validation.
#   ucarp-up.sh IFACE VIP INBOX DATADIR OWNER START_COMMAND...
iface=$1 vip=$2
shift 2
ip addr add "$vip/32" dev "$iface"
exec "$(dirname "$0")/restore.sh" "$@"

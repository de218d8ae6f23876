#!/bin/sh
# The classic recipe's CARP action on BACKUP, as a ucarp down-script (a faithful baseline for
# the benchmark, not part of proxysql-ha): give up the virtual IP and stop ProxySQL, so that
# the next MASTER action starts it on the file it copied.
#   ucarp-down.sh IFACE VIP STOP_COMMAND...
iface=$1 vip=$2
shift 2
ip addr del "$vip/32" dev "$iface"
exec "$@"

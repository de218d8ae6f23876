#!/bin/sh
# The classic recipe's devd action on MASTER (a faithful baseline for the
# benchmark, not part of proxysql-ha): take the newest file by mtime, copy it
# over the datadir's database, chown it and start ProxySQL. No validation.
#   restore.sh INBOX DATADIR OWNER START_COMMAND...
set -e
inbox=$1 datadir=$2 owner=$3
shift 3
newest=$(ls -t "$inbox"/*.db | head -n 1)
cp "$newest" "$datadir/proxysql.db"
chown "$owner" "$datadir/proxysql.db"
"$@"

#!/bin/sh
# The classic recipe's cron job (a faithful baseline for the benchmark, not part
# of proxysql-ha): every minute, back up ProxySQL's database with the sqlite3
# shell and copy it to the standby with scp. No settle window, no verification.
#   backup.sh DB OUTDIR IDENTITY KNOWN_HOSTS PORT USER HOST REMOTE_DIR [CONTROL_PATH]
# CONTROL_PATH (the benchmark's warm row): scp over a multiplexed SSH connection,
# with the ControlMaster options proxysql-ha's own shipping uses.
set -e
db=$1 out=$2 key=$3 known=$4 port=$5 user=$6 host=$7 remote=$8 control=${9:-}
file="$out/proxysql-$(date +%Y%m%d%H%M%S%N).db"
sqlite3 "$db" ".backup '$file'"
if [ -n "$control" ]; then
    set -- -o ControlMaster=auto -o "ControlPath=$control" -o ControlPersist=60
else
    set --
fi
scp -O -q -B -i "$key" -o UserKnownHostsFile="$known" -o StrictHostKeyChecking=yes "$@" \
    -P "$port" "$file" "$user@$host:$remote/"

# Shared by start.sh, stop.sh and status.sh: where the local cluster keeps its state.
#   LIT_VERBREC_SLURM_DIR   state folder (configs, keys, spool, database, logs, pid files)
# One cluster per machine: the daemons listen on fixed loopback ports (6817-6819, MariaDB 13306).
STATE=${LIT_VERBREC_SLURM_DIR:-/tmp/lit_verbrec-slurm}
CLUSTER=litverbrec
DB_PORT=13306
DB_PASS=litverbrec-local
MUNGE_SOCKET=$STATE/munge/munge.socket.2
export SLURM_CONF=$STATE/slurm.conf
DAEMONS="slurmd slurmctld slurmdbd mariadb munged"   # stop order; start is the reverse

pid_file() {  # MariaDB runs as user mysql and can only write inside its own folder
    [[ $1 == mariadb ]] && echo "$STATE/mysql/mariadb.pid" || echo "$STATE/$1.pid"
}

pid_of() {  # the pid in the daemon's pid file if that process is alive, else nothing
    local file; file=$(pid_file "$1")
    [[ -s $file ]] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
    return 0
}

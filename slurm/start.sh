#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost: munge, MariaDB, slurmdbd (so `sacct` and
# submitit see job states), slurmctld and slurmd, each with a pid file in the state folder.
# Idempotent: daemons already running are left alone. Prints the line clients need:
#     export SLURM_CONF=<state>/slurm.conf
# Usage: slurm/start.sh            (state in $LIT_VERBREC_SLURM_DIR, default /tmp/lit_verbrec-slurm)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh"
bash "$HERE/install.sh"

mkdir -p "$STATE"/{log,ctld,spool}
chmod 755 "$STATE"
mkdir -p -m 755 "$STATE/munge"   # munge refuses a socket folder that others can write to

wait_for() {  # wait_for <what> <seconds> <command...>: poll until the command succeeds
    local what=$1 seconds=$2; shift 2
    for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "slurm/start.sh: $what did not come up in ${seconds}s; see $STATE/log/" >&2
    exit 1
}

# --- munge: authentication of every Slurm message -------------------------------------------
if [[ -z $(pid_of munged) ]]; then
    [[ -s $STATE/munge/munge.key ]] || { dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none; }
    chown -R munge:munge "$STATE/munge"; chmod 400 "$STATE/munge/munge.key"
    munged --force --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/seed"
    wait_for munged 10 test -S "$MUNGE_SOCKET"
fi

# --- MariaDB for slurmdbd, as user mysql in a folder it owns, loopback only -----------------
if [[ -z $(pid_of mariadb) ]]; then
    if [[ ! -d $STATE/mysql/mysql ]]; then
        mkdir -p "$STATE/mysql" && chown mysql:mysql "$STATE/mysql"
        mysql_install_db --user=mysql --datadir="$STATE/mysql" --skip-test-db >"$STATE/log/mariadb-init.log" 2>&1
    fi
    setsid mariadbd --user=mysql --datadir="$STATE/mysql" --socket="$STATE/mysql/mysqld.sock" \
        --port=$DB_PORT --bind-address=127.0.0.1 --pid-file="$STATE/mysql/mariadb.pid" \
        --log-error="$STATE/mysql/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for MariaDB 30 mariadb --socket="$STATE/mysql/mysqld.sock" -u root -e "SELECT 1"
    mariadb --socket="$STATE/mysql/mysqld.sock" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
fi

# --- configs (rewritten on every start; FirstJobId from the clock so that ids never repeat) --
cpus=$(getconf _NPROCESSORS_ONLN)   # not nproc: it honours OMP_NUM_THREADS
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
sed -e "s|@STATE@|$STATE|g" -e "s|@MUNGE@|$MUNGE_SOCKET|g" -e "s|@CLUSTER@|$CLUSTER|g" \
    -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem_mb|g" -e "s|@FIRSTJOBID@|$(( $(date +%s) % 60000000 + 1000 ))|g" \
    "$HERE/slurm.conf.in" >"$STATE/slurm.conf"
sed -e "s|@STATE@|$STATE|g" -e "s|@MUNGE@|$MUNGE_SOCKET|g" -e "s|@DB_PORT@|$DB_PORT|g" \
    -e "s|@DB_PASS@|$DB_PASS|g" "$HERE/slurmdbd.conf.in" >"$STATE/slurmdbd.conf"
chmod 600 "$STATE/slurmdbd.conf"

# --- Slurm daemons (each forks into the background and writes its pid file) ----------------
if [[ -z $(pid_of slurmdbd) ]]; then
    slurmdbd   # reads slurmdbd.conf beside $SLURM_CONF
    wait_for slurmdbd 30 sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true   # already there after the first start
fi
if [[ -z $(pid_of slurmctld) ]]; then
    slurmctld -f "$STATE/slurm.conf"
    wait_for slurmctld 30 scontrol ping
fi
started_slurmd=0
if [[ -z $(pid_of slurmd) ]]; then
    slurmd -f "$STATE/slurm.conf" -N localhost
    started_slurmd=1
fi
# A node left DOWN by an earlier unclean stop comes back with ReturnToService=2; make sure.
wait_for "node localhost" 30 bash -c "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'" \
    || true
scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
wait_for "node localhost" 30 bash -c "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'"

# Jobs the saved state says are running, while no slurmstepd runs on this machine, lost their
# processes with the daemons (a killed shell, a container restart). Left alone they would hold
# the node's CPUs forever; treat them as Slurm treats the jobs of a failed node: requeue them
# (a preemption-safe stage resumes from its checkpoint), or cancel those that refuse a requeue.
live_step_daemons() { ps -eo stat=,comm= | awk '$2 == "slurmstepd" && $1 !~ /^Z/' | wc -l; }   # not zombies
if (( started_slurmd )) && (( $(live_step_daemons) == 0 )); then
    orphans=$(squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %A)
    for job in $orphans; do
        if scontrol requeue "$job" 2>/dev/null; then
            echo "slurm/start.sh: job $job lost its processes when the cluster last stopped; requeued" >&2
        else
            scancel "$job" && echo "slurm/start.sh: job $job lost its processes when the cluster last stopped; cancelled (not requeueable)" >&2
        fi
    done
    # They pass through COMPLETING first; return with the node free.
    [[ -n $orphans ]] && wait_for "the node to be released by requeued jobs" 60 \
        bash -c '[[ -z $(squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %A) ]]'
fi
echo "export SLURM_CONF=$SLURM_CONF"

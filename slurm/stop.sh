#!/usr/bin/env bash
# Stop the daemons slurm/start.sh started (by their pid files in the state folder), and only
# those. The state (job accounting database, keys) stays for the next start; delete the
# state folder to forget it.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh"
for daemon in $DAEMONS; do
    pid=$(pid_of "$daemon")
    [[ -z $pid ]] && continue
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { echo "slurm/stop.sh: $daemon ($pid) ignored SIGTERM; sending SIGKILL" >&2; kill -9 "$pid"; }
    rm -f "$(pid_file "$daemon")"
done
exit 0

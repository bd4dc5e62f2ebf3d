#!/usr/bin/env bash
# Exit 0 if every daemon slurm/start.sh starts is running (by its pid file), else 1; print which.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/common.sh"
down=""
for daemon in $DAEMONS; do [[ -n $(pid_of "$daemon") ]] || down="$down $daemon"; done
if [[ -n $down ]]; then echo "not running:$down"; exit 1; fi
echo "running (state in $STATE); export SLURM_CONF=$SLURM_CONF"

#!/usr/bin/env bash
# Install the Debian packages of a single-node Slurm cluster with accounting (needs root).
# Nothing is started: apt here does not start daemons (policy-rc.d), start.sh does.
set -euo pipefail
PACKAGES="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
missing=$(for p in $PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
[[ -z $missing ]] && exit 0
if [[ $(id -u) != 0 ]]; then
    echo "slurm/install.sh: missing packages ($missing) and not root; install them with: sudo apt-get install $missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
echo "slurm/install.sh: installed $missing"

#!/usr/bin/env bash
# One-machine SLURM cluster for CI and local tests of the workflow's HPC path (profiles/slurm).
#
# Run as root on Debian 12 (no systemd needed): installs slurm-wlm and munge, writes a minimal
# /etc/slurm/slurm.conf (this host is controller and only compute node, one default partition),
# starts munged, slurmctld and slurmd, and waits until `sinfo` shows the node ready.
# Idempotent: a second run keeps running daemons whose configuration is unchanged and restarts
# only what is needed. Jobs run as the submitting user on this machine, on the same filesystem.
#
# Environment (all optional):
#   SLURM_SETUP_PARTITION   name of the default partition (default: debug)
#   SLURM_SETUP_TIMEOUT     seconds to wait for the node to become ready (default: 60)
#   SLURM_SETUP_MEM_MARGIN  MiB of the machine's memory kept out of SLURM (default: max(512, 10 %))
set -euo pipefail

PARTITION="${SLURM_SETUP_PARTITION:-debug}"
TIMEOUT="${SLURM_SETUP_TIMEOUT:-60}"
CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm

die() { echo "ci/slurm/setup.sh: error: $*" >&2; exit 1; }
say() { echo "ci/slurm/setup.sh: $*"; }

[[ $EUID -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"

# --- packages ------------------------------------------------------------------------------
need_install=0
for exe in slurmctld slurmd sbatch sinfo squeue scontrol munged mungekey munge unmunge; do
    command -v "$exe" >/dev/null || need_install=1
done
if [[ $need_install -eq 1 ]]; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    # Keep apt from starting the daemons itself (it would fail without a slurm.conf, or fight
    # with the ones started below): a policy-rc.d that denies service starts, only for apt.
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt_log=$(mktemp)
    apt_ok=1
    { apt-get -qq update &&
      apt-get -qq install -y --no-install-recommends slurm-wlm munge; } >"$apt_log" 2>&1 || apt_ok=0
    [[ $created_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $apt_ok -ne 1 ]]; then
        tail -n 20 "$apt_log" >&2
        die "apt-get install slurm-wlm munge failed (output above)"
    fi
    rm -f "$apt_log"
    for exe in slurmctld slurmd sbatch sinfo squeue scontrol munged mungekey; do
        command -v "$exe" >/dev/null || die "$exe missing after installing slurm-wlm munge"
    done
fi
# Debian's munge package creates the user; a manual install may not have it.
id munge >/dev/null 2>&1 || die "user 'munge' does not exist (the munge package should create it)"

# --- munge -----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key || die "mungekey failed"
fi
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    # --force: a stale socket or pid file left by an earlier, killed munged is not fatal.
    runuser -u munge -- /usr/sbin/munged --force || die "munged failed to start (see /var/log/munge/munged.log)"
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null 2>&1 || die "munge credentials do not round-trip (munge -n | unmunge)"
fi

# --- slurm.conf ------------------------------------------------------------------------------
HOST=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
[[ -n $HOST ]] || die "hostname -s is empty"
CPUS=$(nproc --all)
TOTAL_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)  # as free -m, without procps
[[ $CPUS =~ ^[0-9]+$ && $TOTAL_MB =~ ^[0-9]+$ ]] || die "could not read CPUs ($CPUS) or memory ($TOTAL_MB MiB)"
MARGIN_MB=${SLURM_SETUP_MEM_MARGIN:-$(( TOTAL_MB / 10 > 512 ? TOTAL_MB / 10 : 512 ))}
REAL_MB=$(( TOTAL_MB - MARGIN_MB ))
(( REAL_MB >= 256 )) || die "only $TOTAL_MB MiB of memory: too little for a SLURM node"
# Default memory of a job that asks for none (CR_Core_Memory would otherwise give it the node).
DEF_MEM=$(( REAL_MB / CPUS ))

install -d -m 0755 /etc/slurm "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by cryopipe ci/slurm/setup.sh: one host that is controller and only compute node.
ClusterName=cryopipe
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for an hour: Snakemake's SLURM plugin checks job states
# with squeue when there is no accounting database (it wants MinJobAge >= 3x its first check).
MinJobAge=3600
# A node that was down comes back by itself when its slurmd registers with a valid config.
ReturnToService=2
# Trust slurm.conf's CPU count and memory over what slurmd detects (VMs, containers, cgroups).
SlurmdParameters=config_overrides
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${REAL_MB} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE DefMemPerCPU=${DEF_MEM} State=UP
EOF

conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
    say "wrote $CONF (node $HOST: $CPUS CPUs, $REAL_MB MiB; partition $PARTITION)"
fi

# --- daemons ---------------------------------------------------------------------------------
daemon_pid() {  # pid of a running daemon from its pid file, or nothing
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && echo "$pid"
    return 0
}

stop_daemon() {  # stop the daemon of a pid file (started by an earlier run of this script)
    local pid
    pid=$(daemon_pid "$1" "$2")
    [[ -n $pid ]] || return 0
    say "restarting $2 (configuration changed)"
    kill "$pid"
    for _ in $(seq 40); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.25
    done
    die "$2 (pid $pid) did not stop"
}

if [[ $conf_changed -eq 1 ]]; then
    stop_daemon /run/slurmd.pid slurmd
    stop_daemon /run/slurmctld.pid slurmctld
fi

if [[ -z $(daemon_pid /run/slurmctld.pid slurmctld) ]]; then
    say "starting slurmctld"
    slurmctld || die "slurmctld failed to start: $(tail -n 5 $LOGDIR/slurmctld.log 2>/dev/null)"
fi
for _ in $(seq 40); do
    scontrol ping 2>/dev/null | grep -q "is UP" && break
    sleep 0.5
done
scontrol ping 2>/dev/null | grep -q "is UP" ||
    die "slurmctld does not answer 'scontrol ping': $(tail -n 5 $LOGDIR/slurmctld.log 2>/dev/null)"

if [[ -z $(daemon_pid /run/slurmd.pid slurmd) ]]; then
    say "starting slurmd"
    slurmd || die "slurmd failed to start: $(tail -n 5 $LOGDIR/slurmd.log 2>/dev/null)"
fi

# --- wait for the node -------------------------------------------------------------------------
node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n 1; }
resumed=0
state=""
deadline=$(( SECONDS + TIMEOUT ))
while (( SECONDS < deadline )); do
    state=$(node_state)
    case $state in
        idle|mixed|allocated|completing) break ;;
        drained|draining|down|down\*|drained\*|fail|failing)
            # Left over from an earlier configuration: put it back into service once.
            if [[ $resumed -eq 0 ]]; then
                scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    sleep 1
done
case $state in
    idle|mixed|allocated|completing) ;;
    *) die "node $HOST not ready after ${TIMEOUT}s (state '${state:-none}'; reason: $(sinfo -h -R -o '%E' 2>/dev/null | head -n 1)); see $LOGDIR/slurmd.log and $LOGDIR/slurmctld.log" ;;
esac

say "SLURM ready: cluster cryopipe, node $HOST $state, $CPUS CPUs, $REAL_MB MiB, partition $PARTITION (default), MinJobAge 3600 s, no accounting"

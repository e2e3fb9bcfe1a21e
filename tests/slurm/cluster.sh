#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, with job accounting (slurmdbd + MariaDB) and two
# fake GPUs, for the integration tests. Needs root and Debian/Ubuntu (apt) for `install`.
#
#   tests/slurm/cluster.sh install        apt-get install slurm-wlm slurmdbd munge mariadb-server (once)
#   tests/slurm/cluster.sh start DIR      write configs under DIR, start the daemons, print `export SLURM_CONF=...`
#   tests/slurm/cluster.sh stop DIR       stop exactly the daemons `start DIR` started (PIDs in DIR/pids)
#
# Partitions: `cpu` (default) and `gpu`, both on this node; the node has gres gpu:2 backed by
# character devices cloned from /dev/null. Clients find the cluster through SLURM_CONF=DIR/slurm.conf.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
ACCOUNT=genembed

STARTING=0
die() {
    echo "cluster.sh: $*" >&2
    if [ $STARTING = 1 ]; then STARTING=0; stop >&2; fi  # leave nothing running after a failed start
    exit 1
}

install_packages() {
    local missing=()
    for bin in slurmctld slurmd slurmdbd munged mariadbd sacct; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "not root: cannot install ${PACKAGES[*]}"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: cannot install ${PACKAGES[*]}"
    # keep apt from starting the services itself (there may be no systemd); restore what was there
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" >/dev/null; } \
        || { [ $created = 1 ] && rm -f "$policy"; die "apt-get install ${PACKAGES[*]} failed"; }
    [ $created = 1 ] && rm -f "$policy"
    return 0
}

# run "$@" in the background in its own session, record its PID
spawn() {
    local name=$1; shift
    setsid "$@" >"$DIR/log/$name.out" 2>&1 < /dev/null &
    echo "$! $name" >>"$DIR/pids"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up within ${seconds}s (logs in $DIR/log)"
}

write_configs() {
    local host mem
    host=$(hostname -s)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem - 1024))
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
    mkdir -p "$DIR"/{ctld,spool,log,dev,mysql,run}
    for i in 0 1; do [ -e "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3; done
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=genembed-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MailProg=/bin/true
MinJobAge=300
SchedulerParameters=sched_interval=1
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    echo "NodeName=$host Name=gpu File=$DIR/dev/gpu[0-1]" >"$DIR/gres.conf"
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=genembed-test
EOF
    chmod 600 "$DIR/slurmdbd.conf"
}

start() {
    [ "$(id -u)" = 0 ] || die "not root: the daemons need root"
    install_packages
    [ -s "$DIR/pids" ] && die "$DIR/pids exists: stop that cluster first (cluster.sh stop $DIR)"
    for daemon in slurmctld slurmd slurmdbd; do
        pgrep -x "$daemon" >/dev/null && die "a $daemon is already running on this machine; not starting a second"
    done
    mkdir -p "$DIR/log"
    : >"$DIR/pids"
    STARTING=1
    write_configs
    export SLURM_CONF="$DIR/slurm.conf"
    # Job steps do not see SLURM_CONF (Snakemake's job-step plugin clears SLURM_* variables), so the
    # config must also be where every SLURM command looks by default: link it there, if that is free.
    mkdir -p /etc/slurm
    for f in slurm.conf gres.conf; do
        if [ -e "/etc/slurm/$f" ] || [ -L "/etc/slurm/$f" ]; then
            [ "$(readlink "/etc/slurm/$f")" = "$DIR/$f" ] || die "/etc/slurm/$f exists and is not ours; not replacing it"
        else
            ln -s "$DIR/$f" "/etc/slurm/$f"
        fi
        echo "/etc/slurm/$f" >>"$DIR/links"
    done

    if ! munge -n >/dev/null 2>&1; then  # use a running munged if there is one
        [ -s /etc/munge/munge.key ] || die "no /etc/munge/munge.key (install munge)"
        install -d -o munge -g munge -m 0755 /run/munge
        spawn munged runuser -u munge -- munged --foreground
        wait_for 10 munged munge -n
    fi

    # MariaDB with its own data folder, on the default socket slurmdbd connects to
    [ -e /run/mysqld/mysqld.sock ] && die "a MariaDB already listens on /run/mysqld/mysqld.sock"
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            >"$DIR/log/mariadb-install.out" 2>&1 || die "mariadb-install-db failed (see $DIR/log)"
    fi
    # as root: the state folder may be private to root (pytest's tmp folders are)
    install -d /run/mysqld
    spawn mariadbd mariadbd --user=root --datadir="$DIR/mysql" --skip-networking \
        --socket=/run/mysqld/mysqld.sock --pid-file="$DIR/mysql/mariadbd.pid" --log-error="$DIR/mysql/mariadbd.log"
    wait_for 30 mariadbd mariadb -e "select 1"
    mariadb -e "create database if not exists slurm_acct_db;
        create user if not exists 'slurm'@'localhost' identified by 'genembed-test';
        grant all on slurm_acct_db.* to 'slurm'@'localhost';"

    spawn slurmdbd slurmdbd -D
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster genembed-test >/dev/null 2>&1 || true
    sacctmgr -i add account "$ACCOUNT" cluster=genembed-test >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" account="$ACCOUNT" cluster=genembed-test >/dev/null 2>&1 || true

    spawn slurmctld slurmctld -D -i
    wait_for 30 slurmctld scontrol ping
    spawn slurmd slurmd -D -N "$(hostname -s)"
    wait_for 30 "the node" sh -c "sinfo -h -N -o %t | grep -qx idle || { scontrol update nodename=$(hostname -s) state=resume; false; }"
    STARTING=0
    echo "export SLURM_CONF=$DIR/slurm.conf  # account: $ACCOUNT"
}

stop() {
    [ -f "$DIR/pids" ] || { echo "cluster.sh: nothing started under $DIR"; return 0; }
    # reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged
    tac "$DIR/pids" | while read -r pid name; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
        fi
        [ "$name" = mariadbd ] && rm -f /run/mysqld/mysqld.sock
        echo "stopped $name ($pid)"
    done
    rm -f "$DIR/pids"
    if [ -f "$DIR/links" ]; then  # remove the /etc/slurm links start made, if they still point here
        while read -r link; do
            [ "$(readlink "$link")" = "$DIR/$(basename "$link")" ] && rm -f "$link"
        done <"$DIR/links"
        rm -f "$DIR/links"
    fi
}

cmd=${1:-}
case "$cmd" in
    install) install_packages ;;
    start|stop)
        [ $# -eq 2 ] || die "usage: cluster.sh $cmd DIR"
        mkdir -p "$2"
        DIR=$(cd "$2" && pwd)
        "$cmd" ;;
    *) die "usage: cluster.sh install | start DIR | stop DIR" ;;
esac

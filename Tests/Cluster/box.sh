#!/usr/bin/env bash
# A Slurm cluster inside this machine, for tests: network namespaces as nodes on a private subnet that exists only
# in them, veth links capped with `tc tbf`, one munged, slurmctld, and one slurmd per node (Debian's Slurm 22.05).
#
#   source Tests/Cluster/box.sh        # inside `unshare --pid --fork --kill-child --mount-proc --mount` (see below)
#   box_up 2 10gbit                    # 2 nodes, each link capped at 10 Gbit/s each way
#   box_client sbatch ...              # Slurm clients reach the controller through the hub namespace
#   box_down                           # stops the daemons and deletes the namespaces (box_up registers it too)
#   bash Tests/Cluster/box.sh check    # prints why the box cannot start here, or nothing
#
# Layout: namespace srt-hub holds the bridge (10.231.0.1, the controller's address) and one veth per node;
# srt-nI holds eth0 (10.231.0.1I). Every daemon runs with its own host name (UTS namespace) and sees a hosts file
# that names them all, bind-mounted over /etc/hosts, with an empty resolv.conf: no name is ever looked up outside.
#
# Tear-down is guaranteed by where it runs: the caller starts the tests as PID 1 of a new PID namespace with a
# private mount namespace. When that process ends, however it ends, the kernel kills every daemon in the PID
# namespace, and the namespaces' bind mounts under /run/netns vanish with the mount namespace, so no daemon,
# namespace or link outlives the test. box_down does the same in order and waits for it.
set -euo pipefail

BOX_SUBNET=10.231.0
BOX_PORTS=(16817 16818)  # slurmctld, slurmd: away from a real Slurm's 6817/6818

box_check() {
  [ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, Slurm daemons)"; return 1; }
  local c
  for c in ip tc unshare nsenter slurmctld slurmd sbatch munged runuser; do
    command -v "$c" >/dev/null || { echo "$c is not installed"; return 1; }
  done
  ip netns add srt-probe-$$ 2>/dev/null || { echo "cannot create network namespaces here"; return 1; }
  ip netns del srt-probe-$$
  # The fixed subnet and ports: one box per machine at a time.
  if ip -br addr 2>/dev/null | grep -q "$BOX_SUBNET\."; then echo "$BOX_SUBNET.0/24 is in use here"; return 1; fi
}

# box_up NODES RATE: brings the cluster up; BOX is its directory, BOX_NODES the node names, SLURM_CONF exported.
box_up() {
  local nodes=$1 node
  box_net_up "$@"

  # munge: one daemon serves every node (its socket is a path, and paths are shared).
  mkdir -p "$BOX/munge"
  dd if=/dev/urandom of="$BOX/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$BOX/munge"
  chmod 711 "$BOX/munge"
  chmod 400 "$BOX/munge/munge.key"
  runuser -u munge -- munged --socket="$BOX/munge/munge.socket" --key-file="$BOX/munge/munge.key" \
    --pid-file="$BOX/munge/munged.pid" --log-file="$BOX/munge/munged.log" --seed-file="$BOX/munge/munged.seed"

  write_slurm_conf "$nodes"
  mkdir -p "$BOX/ctld"
  for node in "${BOX_NODES[@]}"; do mkdir -p "$BOX/spool/$node" "$BOX/tmp/$node"; done
  in_node srt-hub srtctl slurmctld -D -i -f "$SLURM_CONF" >"$BOX/slurmctld.out" 2>&1 &
  for node in "${BOX_NODES[@]}"; do
    in_node "$node" "$node" slurmd -D -N "$node" -f "$SLURM_CONF" >"$BOX/slurmd-$node.out" 2>&1 &
  done
  # Every node idle within 20 s.
  local idle=0 _
  for _ in $(seq 1 200); do
    idle=$(box_client sinfo -h -N -o "%N %t" 2>/dev/null | grep -c " idle" || true)
    [ "$idle" -eq "$nodes" ] && break
    sleep 0.1
  done
  if [ "$idle" -ne "$nodes" ]; then
    box_client sinfo -N 2>&1 || true
    tail -5 "$BOX"/*.log "$BOX"/*.out 2>/dev/null || true
    echo "box: $idle of $nodes nodes came up" >&2
    return 1
  fi
}

# box_net_up NODES RATE: only the nodes and their capped links (no Slurm): what `bench scale` needs.
box_net_up() {
  local nodes=$1 rate=$2 i node
  BOX=$(mktemp -d /tmp/sertrain-box-XXXXXX)
  chmod 755 "$BOX"
  BOX_NODES=()
  for i in $(seq 1 "$nodes"); do BOX_NODES+=("srt-n$i"); done
  export SLURM_CONF=$BOX/slurm.conf

  # Names: a hosts file for everything started from here, and no DNS server to ask.
  { cat /etc/hosts; echo "$BOX_SUBNET.1 srtctl"; for i in $(seq 1 "$nodes"); do echo "$BOX_SUBNET.1$i srt-n$i"; done; } \
    >"$BOX/hosts"
  : >"$BOX/resolv.conf"
  mount --bind "$BOX/hosts" /etc/hosts
  mount --bind "$BOX/resolv.conf" /etc/resolv.conf

  # The network: a bridge in the hub, a capped veth pair per node.
  ip netns add srt-hub
  ip -n srt-hub link set lo up
  ip -n srt-hub link add br0 type bridge
  ip -n srt-hub addr add "$BOX_SUBNET.1/24" dev br0
  ip -n srt-hub link set br0 up
  local bytes burst
  bytes=$(rate_bytes "$rate")
  burst=$((bytes / 100 > 65536 ? bytes / 100 : 65536))  # 10 ms at the rate
  for i in $(seq 1 "$nodes"); do
    node=srt-n$i
    ip netns add "$node"
    ip -n "$node" link set lo up
    ip -n srt-hub link add "hv$i" type veth peer name eth0 netns "$node"
    ip -n srt-hub link set "hv$i" master br0 up
    ip -n "$node" addr add "$BOX_SUBNET.1$i/24" dev eth0
    ip -n "$node" link set eth0 up
    # Both directions: the hub side shapes what reaches the node, the node side what leaves it.
    tc -n srt-hub qdisc add dev "hv$i" root tbf rate "$rate" burst "$burst" latency 50ms
    tc -n "$node" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
  done

}

# box_mpi_agent: writes $BOX/agent, an rsh agent for mpirun (--mca plm_rsh_agent $BOX/agent): HOST COMMAND... runs
# COMMAND in HOST's network namespace under HOST as its host name (for box_net_up's nodes, which have no daemons).
box_mpi_agent() {
  cat >"$BOX/agent" <<'AGENT'
#!/bin/sh
host=$1
shift
exec ip netns exec "$host" unshare --uts -- sh -c 'hostname "$0" && exec sh -c "$1"' "$host" "$*"
AGENT
  chmod +x "$BOX/agent"
}

# box_set_rate RATE: caps every link at another rate.
box_set_rate() {
  local bytes burst i
  bytes=$(rate_bytes "$1")
  burst=$((bytes / 100 > 65536 ? bytes / 100 : 65536))
  for i in $(seq 1 ${#BOX_NODES[@]}); do
    tc -n srt-hub qdisc change dev "hv$i" root tbf rate "$1" burst "$burst" latency 50ms
    tc -n "srt-n$i" qdisc change dev eth0 root tbf rate "$1" burst "$burst" latency 50ms
  done
}

box_down() {
  [ -n "${BOX:-}" ] || return 0
  local node _
  pkill -f -- "-f $SLURM_CONF" 2>/dev/null || true
  [ -f "$BOX/munge/munged.pid" ] && kill "$(cat "$BOX/munge/munged.pid")" 2>/dev/null
  for _ in $(seq 1 50); do pgrep -f -- "-f $SLURM_CONF" >/dev/null || break; sleep 0.1; done
  pkill -9 -f -- "-f $SLURM_CONF" 2>/dev/null || true
  for node in "${BOX_NODES[@]}" srt-hub; do ip netns del "$node" 2>/dev/null || true; done
  umount /etc/resolv.conf /etc/hosts 2>/dev/null || true
  rm -rf "$BOX"
  BOX=
}

# in_node NS HOSTNAME COMMAND...: runs a command in a node's network namespace under its own host name.
in_node() {
  local ns=$1 name=$2
  shift 2
  # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
  nsenter --net="/run/netns/$ns" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}

# Slurm's clients reach the controller on the test subnet, from the hub.
box_client() { nsenter --net=/run/netns/srt-hub "$@"; }

# Bytes sent plus received over every node's link (the hub sides of the veth pairs).
box_link_bytes() {
  local total=0 i rx tx
  for i in $(seq 1 ${#BOX_NODES[@]}); do
    rx=$(ip netns exec srt-hub cat "/sys/class/net/hv$i/statistics/rx_bytes")
    tx=$(ip netns exec srt-hub cat "/sys/class/net/hv$i/statistics/tx_bytes")
    total=$((total + rx + tx))
  done
  echo "$total"
}

rate_bytes() {
  local r=$1 n
  n=${r%%[a-z]*}
  case "$r" in
    *gbit) echo $((n * 125000000)) ;;
    *mbit) echo $((n * 125000)) ;;
    *) echo "box: a rate is Ngbit or Nmbit, not $r" >&2; return 1 ;;
  esac
}

write_slurm_conf() {
  local nodes=$1 i
  cat >"$SLURM_CONF" <<CONF
ClusterName=srtbox
SlurmctldHost=srtctl($BOX_SUBNET.1)
SlurmctldPort=${BOX_PORTS[0]}
SlurmdPort=${BOX_PORTS[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$BOX/munge/munge.socket,cred_expire=5
StateSaveLocation=$BOX/ctld
SlurmdSpoolDir=$BOX/spool/%n
SlurmctldPidFile=$BOX/slurmctld.pid
SlurmdPidFile=$BOX/slurmd-%n.pid
SlurmctldLogFile=$BOX/slurmctld.log
SlurmdLogFile=$BOX/slurmd-%n.log
TmpFS=$BOX/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=60
MinJobAge=300
NodeName=DEFAULT CPUs=2 State=UNKNOWN
CONF
  for i in $(seq 1 "$nodes"); do echo "NodeName=srt-n$i NodeAddr=$BOX_SUBNET.1$i" >>"$SLURM_CONF"; done
  echo "PartitionName=box Nodes=srt-n[1-$nodes] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" \
    >>"$SLURM_CONF"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = check ]; then box_check; fi

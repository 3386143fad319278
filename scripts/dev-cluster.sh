#!/usr/bin/env bash
# Runs a local three-node Edge cluster on loopback with the flags of
# deploy/k8s/statefulset.yaml, the voters (bootstrap-expect 3, a join list
# naming all three admin addresses, --voters=3 --role=voter, a token file,
# the same raft timings), so
# what works here works in Kubernetes. deploy/manifests_test.go checks that
# the two flag sets agree.
#
#   scripts/dev-cluster.sh            start (or restart) the cluster; Ctrl-C stops it
#   scripts/dev-cluster.sh --reset    wipe the cluster's data first
#   scripts/dev-cluster.sh --restart N
#                                     (from another terminal) start node N again
#                                     after it stopped; the running script does it
#   scripts/dev-cluster.sh --print-args N
#                                     print node N's edged arguments, one per line
#
# Node N (1..3) listens on raft 127.0.0.1:70N0, admin 70N1, HTTP 808N,
# HTTPS 844N and metrics 909N. Data, logs, the admin token and the raft
# cluster key live under data/dev-cluster/. Running it again reuses the
# data: the nodes come back with their state and need no bootstrap.
#
# A node that exits (kill -9 one to rehearse a failover) stays stopped
# while the other two keep running; the script prints how to start it
# again (--restart N). Ctrl-C stops every node and exits with status 0.
#
# Environment: DEV_CLUSTER_DIR (data directory), DEV_CLUSTER_PORT_OFFSET
# (added to every port), EDGED and EDGECTL (binaries; default bin/, built
# with `make build` when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${DEV_CLUSTER_DIR:-$ROOT/data/dev-cluster}"
OFFSET="${DEV_CLUSTER_PORT_OFFSET:-0}"
EDGED="${EDGED:-$ROOT/bin/edged}"
EDGECTL="${EDGECTL:-$ROOT/bin/edgectl}"
NODES=(1 2 3)
LEADER_TIMEOUT=60 # seconds to wait for a leader
STOP_TIMEOUT=45   # seconds to wait for the nodes to stop before SIGKILL
RESTART_TIMEOUT=30 # seconds --restart waits for the node's admin port

die() { echo "dev-cluster: $*" >&2; exit 1; }

[[ "$OFFSET" =~ ^[0-9]+$ ]] && ((OFFSET <= 25000)) || die "DEV_CLUSTER_PORT_OFFSET must be a number from 0 to 25000"

raft_port() { echo $((7000 + 10 * $1 + OFFSET)); }
admin_port() { echo $((7001 + 10 * $1 + OFFSET)); }
http_port() { echo $((8080 + $1 + OFFSET)); }
https_port() { echo $((8440 + $1 + OFFSET)); }
metrics_port() { echo $((9090 + $1 + OFFSET)); }

admin_list() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(admin_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# node_args N prints node N's edged arguments, one per line. Everything but
# the addresses, IDs and paths is the StatefulSet's own values.
node_args() {
  local n=$1
  cat <<EOF
--id=node$n
--data-dir=$DIR/node$n
--raft-addr=127.0.0.1:$(raft_port "$n")
--raft-advertise=127.0.0.1:$(raft_port "$n")
--admin-addr=127.0.0.1:$(admin_port "$n")
--admin-advertise=127.0.0.1:$(admin_port "$n")
--http-addr=127.0.0.1:$(http_port "$n")
--https-addr=127.0.0.1:$(https_port "$n")
--metrics-addr=127.0.0.1:$(metrics_port "$n")
--bootstrap-expect=3
--join=$(admin_list)
--voters=3
--role=voter
--admin-token-file=$DIR/admin-token
--cluster-key-file=$DIR/cluster-key
--cache-size=536870912
--shutdown-grace=20s
--raft-heartbeat-timeout=300ms
--raft-election-timeout=300ms
--raft-leader-lease-timeout=150ms
--raft-commit-timeout=5ms
EOF
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The running script's PID, which --restart signals.
SUPERVISOR="$DIR/dev-cluster.pid"

# restart_node N asks the running script to start node N again (a file
# names the node, SIGUSR1 wakes the script) and waits for its admin port.
restart_node() {
  local n=$1 sup
  sup="$(cat "$SUPERVISOR" 2>/dev/null || true)"
  [[ -n "$sup" ]] && kill -0 "$sup" 2>/dev/null ||
    die "no dev cluster is running from $DIR (start one with $0)"
  ! listening "$(admin_port "$n")" || die "node$n is running (127.0.0.1:$(admin_port "$n") answers)"
  touch "$DIR/node$n/restart"
  kill -USR1 "$sup"
  local deadline=$((SECONDS + RESTART_TIMEOUT))
  until listening "$(admin_port "$n")"; do
    ((SECONDS < deadline)) || die "node$n does not listen on 127.0.0.1:$(admin_port "$n") after ${RESTART_TIMEOUT}s; see $DIR/node$n/edged.log"
    sleep 0.2
  done
  echo "dev-cluster: node$n is running again and rejoins with its data"
}

reset=0
case "${1:-}" in
  --print-args)
    [[ "${2:-}" =~ ^[123]$ ]] || die "usage: $0 --print-args 1|2|3"
    node_args "$2"
    exit 0
    ;;
  --restart)
    [[ "${2:-}" =~ ^[123]$ ]] || die "usage: $0 --restart 1|2|3"
    restart_node "$2"
    exit 0
    ;;
  --reset) reset=1 ;;
  "") ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (try --help)" ;;
esac

for n in "${NODES[@]}"; do
  for p in $(raft_port "$n") $(admin_port "$n") $(http_port "$n") $(https_port "$n") $(metrics_port "$n"); do
    if listening "$p"; then
      die "127.0.0.1:$p is in use: is a dev cluster already running? (stop it, or set DEV_CLUSTER_PORT_OFFSET)"
    fi
  done
done

if [[ ! -x "$EDGED" || ! -x "$EDGECTL" ]]; then
  echo "dev-cluster: building bin/edged and bin/edgectl"
  make -C "$ROOT" --no-print-directory build
fi

if ((reset)); then
  rm -rf "$DIR"
fi
mkdir -p "$DIR"

# The raft configuration stores addresses: the same data with other ports
# would point at nodes that are not there.
layout="ports offset $OFFSET"
if [[ -f "$DIR/layout" && "$(cat "$DIR/layout")" != "$layout" ]]; then
  die "$DIR was created with $(cat "$DIR/layout"), not $layout; run with --reset to start over"
fi
echo "$layout" >"$DIR/layout"

if [[ ! -s "$DIR/admin-token" ]]; then
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DIR/admin-token")
fi
# The raft port's credential (docs/security.md): only the three nodes read it.
if [[ ! -s "$DIR/cluster-key" ]]; then
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DIR/cluster-key")
fi

# pid[N] is node N's PID while the script knows it to be running.
pid=()
running() {
  local n out=()
  for n in "${NODES[@]}"; do [[ -n "${pid[$n]:-}" ]] && out+=("${pid[$n]}"); done
  echo "${out[@]}"
}
stop() {
  trap - INT TERM EXIT USR1
  rm -f "$SUPERVISOR"
  local pids
  read -ra pids <<<"$(running)"
  if ((${#pids[@]})); then
    echo "dev-cluster: stopping ${#pids[@]} nodes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT)) p
    for p in "${pids[@]}"; do
      while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
      if kill -0 "$p" 2>/dev/null; then
        echo "dev-cluster: node (pid $p) did not stop in ${STOP_TIMEOUT}s; killing it" >&2
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
    wait 2>/dev/null || true
  fi
  echo "dev-cluster: stopped (data kept in $DIR; --reset wipes it)"
  exit "${1:-0}"
}
# Ctrl-C (or SIGTERM) is how the cluster is meant to stop: status 0.
trap 'stop 0' INT TERM
trap 'stop $?' EXIT
echo $$ >"$SUPERVISOR"

start_node() {
  local n=$1 args
  mkdir -p "$DIR/node$n"
  rm -f "$DIR/node$n/restart"
  mapfile -t args < <(node_args "$n")
  "$EDGED" "${args[@]}" >>"$DIR/node$n/edged.log" 2>&1 &
  pid[n]=$!
}

for n in "${NODES[@]}"; do start_node "$n"; done

servers="$(admin_list)"
ctl=("$EDGECTL" --server "$servers" --token-file "$DIR/admin-token")
leader=""
deadline=$((SECONDS + LEADER_TIMEOUT))
while :; do
  for n in "${NODES[@]}"; do
    if ! kill -0 "${pid[$n]}" 2>/dev/null; then
      echo "dev-cluster: node$n exited; last lines of its log:" >&2
      tail -n 20 "$DIR/node$n/edged.log" >&2
      exit 1
    fi
  done
  status="$("${ctl[@]}" --timeout 2s cluster status -o json 2>/dev/null || true)"
  leader="$(sed -n 's/^ *"leader": *"\([^"]*\)".*/\1/p' <<<"$status" | head -n1)"
  [[ -n "$leader" ]] && break
  if ((SECONDS >= deadline)); then
    echo "dev-cluster: no leader after ${LEADER_TIMEOUT}s; logs are in $DIR/node*/edged.log" >&2
    exit 1
  fi
  sleep 0.5
done

# This script as another terminal calls it for this cluster.
self="$0"
[[ -n "${DEV_CLUSTER_PORT_OFFSET:-}" ]] && self="DEV_CLUSTER_PORT_OFFSET=$OFFSET $self"
[[ -n "${DEV_CLUSTER_DIR:-}" ]] && self="DEV_CLUSTER_DIR=$DIR $self"

"${ctl[@]}" cluster status || true
cat <<EOF

Edge dev cluster is up; the leader is $leader.
  export EDGECTL_SERVER=$servers
  export EDGECTL_TOKEN_FILE=$DIR/admin-token
  $EDGECTL cluster status
  $EDGECTL tenant add shop.localhost --origin http://127.0.0.1:3000
  curl -H 'Host: shop.localhost' http://127.0.0.1:$(http_port 1)/
HTTP:    $(for n in "${NODES[@]}"; do printf '127.0.0.1:%s ' "$(http_port "$n")"; done)
Metrics: $(for n in "${NODES[@]}"; do printf 'http://127.0.0.1:%s/metrics ' "$(metrics_port "$n")"; done)
Logs:    $DIR/node{1,2,3}/edged.log
PIDs:    $(for n in "${NODES[@]}"; do printf 'node%s=%s ' "$n" "${pid[$n]}"; done)
A node that exits stays stopped while the others keep running (kill -9 one
to rehearse a failover); start it again with: $self --restart N
Ctrl-C stops all three nodes.
EOF

# Supervise until Ctrl-C: report a node that exits, and start one again
# when --restart asks (SIGUSR1).
restart_requested=0
trap 'restart_requested=1' USR1
set +e
while :; do
  for n in "${NODES[@]}"; do
    [[ -n "${pid[$n]:-}" ]] || continue
    kill -0 "${pid[$n]}" 2>/dev/null && continue
    wait "${pid[$n]}"
    code=$?
    pid[n]=""
    others=()
    for m in "${NODES[@]}"; do [[ -n "${pid[$m]:-}" ]] && others+=("node$m"); done
    echo "dev-cluster: node$n exited (status $code; log $DIR/node$n/edged.log); ${#others[@]} node(s) keep running ${others[*]}" >&2
    echo "dev-cluster: restart node$n with: $self --restart $n" >&2
  done
  if ((restart_requested)); then
    restart_requested=0
    for n in "${NODES[@]}"; do
      [[ -f "$DIR/node$n/restart" ]] || continue
      if [[ -z "${pid[$n]:-}" ]]; then
        start_node "$n"
        echo "dev-cluster: node$n started again (pid ${pid[$n]})"
      fi
      rm -f "$DIR/node$n/restart"
    done
  fi
  # Polling, not wait -n: a USR1 that arrives just before wait -n would
  # wait for the next node to exit.
  sleep 0.5
done

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# "Hosts" for multi-host tests on one machine: network namespaces on a
# bridge, each with its own address and an sshd (Debian's openssh-server).
#
#   netns.sh up N DIR   create N namespaces, print one line per host:
#                       NAME ADDRESS NAMESPACE
#   netns.sh down DIR   stop every process in them, delete them and links
#
# Names carry a suffix derived from DIR (namespaces tg-SUFFIX-h1.., bridge
# tgbSUFFIX), so runs with different DIRs never collide. The subnet is a
# free 10.231.X.0/24: hosts are .1 to .N, the root namespace is .254 on
# the bridge (so test clients in the root namespace reach every host).
# Only addresses and links this script created are ever removed.
#
# ssh to a host with `ssh -F DIR/ssh_config NAME` (host names h1..hN), or
# `ssh -i DIR/id_ed25519 -o UserKnownHostsFile=DIR/known_hosts root@ADDRESS`;
# nothing under ~/.ssh is read or written. sshd's host key, the client key
# and the logs (DIR/sshd-hI.log) are under DIR.
#
# Exit status 77: this machine cannot run it (not root, namespaces refused
# by the kernel, or sshd missing); the message says why. A failed `up`
# undoes what it did.
set -Eeuo pipefail
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { usage_exit "netns.sh up N DIR | netns.sh down DIR"; }
[ $# -ge 2 ] || usage
cmd=$1
case $cmd in
up)
  [ $# -eq 3 ] || usage
  N=$2
  [[ $N =~ ^[1-9][0-9]?$ ]] && [ "$N" -le 50 ] ||
    { echo "netns.sh: N must be 1 to 50, got '$N'" >&2; exit 2; }
  mkdir -p "$3"
  DIR=$(cd "$3" && pwd)
  ;;
down)
  [ $# -eq 2 ] || usage
  [ -d "$2" ] || exit 0
  DIR=$(cd "$2" && pwd)
  ;;
*) usage ;;
esac

SFX=$(printf '%05x' $(($(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % 1048576)))
BRIDGE="tgb$SFX"
SSHD=/usr/sbin/sshd

ns_name() { echo "tg-$SFX-h$1"; }
veth_name() { echo "tg${SFX}h$1"; }

# Has namespace $1 no process left?
ns_empty() { [ -z "$(ip netns pids "$1" 2>/dev/null)" ]; }

down() {
  local ns pid
  # The namespaces this DIR's `up` created (recorded before each exists).
  if [ -f "$DIR/namespaces" ]; then
    while read -r ns; do
      if ip netns list | grep -qw "^$ns"; then
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
          kill "$pid" 2>/dev/null || true
        done
        wait_for 5 ns_empty "$ns" ||
          for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
          done
        ip netns delete "$ns" || true
      fi
    done <"$DIR/namespaces"
    rm -f "$DIR/namespaces"
  fi
  # Deleting a namespace deletes its veth end and so the pair; the bridge
  # is the one link left in the root namespace.
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE"
  fi
  rm -f "$DIR/hosts"
}

# A 10.231.X.0/24 no interface of the root namespace uses yet.
free_subnet() {
  local x used
  used=$(ip -4 -o addr show | awk '{print $4}')
  for x in $(seq $((0x$SFX % 250 + 1)) 254) $(seq 1 254); do
    if ! grep -q "^10\.231\.$x\." <<<"$used"; then
      echo "$x"
      return
    fi
  done
  echo "netns.sh: every 10.231.X.0/24 is in use" >&2
  return 1
}

ssh_ok() { # address
  ssh -F "$DIR/ssh_config" -o ConnectTimeout=2 "root@$1" true
}

up() {
  if [ "$(id -u)" != 0 ]; then
    echo "netns.sh: network namespaces need root (uid is $(id -u))" >&2
    exit 77
  fi
  if [ ! -x "$SSHD" ] || ! command -v ssh-keygen >/dev/null; then
    echo "netns.sh: $SSHD not found: install openssh-server (tests/setup.sh)" >&2
    exit 77
  fi
  if [ -f "$DIR/namespaces" ]; then
    echo "netns.sh: $DIR is in use (run 'netns.sh down $DIR' first)" >&2
    exit 1
  fi
  local probe="tg-$SFX-probe"
  if ! ip netns add "$probe" 2>"$DIR/probe.err"; then
    echo "netns.sh: the kernel refused a network namespace: $(cat "$DIR/probe.err")" >&2
    exit 77
  fi
  ip netns delete "$probe"
  trap 'echo "netns.sh: up failed; undoing it (logs under $DIR)" >&2; down' ERR
  trap 'echo "netns.sh: interrupted; undoing it" >&2; down; exit 1' INT TERM

  local x i ns veth addr
  x=$(free_subnet)
  ip link add "$BRIDGE" type bridge
  ip addr add "10.231.$x.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  rm -f "$DIR/host_key" "$DIR/host_key.pub" "$DIR/id_ed25519" "$DIR/id_ed25519.pub"
  ssh-keygen -q -t ed25519 -N '' -C tg-host -f "$DIR/host_key"
  ssh-keygen -q -t ed25519 -N '' -C tg-client -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  chmod 600 "$DIR/authorized_keys"
  : >"$DIR/known_hosts"
  : >"$DIR/hosts"
  cat >"$DIR/ssh_config" <<CONF
# Written by tests/cluster/netns.sh for the hosts under $DIR.
Host *
  User root
  IdentityFile $DIR/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CONF
  # sshd insists on its privilege separation directory (Debian's unit
  # creates it at boot).
  mkdir -p /run/sshd
  chmod 755 /run/sshd

  for i in $(seq 1 "$N"); do
    ns=$(ns_name "$i")
    veth=$(veth_name "$i")
    addr="10.231.$x.$i"
    echo "$ns" >>"$DIR/namespaces"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "10.231.$x.254"
    echo "$addr $(cut -d' ' -f1,2 "$DIR/host_key.pub")" >>"$DIR/known_hosts"
    printf 'Host h%s\n  HostName %s\n' "$i" "$addr" >>"$DIR/ssh_config"
    ip netns exec "$ns" "$SSHD" -f /dev/null -h "$DIR/host_key" \
      -o ListenAddress="$addr:22" -o PidFile="$DIR/sshd-h$i.pid" \
      -o AuthorizedKeysFile="$DIR/authorized_keys" -o StrictModes=no \
      -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
      -o KbdInteractiveAuthentication=no -o UsePAM=no \
      -o Subsystem="sftp internal-sftp" -E "$DIR/sshd-h$i.log"
    echo "h$i $addr $ns" >>"$DIR/hosts"
  done
  for i in $(seq 1 "$N"); do
    wait_for 10 ssh_ok "10.231.$x.$i" ||
      { echo "netns.sh: sshd on h$i (10.231.$x.$i) refused ssh for 10 s (see $DIR/sshd-h$i.log)" >&2; false; }
  done
  trap - ERR INT TERM
  cat "$DIR/hosts"
}

case $cmd in
up) up ;;
down) down ;;
esac

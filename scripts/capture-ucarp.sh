#!/usr/bin/env bash
# Capture real CARP adverts from Debian's ucarp, for the codec tests (tests/carp/data/).
#
#   scripts/capture-ucarp.sh [OUTDIR] [PHASE_SECONDS]   (root; needs iproute2, ucarp, tcpdump)
#
# Builds two network namespaces joined by a veth pair (documentation addresses
# only: 192.0.2.11 and 192.0.2.12, VIP 192.0.2.100), runs ucarp in each
# (vhid 42, password s3cret, advbase 1, advskew 0 and 100, preemption on, as
# in CARP.md "Testing against a real peer"), and records protocol 112 twice:
# on node a's veth (Ethernet link type) and on its "any" pseudo-device (Linux
# cooked SLL/SLL2). Three phases of PHASE_SECONDS: a is master; a is stopped
# and b takes over; a starts again and preempts b. So the capture holds both
# masters' adverts, b's last advert before stepping down, a few dozen in all. Every process started
# here is killed by pid and both namespaces are deleted on exit, on failure too.
set -euo pipefail

OUTDIR=${1:-tests/carp/data}
PHASE=${2:-10}
PREFIX="cap$$-"
NS_A="${PREFIX}a"
NS_B="${PREFIX}b"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT INT TERM

for tool in ip ucarp tcpdump; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "needs root" >&2; exit 1; }
mkdir -p "$OUTDIR"

cat >"$WORK/up.sh" <<'EOF'
#!/bin/sh
exec ip addr add "$2/24" dev "$1"
EOF
cat >"$WORK/down.sh" <<'EOF'
#!/bin/sh
exec ip addr del "$2/24" dev "$1"
EOF
chmod +x "$WORK/up.sh" "$WORK/down.sh"

ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "${PREFIX}va" type veth peer name "${PREFIX}vb"
ip link set "${PREFIX}va" netns "$NS_A"
ip link set "${PREFIX}vb" netns "$NS_B"
ip -n "$NS_A" link set "${PREFIX}va" name eth0
ip -n "$NS_B" link set "${PREFIX}vb" name eth0
ip -n "$NS_A" addr add 192.0.2.11/24 dev eth0
ip -n "$NS_B" addr add 192.0.2.12/24 dev eth0
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done

ip netns exec "$NS_A" tcpdump -i eth0 -U -w "$WORK/eth.pcap" 'ip proto 112' 2>"$WORK/tcpdump-eth.log" &
PIDS+=($!)
ip netns exec "$NS_A" tcpdump -i any -U -w "$WORK/any.pcap" 'ip proto 112' 2>"$WORK/tcpdump-any.log" &
PIDS+=($!)
sleep 1

start_ucarp() { # namespace srcip advskew
    ip netns exec "$1" ucarp -i eth0 -s "$2" -v 42 -p s3cret -a 192.0.2.100 -b 1 -k "$3" \
        -P -z -f none -u "$WORK/up.sh" -d "$WORK/down.sh" >>"$WORK/ucarp-$1.log" 2>&1 &
    PIDS+=($!)
}

start_ucarp "$NS_A" 192.0.2.11 0
A_PID=$!
start_ucarp "$NS_B" 192.0.2.12 100
sleep "$PHASE"
# Stop the master (a) so b takes over, then bring a back so it preempts.
kill "$A_PID"
sleep "$PHASE"
start_ucarp "$NS_A" 192.0.2.11 0
sleep "$PHASE"

# Stop the capture cleanly (SIGINT flushes) before the trap kills the rest.
kill -INT "${PIDS[0]}" "${PIDS[1]}" 2>/dev/null || true
sleep 0.5
cp "$WORK/eth.pcap" "$OUTDIR/ucarp-vhid42-eth.pcap"
cp "$WORK/any.pcap" "$OUTDIR/ucarp-vhid42-any.pcap"
cat "$WORK"/ucarp-*.log >&2 || true
echo "wrote $OUTDIR/ucarp-vhid42-eth.pcap and $OUTDIR/ucarp-vhid42-any.pcap" >&2

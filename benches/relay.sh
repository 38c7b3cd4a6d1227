#!/usr/bin/env bash
# A skylan root relaying at full load over real sockets: packets per second relayed,
# the root's CPU, and what it drops once the sources exceed their relay budget.
#
# What it does (needs root, iproute2, jq; installs nothing):
#   1. builds a throw-away lab of network namespaces, all named skr-<pid>-*: the
#      backbone bridge, the root, the controller, node b (the sink) and SOURCES nodes
#      (a and skr-<pid>-s2 ...), each on its own address on the bridge, all online;
#   2. stops b (SIGSTOP) once the root knows it: what the root relays to b lands in
#      b's socket buffer and is dropped by the kernel, so no receiver competes for CPU;
#   3. in each source's namespace, examples/relay_load sends 1,400-byte Data packets
#      from that source to b through the root, as fast as its socket takes them, for
#      the window; the root relays each source's packets within its budget
#      (RELAY_PER_SOURCE_PER_SEC) and counts the rest (drop_relay_rate);
#   4. prints the packets relayed per second, the root's CPU (% of one core), relayed
#      packets per CPU-second of the root (what one core does), and the drops.
#
# Everything it made is removed on exit, also on failure or Ctrl-C (a trap): it signals
# only the processes it started (by PID) and deletes only its own namespaces.
#
# Usage: benches/relay.sh [options]      (see --help)

set -Eeuo pipefail

SOURCES=6
WINDOW=10
KEEP=0
LOG_FILTER="${SKYLAN_LOG:-info}"

usage() {
    cat <<'EOF'
Usage: benches/relay.sh [options]

Sends relay traffic from several skylan nodes through a skylan root, between network
namespaces, and reports the root's relayed packets per second and per CPU-second.
Needs root, iproute2 and jq.

Options:
  -n, --sources N     sending nodes (default 6; each is held to the root's per-source
                      relay budget, so the root's total is at most N times it)
  -t, --seconds S     measurement window (default 10)
  -k, --keep          keep the temporary work directory with the logs
  -h, --help          this text

Environment:
  SKYLAN_BIN   the skylan binary (default: target/release/skylan, built if missing)
  LOAD_BIN     the sender (default: target/release/examples/relay_load, built if missing)
  SKYLAN_LOG   the daemons' log filter (default info)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        -n|--sources) SOURCES="${2:-}"; shift 2 ;;
        -t|--seconds) WINDOW="${2:-}"; shift 2 ;;
        -k|--keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "relay.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

LAB_NAME=relay.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab.sh"
is_uint "$SOURCES" && [ "$SOURCES" -ge 1 ] && [ "$SOURCES" -le 12 ] ||
    usage_error "--sources wants 1 to 12, got '$SOURCES'"
is_uint "$WINDOW" && [ "$WINDOW" -ge 2 ] || usage_error "--seconds wants at least 2, got '$WINDOW'"

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAP); run it with sudo"
for tool in ip jq timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool. Install with: apt-get install -y iproute2 jq"
done
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: skylan needs TUN/TAP (modprobe tun)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release_binary SKY SKYLAN_BIN "$REPO/target/release/skylan" --bin skylan
release_binary LOAD LOAD_BIN "$REPO/target/release/examples/relay_load" --example relay_load
CLK_TCK="$(getconf CLK_TCK)"

lab_begin skr

# The root's counters and CPU ticks, as "name value" lines.
snapshot() {
    local s
    s="$(cat "/proc/$PID_ROOT/stat")"
    s="${s##*) }"
    set -- $s
    printf "time %s\nticks %s\n" "$(date +%s.%N)" "$((${12} + ${13}))"
    udp_counters "$NS_ROOT"
    api_counters "$NS_ROOT" "$H_ROOT" skylan_root
}

echo "== skylan root relay: $SOURCES sources -> one sink through one root, ${WINDOW}s window"
echo "   binaries $SKY, $LOAD"
echo "   $(uname -sr), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
sweep_stale
lab_backbone
EXTRA=()  # "netns home" of the sources beyond a
for ((i = 2; i <= SOURCES; i++)); do
    add_host "$ID-s$i" "198.51.100.$((200 + i))" "p$((3 + i))"
    EXTRA+=("$ID-s$i $WORK/s$i")
done
lab_check_sealed
lab_start_skylan
SRC=("$NS_A $H_A")
for entry in "${EXTRA[@]}"; do
    set -- $entry
    mkdir -p "$2"
    start "$(basename "$2")" "$1" "$SKY" --home "$2" node --port "$PORT" --planet "$WORK/planet"
    SRC+=("$entry")
done
for entry in "${SRC[@]}"; do
    set -- $entry
    wait_for "$(basename "$2") to write its identity" 60 test -s "$2/identity.public"
    wait_for "$(basename "$2") online" 60 is_online "$1" "$2"
done
kill -STOP "$PID_B"
echo "   root $IP_ROOT, sink b $ADDR_B (stopped), sources: ${#SRC[@]}"

before="$(snapshot)"
SENDERS=()
for entry in "${SRC[@]}"; do
    set -- $entry
    ip netns exec "$1" "$LOAD" --root "$IP_ROOT:$PORT" --src "$(node_address "$2")" \
        --dest "$ADDR_B" --seconds "$WINDOW" >>"$WORK/logs/load-$(basename "$2").log" 2>&1 &
    SENDERS+=($!)
    PIDS+=($!)
done
for pid in "${SENDERS[@]}"; do
    wait "$pid" || die "a sender failed: $(cat "$WORK"/logs/load-*.log)"
    forget "$pid"
done
after="$(snapshot)"
kill -CONT "$PID_B"

sent="$(cat "$WORK"/logs/load-*.log | awk '/^sent/ { s += $2 } END { print s + 0 }')"
echo "== results over the window"
awk -v hz="$CLK_TCK" -v sent="$sent" -v n="${#SRC[@]}" 'NR == FNR { b[$1] = $2; next } { d[$1] = $2 - b[$1] }
    END {
        t = d["time"]; cpu = d["ticks"] / hz
        printf "   sent by %d sources   %10.0f packets/s (1,400 B)\n", n, sent / t
        printf "   received by the root %10.0f packets/s (%.0f/s lost in its full receive buffer)\n", d["rx_datagrams"] / t, d["udp_RcvbufErrors"] / t
        printf "   relayed              %10.0f packets/s (%.0f Mbit/s)\n", d["relayed"] / t, d["relayed"] * 1400 * 8 / t / 1e6
        printf "   over budget, dropped %10.0f packets/s (drop_relay_rate)\n", d["drop_relay_rate"] / t
        printf "   root CPU             %10.0f %% of one core\n", 100 * cpu / t
        if (cpu > 0) printf "   per core             %10.0f packets relayed per CPU-second of the root\n", d["relayed"] / cpu
    }' <(echo "$before") <(echo "$after")
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the senders share the machine's CPUs)"

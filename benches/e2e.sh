#!/usr/bin/env bash
# End-to-end throughput and latency of skylan between two network namespaces, compared
# with a plain veth pair, the bridged underlay skylan itself runs over, and vpncloud
# (another encrypted L2 overlay, when its binary is installed) on the same underlay.
#
# What it does (needs root, iproute2, iputils-ping, iperf3, jq; installs nothing):
#   1. builds a throw-away lab of network namespaces, all named skb-<pid>-*:
#        skb-<pid>-bb     backbone: one bridge, no addresses, no routes
#        skb-<pid>-root   skylan root                198.51.100.241 (underlay, on the bridge)
#        skb-<pid>-ctrl   skylan node --controller   198.51.100.242
#        skb-<pid>-a      skylan node, member        198.51.100.243 -> overlay 198.18.77.x
#        skb-<pid>-b      skylan node, member        198.51.100.244 -> overlay 198.18.77.y
#        skb-<pid>-va/vb  the baseline: one veth pair, 198.51.100.245 <-> .246
#        skb-<pid>-vca    vpncloud peer              198.51.100.247 -> overlay 198.18.78.1
#        skb-<pid>-vcb    vpncloud peer              198.51.100.248 -> overlay 198.18.78.2
#      The controller creates a private network (pool 198.18.77.10-20); A and B join and
#      are authorized; measuring starts once A reaches B over a DIRECT path. The two
#      vpncloud peers (switch mode over TAP, ChaCha20, a shared password made per run)
#      must reach each other over their overlay first.
#   2. in rounds (the order of the paths rotates each round, so machine noise hits all
#      of them alike), for each path:
#        veth      va -> vb over the veth pair
#        underlay  a -> b over their underlay addresses (veth, bridge, veth: the wire
#                  skylan's UDP runs on)
#        skylan    a -> b over the overlay (TAP, skylan, UDP on the underlay, skylan, TAP)
#        vpncloud  vca -> vcb over vpncloud's overlay (TAP, vpncloud, UDP, vpncloud, TAP)
#      it pings (idle RTT, 0.2 s apart; then 500 back to back, 1 ms apart, for the RTT
#      while the threads are awake) and runs iperf3 TCP with 1 and 4 streams, recording Mbit/s,
#      TCP retransmits, iperf3's CPU time (from its JSON) and, for skylan and vpncloud,
#      the two daemons' CPU time (/proc); for skylan also per thread with context
#      switches, the daemons' counters (/metrics), UDP receive-buffer drops and TAP
#      queue drops; after each round it prints that round's throughput ratios;
#   3. prints medians over the rounds, the medians of the in-round ratios, CPU-seconds
#      per GB and per-frame costs; with --profile also a `perf` profile and syscall
#      counts of one more run.
#
# Everything it made is removed on exit, also on failure or Ctrl-C (a trap): it signals
# only the processes it started (by PID) and deletes only its own namespaces.
#
# Usage: benches/e2e.sh [options]      (see --help; docs/performance.md explains it)

set -Eeuo pipefail

# ----- settings ---------------------------------------------------------------------

ROUNDS=5
SECONDS_PER_RUN=10
STREAMS="1 4"
PATHS=""             # empty: veth underlay skylan, and vpncloud when its binary is found
VPNCLOUD="${VPNCLOUD_BIN:-}"
PING_COUNT=20
NET_MTU=""           # empty: the controller's default network MTU
WORKERS=1            # packet threads of each member
PROFILE=0
KEEP=0
OUT=""
LOG_FILTER="${SKYLAN_LOG:-info}"

usage() {
    cat <<'EOF'
Usage: benches/e2e.sh [options]

Runs iperf3 TCP and ping between two network namespaces through skylan, through a
plain veth pair, over the bridged underlay and through vpncloud (when installed),
several rounds, and prints medians, in-round ratios, CPU-seconds per GB and where the
daemons' time goes.
Needs root, iproute2, iputils-ping, iperf3 and jq (perf for --profile; vpncloud 2.3
for the vpncloud path: cargo install --locked vpncloud --version 2.3.0).

Options:
  -r, --rounds N      rounds of measurements (default 5)
  -t, --time S        seconds per iperf3 run (default 10)
  -s, --streams LIST  parallel TCP streams to test (default "1 4")
      --paths LIST    paths to measure, of: veth underlay skylan vpncloud
                      (default "veth underlay skylan vpncloud"; without a
                      vpncloud binary "veth underlay skylan", with a notice)
      --vpncloud BIN  the vpncloud binary (default: vpncloud on PATH, else
                      ~/.cargo/bin/vpncloud)
  -p, --pings N       pings per round and path, 0.2 s apart (default 20)
  -m, --mtu N         set the skylan network's MTU (default: the controller default)
  -w, --workers N     packet threads of each skylan member (default 1)
      --profile       after the rounds, one more skylan -P 1 run under `perf stat`
                      (syscalls, context switches) and `perf record`
  -o, --out DIR       keep raw results (TSV, iperf3 JSON, perf data) and logs in DIR
  -k, --keep          keep the temporary work directory (printed at the end)
  -h, --help          this text

Environment:
  SKYLAN_BIN   the skylan binary (default: target/release/skylan, built if missing)
  SKYLAN_LOG   the daemons' log filter (default info)
  VPNCLOUD_BIN the vpncloud binary (as --vpncloud)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        -r|--rounds) ROUNDS="${2:-}"; shift 2 ;;
        -t|--time) SECONDS_PER_RUN="${2:-}"; shift 2 ;;
        -s|--streams) STREAMS="${2:-}"; shift 2 ;;
        --paths) PATHS="${2:-}"; [ -n "$PATHS" ] || PATHS=" "; shift 2 ;;
        --vpncloud) VPNCLOUD="${2:-}"; [ -n "$VPNCLOUD" ] || VPNCLOUD=" "; shift 2 ;;
        -p|--pings) PING_COUNT="${2:-}"; shift 2 ;;
        -m|--mtu) NET_MTU="${2:-}"; shift 2 ;;
        -w|--workers) WORKERS="${2:-}"; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        -o|--out) OUT="${2:-}"; shift 2 ;;
        -k|--keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "e2e.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

LAB_NAME=e2e.sh
# shellcheck source=benches/lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab.sh"
is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] || usage_error "--rounds wants a positive integer, got '$ROUNDS'"
is_uint "$SECONDS_PER_RUN" && [ "$SECONDS_PER_RUN" -ge 2 ] || usage_error "--time wants at least 2 seconds, got '$SECONDS_PER_RUN'"
is_uint "$PING_COUNT" && [ "$PING_COUNT" -ge 1 ] || usage_error "--pings wants a positive integer, got '$PING_COUNT'"
[ -n "$STREAMS" ] || usage_error "--streams is empty"
for s in $STREAMS; do
    is_uint "$s" && [ "$s" -ge 1 ] && [ "$s" -le 128 ] || usage_error "--streams wants numbers 1-128, got '$STREAMS'"
done
PATHS_GIVEN=1
[ -n "$PATHS" ] || { PATHS_GIVEN=0; PATHS="veth underlay skylan vpncloud"; }
[ -n "${PATHS// /}" ] || usage_error "--paths is empty"
for p in $PATHS; do
    case "$p" in
        veth|underlay|skylan|vpncloud) ;;
        *) usage_error "--paths: unknown path '$p' (veth, underlay, skylan, vpncloud)" ;;
    esac
done
[ -z "$NET_MTU" ] || is_uint "$NET_MTU" || usage_error "--mtu wants a number, got '$NET_MTU'"
is_uint "$WORKERS" && [ "$WORKERS" -ge 1 ] || usage_error "--workers wants a positive integer, got '$WORKERS'"
has_path() { [[ " $PATHS " == *" $1 "* ]]; }

# ----- prerequisites ----------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, veth, TAP); run it with sudo"
missing=""
for tool in ip ping iperf3 jq ss timeout; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    die "missing:$missing. Install with: apt-get install -y iproute2 iputils-ping iperf3 jq"
fi
if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null 2>&1; then
    die "--profile needs perf: apt-get install -y linux-perf (Debian) or linux-tools-\$(uname -r) (Ubuntu)"
fi
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: skylan needs TUN/TAP (modprobe tun)"

# vpncloud: --vpncloud / VPNCLOUD_BIN, else on PATH, else where `cargo install` puts it.
VPNCLOUD_HINT="install it with: cargo install --locked vpncloud --version 2.3.0 (or name the binary with --vpncloud BIN / VPNCLOUD_BIN)"
if [[ " $PATHS " == *" vpncloud "* ]]; then
    if [ -n "$VPNCLOUD" ]; then
        [ -x "$VPNCLOUD" ] || VPNCLOUD="$(command -v "$VPNCLOUD" 2>/dev/null || true)"
        [ -n "$VPNCLOUD" ] && [ -x "$VPNCLOUD" ] || die "the vpncloud binary given (--vpncloud / VPNCLOUD_BIN) is not an executable file"
    elif command -v vpncloud >/dev/null 2>&1; then
        VPNCLOUD="$(command -v vpncloud)"
    elif [ -x "${HOME:-/root}/.cargo/bin/vpncloud" ]; then
        VPNCLOUD="${HOME:-/root}/.cargo/bin/vpncloud"
    elif [ "$PATHS_GIVEN" = 1 ]; then
        die "--paths includes vpncloud, but no vpncloud binary was found; $VPNCLOUD_HINT"
    else
        echo "e2e.sh: notice: no vpncloud binary found, so the vpncloud path is skipped; $VPNCLOUD_HINT" >&2
        PATHS="veth underlay skylan"
        VPNCLOUD=""
    fi
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release_binary SKY SKYLAN_BIN "$REPO/target/release/skylan" --bin skylan
SKY="$(cd "$(dirname "$SKY")" && pwd)/$(basename "$SKY")"
CLK_TCK="$(getconf CLK_TCK)"

# ----- bookkeeping and cleanup ------------------------------------------------------

lab_begin skb

# Copies the raw results and logs out when --out was given (run by the cleanup).
lab_on_exit() {
    if [ -n "$OUT" ]; then
        mkdir -p "$OUT" && cp -r "$WORK/logs" "$WORK/raw" "$OUT/" 2>/dev/null
        echo "raw results and logs kept in $OUT"
    fi
}

mkdir -p "$WORK/logs" "$WORK/raw"
RESULTS="$WORK/raw/results.tsv"    # path streams round mbps retrans bytes secs iperf_cpu a_cpu b_cpu
THREADS="$WORK/raw/threads.tsv"    # streams round node role cpu_s voluntary_cs involuntary_cs
COUNTERS="$WORK/raw/counters.tsv"  # streams round node counter change
PINGS="$WORK/raw/pings.tsv"        # path rtt_ms|lost
BUSY_PINGS="$WORK/raw/busy-pings.tsv"  # path avg_rtt_ms (one line per round)
RATIOS="$WORK/raw/ratios.tsv"      # path base streams round ratio (throughput, within one round)
: >"$RESULTS"
: >"$RATIOS"
: >"$THREADS"
: >"$COUNTERS"
: >"$PINGS"
: >"$BUSY_PINGS"

# ----- namespaces -------------------------------------------------------------------

# The skylan hosts (root, ctrl, a, b on 198.51.100.241-244) come from lab.sh.
NS_VA="$ID-va"
NS_VB="$ID-vb"
NS_VCA="$ID-vca"
NS_VCB="$ID-vcb"

IP_VA=198.51.100.245
IP_VB=198.51.100.246
IP_VCA=198.51.100.247
IP_VCB=198.51.100.248
OVL_VCA=198.18.78.1
OVL_VCB=198.18.78.2
VC_PORT=3210
VC_DEV=vc0
# vpncloud's own MTU for a 1500-byte underlay: 1500 - 40 (it assumes an IPv6 outer
# header) - 8 (UDP) - 24 (crypto) - 1 (message type) - 14 (inner Ethernet header).
VC_MTU=1413
# vpncloud 2.3 learns its own address with a UDP connect() to this public resolver
# address (nothing is sent) and panics when there is no route to it; a host route to
# `lo` inside its namespace satisfies the lookup and keeps anything from leaving.
VC_RESOLVER=8.8.8.8
IPERF_PORT=5201

# ----- processes and CLI (the rest is in lab.sh) ------------------------------------

link_is_direct() { # NETNS HOME PEER-ADDRESS
    sky "$1" "$2" ping "$3" -c 1 -j | jq -e '.[0].reply == true and .[0].link == "DIRECT"'
}

listening() { ip netns exec "$1" ss -ltnH "sport = :$2" | grep -q LISTEN; }

# ----- what the daemons used --------------------------------------------------------

# Clock ticks (user + system) a process has used, all threads.
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

# One line per thread of a process: "tid role ticks voluntary_cs involuntary_cs"; the
# role is "main" for the main thread (the node driver runs there) or the thread's name.
thread_stats() {
    local pid="$1" t tid stat comm
    for t in /proc/"$pid"/task/*; do
        tid="${t##*/}"
        stat="$(cat "$t/stat" 2>/dev/null)" || continue
        comm="$(tr ' ' '_' <"$t/comm" 2>/dev/null)" || continue
        [ "$tid" = "$pid" ] && comm=main
        stat="${stat##*) }"
        # shellcheck disable=SC2086
        set -- $stat
        echo "$tid $comm $((${12} + ${13})) $(awk '
            /^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 }
            END { print v + 0, n + 0 }' "$t/status" 2>/dev/null)"
    done
}

# diff_threads NODE STREAMS ROUND BEFORE AFTER: per-role differences into threads.tsv.
diff_threads() {
    awk -v node="$1" -v streams="$2" -v round="$3" -v hz="$CLK_TCK" '
        NR == FNR { c[$1] = $3; v[$1] = $4; n[$1] = $5; next }
        { cpu[$2] += $3 - c[$1]; vol[$2] += $4 - v[$1]; inv[$2] += $5 - n[$1] }
        END { for (r in cpu) printf "%s\t%s\t%s\t%s\t%.3f\t%d\t%d\n", streams, round, node, r, cpu[r] / hz, vol[r], inv[r] }
    ' <(echo "$4") <(echo "$5") >>"$THREADS"
}

# Counters of one skylan node as "name value" lines: the namespace's UDP counters
# (udp_RcvbufErrors: datagrams dropped because the daemon did not read them in time),
# its TAP device's counters (tap_tx_dropped: frames the kernel could not queue for the
# daemon to read), and the daemon's own /metrics counters.
node_counters() { # NETNS HOME DEVICE
    tap_counters "$1" "$3"
    api_counters "$1" "$2" skylan_node
}

# A namespace's UDP counters ("udp_InDatagrams", "udp_RcvbufErrors", ...) and a TAP
# device's drop counters, as "name value" lines (for any daemon on a TAP).
tap_counters() { # NETNS DEVICE
    ip netns exec "$1" cat /proc/net/snmp | awk '$1 == "Udp:" {
        if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) print "udp_" n[i], $i }'
    ip -n "$1" -s -j link show dev "$2" | jq -r '.[0].stats64 |
        "tap_rx_dropped \(.rx.dropped)\ntap_tx_dropped \(.tx.dropped)\ntap_tx_packets \(.tx.packets)"'
}

# counter_changes BEFORE AFTER: "name change" lines.
counter_changes() {
    awk 'NR == FNR { b[$1] = $2; next } { print $1, $2 - ($1 in b ? b[$1] : 0) }' <(echo "$1") <(echo "$2")
}

# diff_counters NODE STREAMS ROUND BEFORE AFTER: the changes into counters.tsv.
diff_counters() {
    counter_changes "$4" "$5" | awk -v node="$1" -v streams="$2" -v round="$3" '
        { printf "%s\t%s\t%s\t%s\t%s\n", streams, round, node, $1, $2 }' >>"$COUNTERS"
}

# ----- statistics -------------------------------------------------------------------

# "min-max" of the numbers on stdin.
range() {
    sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s-%s", lo, hi; else print "-" }'
}

# The 90th percentile (nearest rank) of the numbers on stdin.
p90() {
    sort -g | awk '{ v[NR] = $1 } END { i = int(NR * 0.9 + 0.5); if (i < 1) i = 1; if (NR) print v[i]; else print "-" }'
}

# ----- build the lab ----------------------------------------------------------------

echo "== skylan e2e benchmark: $ROUNDS rounds x ${SECONDS_PER_RUN}s; streams: $STREAMS; paths: $PATHS"
echo "   binary $SKY"
echo "   $(uname -sr), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
sweep_stale

lab_backbone

add_ns "$NS_VA"
add_ns "$NS_VB"
ip -n "$NS_VA" link add eth0 type veth peer name eth0 netns "$NS_VB"
ip -n "$NS_VA" addr add "$IP_VA/24" dev eth0
ip -n "$NS_VB" addr add "$IP_VB/24" dev eth0
ip -n "$NS_VA" link set eth0 up
ip -n "$NS_VB" link set eth0 up

if has_path vpncloud; then
    add_host "$NS_VCA" "$IP_VCA" p5
    add_host "$NS_VCB" "$IP_VCB" p6
    ip -n "$NS_VCA" route add "$VC_RESOLVER/32" dev lo
    ip -n "$NS_VCB" route add "$VC_RESOLVER/32" dev lo
fi

lab_check_sealed

# ----- start skylan -----------------------------------------------------------------

lab_start_skylan --workers "$WORKERS"
lab_create_network bench
if [ -n "$NET_MTU" ]; then
    sky "$NS_CTRL" "$H_CTRL" controller network set "$NWID" "mtu=$NET_MTU" -j >/dev/null \
        || die "setting mtu=$NET_MTU on $NWID failed (the controller takes 1280-10000)"
fi
lab_join_members
DEV_A="$(network_field "$NS_A" "$H_A" "$NWID" .portDeviceName)"
DEV_B="$(network_field "$NS_B" "$H_B" "$NWID" .portDeviceName)"
TAP_MTU="$(ip -n "$NS_A" -o link show dev "$DEV_A" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
wait_for "a direct path to b" 60 link_is_direct "$NS_A" "$H_A" "$ADDR_B"
echo "   network $NWID, a $ADDR_A -> b $ADDR_B ($OVL_B) on a direct path; TAP $DEV_A mtu $TAP_MTU"

# ----- start vpncloud ---------------------------------------------------------------

vc_device_exists() { ip -n "$1" link show dev "$VC_DEV"; }

# vc_setup NETNS ADDRESS: what vpncloud cannot do itself in a namespace: it fails to set
# the TAP MTU (it looks for the MTU of a default-route device, and there is none) and
# its --ip option mis-assigns the address, so both are set here.
vc_setup() {
    ip -n "$1" link set dev "$VC_DEV" mtu "$VC_MTU"
    ip -n "$1" addr add "$2/24" dev "$VC_DEV"
    ip -n "$1" link set dev "$VC_DEV" up
}

if has_path vpncloud; then
    # A fresh shared password per run, handed over in the environment (not in argv).
    VC_PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    vc_args=(-t tap -m switch -d "$VC_DEV" --algorithm chacha20 --no-port-forwarding -l "$VC_PORT")
    # vcb listens, vca connects to it (both connecting makes their handshakes cross).
    start vcb "$NS_VCB" env PASSWORD="$VC_PASSWORD" "$VPNCLOUD" "${vc_args[@]}"
    PID_VCB=$STARTED
    start vca "$NS_VCA" env PASSWORD="$VC_PASSWORD" "$VPNCLOUD" "${vc_args[@]}" -c "$IP_VCB:$VC_PORT"
    PID_VCA=$STARTED
    wait_for "vpncloud in vca to open $VC_DEV" 20 vc_device_exists "$NS_VCA"
    wait_for "vpncloud in vcb to open $VC_DEV" 20 vc_device_exists "$NS_VCB"
    vc_setup "$NS_VCA" "$OVL_VCA"
    vc_setup "$NS_VCB" "$OVL_VCB"
    check_alive vpncloud-a "$PID_VCA"
    check_alive vpncloud-b "$PID_VCB"
    wait_for "vca pinging vcb at $OVL_VCB" 60 ip netns exec "$NS_VCA" ping -c 1 -W 1 "$OVL_VCB"
    echo "   vpncloud $("$VPNCLOUD" --version 2>/dev/null | head -n1 || echo '(version unknown)'): vca $OVL_VCA -> vcb $OVL_VCB; TAP $VC_DEV mtu $VC_MTU"
fi

start iperf-b "$NS_B" iperf3 -s -p "$IPERF_PORT"
start iperf-vb "$NS_VB" iperf3 -s -p "$IPERF_PORT"
wait_for "iperf3 server in b" 20 listening "$NS_B" "$IPERF_PORT"
wait_for "iperf3 server in vb" 20 listening "$NS_VB" "$IPERF_PORT"
if has_path vpncloud; then
    start iperf-vcb "$NS_VCB" iperf3 -s -p "$IPERF_PORT"
    wait_for "iperf3 server in vcb" 20 listening "$NS_VCB" "$IPERF_PORT"
fi

# ----- measurements -----------------------------------------------------------------

# Where each path starts and what it targets.
path_ns() { case "$1" in veth) echo "$NS_VA" ;; vpncloud) echo "$NS_VCA" ;; *) echo "$NS_A" ;; esac; }
path_target() {
    case "$1" in veth) echo "$IP_VB" ;; underlay) echo "$IP_B" ;; skylan) echo "$OVL_B" ;; vpncloud) echo "$OVL_VCB" ;; esac
}
# The two daemons that carry a path (their CPU time is measured), if any.
path_daemons() { case "$1" in skylan) echo "$PID_A $PID_B" ;; vpncloud) echo "$PID_VCA $PID_VCB" ;; esac; }

# ping_path PATH: PING_COUNT pings; appends "path rtt_ms" (or "path lost") lines.
ping_path() {
    local path="$1" out got i
    out="$(ip netns exec "$(path_ns "$path")" ping -n -c "$PING_COUNT" -i 0.2 -W 1 "$(path_target "$path")" || true)"
    got="$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out")"
    for rtt in $got; do echo "$path $rtt" >>"$PINGS"; done
    for ((i = $(wc -w <<<"$got"); i < PING_COUNT; i++)); do echo "$path lost" >>"$PINGS"; done
    out="$(ip netns exec "$(path_ns "$path")" ping -n -q -c 500 -i 0.001 -W 1 "$(path_target "$path")" || true)"
    got="$(sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p' <<<"$out")"
    if [ -n "$got" ]; then echo "$path $got" >>"$BUSY_PINGS"; fi
}

# iperf_run PATH STREAMS ROUND: one iperf3 run from a (or va) to b (or vb); appends a
# line to results.tsv and, for skylan, to threads.tsv and counters.tsv.
iperf_run() {
    local path="$1" streams="$2" round="$3" json
    json="$WORK/raw/iperf-$path-P$streams-r$round.json"
    local a0=0 b0=0 a1=0 b1=0 ta tb ca cb pa="" pb=""
    read -r pa pb <<<"$(path_daemons "$path")" || true
    if [ -n "$pa" ]; then
        check_alive "$path a" "$pa"
        check_alive "$path b" "$pb"
    fi
    if [ "$path" = skylan ]; then
        ca="$(node_counters "$NS_A" "$H_A" "$DEV_A")"
        cb="$(node_counters "$NS_B" "$H_B" "$DEV_B")"
        ta="$(thread_stats "$PID_A")"
        tb="$(thread_stats "$PID_B")"
    elif [ "$path" = vpncloud ]; then
        ca="$(tap_counters "$NS_VCA" "$VC_DEV")"
        cb="$(tap_counters "$NS_VCB" "$VC_DEV")"
    fi
    if [ -n "$pa" ]; then
        a0="$(cpu_ticks "$pa")"
        b0="$(cpu_ticks "$pb")"
    fi
    # In the background and waited for, so a signal to this script is handled at once
    # (the trap then ends the client too).
    timeout $((SECONDS_PER_RUN + 30)) ip netns exec "$(path_ns "$path")" iperf3 \
        -c "$(path_target "$path")" -p "$IPERF_PORT" -t "$SECONDS_PER_RUN" -P "$streams" -J \
        >"$json" 2>&1 &
    local client=$! ok=1
    PIDS+=("$client")
    wait "$client" || ok=0
    forget "$client"
    if [ "$ok" = 0 ]; then
        echo "   round $round $path -P $streams: iperf3 failed: $(jq -r '.error // empty' "$json" 2>/dev/null || tail -n 2 "$json")" >&2
        return 0
    fi
    if [ -n "$pa" ]; then
        a1="$(cpu_ticks "$pa")"
        b1="$(cpu_ticks "$pb")"
    fi
    if [ "$path" = skylan ]; then
        diff_threads a "$streams" "$round" "$ta" "$(thread_stats "$PID_A")"
        diff_threads b "$streams" "$round" "$tb" "$(thread_stats "$PID_B")"
        diff_counters a "$streams" "$round" "$ca" "$(node_counters "$NS_A" "$H_A" "$DEV_A")"
        diff_counters b "$streams" "$round" "$cb" "$(node_counters "$NS_B" "$H_B" "$DEV_B")"
    elif [ "$path" = vpncloud ]; then
        diff_counters vca "$streams" "$round" "$ca" "$(tap_counters "$NS_VCA" "$VC_DEV")"
        diff_counters vcb "$streams" "$round" "$cb" "$(tap_counters "$NS_VCB" "$VC_DEV")"
    fi
    jq -r --arg path "$path" --arg streams "$streams" --arg round "$round" \
        --arg a "$(awk -v t=$((a1 - a0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" \
        --arg b "$(awk -v t=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" '
        .end as $e
        | ($e.sum_sent.seconds) as $secs
        | [ $path, $streams, $round,
            ($e.sum_received.bits_per_second / 1e6 | . * 10 | round / 10),
            ($e.sum_sent.retransmits // 0),
            $e.sum_received.bytes,
            ($secs | . * 100 | round / 100),
            (($e.cpu_utilization_percent.host_total + $e.cpu_utilization_percent.remote_total)
                / 100 * $secs | . * 100 | round / 100),
            ($a | tonumber), ($b | tonumber) ] | @tsv' "$json" >>"$RESULTS" || {
        echo "   round $round $path -P $streams: could not read iperf3's JSON ($json); run skipped" >&2
        return 0
    }
    tail -n 1 "$RESULTS" | awk -F'\t' '{
        printf "   round %s %-8s -P %-2s %7.1f Mbit/s %6d retransmits   CPU-s: iperf3 %.2f", $3, $1, $2, $4, $5, $8
        if ($1 == "skylan" || $1 == "vpncloud") printf ", %s a %.2f b %.2f", $1, $9, $10
        printf "\n" }'
}

# The throughput ratios the summary reports, as "path/base" pairs of measured paths.
RATIO_PAIRS=""
for pair in skylan/vpncloud skylan/veth skylan/underlay vpncloud/veth; do
    if has_path "${pair%/*}" && has_path "${pair#*/}"; then RATIO_PAIRS="$RATIO_PAIRS $pair"; fi
done

# round_ratios ROUND: each ratio of RATIO_PAIRS within this round, for every stream
# count, into ratios.tsv; prints those against vpncloud and veth. A ratio of runs in the
# same round compares paths under the same machine load, which the ratio of two
# medians over different rounds does not.
round_ratios() {
    local round="$1" streams pair line r
    for streams in $STREAMS; do
        line=""
        for pair in $RATIO_PAIRS; do
            r="$(awk -F'\t' -v p="${pair%/*}" -v b="${pair#*/}" -v s="$streams" -v r="$round" '
                $2 == s && $3 == r && $1 == p { x = $4 } $2 == s && $3 == r && $1 == b { y = $4 }
                END { if (x != "" && y > 0) printf "%.4f", x / y }' "$RESULTS")"
            [ -n "$r" ] || continue
            printf "%s\t%s\t%s\t%s\t%s\n" "${pair%/*}" "${pair#*/}" "$streams" "$round" "$r" >>"$RATIOS"
            case "$pair" in skylan/vpncloud|skylan/veth) line="$line  $pair $(printf '%.3f' "$r")" ;; esac
        done
        [ -z "$line" ] || echo "   round $round -P $streams in-round ratios:$line"
    done
}

echo "== measuring: a -> b; the order of the paths rotates each round"
set -- $PATHS
NPATHS=$#
for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the path order by one each round.
    set -- $PATHS
    order=""
    for ((i = 0; i < NPATHS; i++)); do
        idx=$(((i + round - 1) % NPATHS + 1))
        order="$order ${!idx}"
    done
    for path in $order; do ping_path "$path"; done
    for streams in $STREAMS; do
        for path in $order; do iperf_run "$path" "$streams" "$round"; done
    done
    round_ratios "$round"
done

# ----- optional profile -------------------------------------------------------------

PROFILE_REPORT=""
if [ "$PROFILE" = 1 ] && has_path skylan; then
    echo "== profiling one more skylan -P 1 run with perf"
    PROFILE_REPORT="$WORK/raw/perf-report.txt"
    perf_data="$WORK/raw/perf.data"
    ca="$(node_counters "$NS_A" "$H_A" "$DEV_A")"
    events=raw_syscalls:sys_enter,context-switches,cpu-migrations,task-clock
    perf stat -x, -e "$events" -p "$PID_A" -o "$WORK/raw/perf-stat-a.csv" -- sleep $((SECONDS_PER_RUN + 1)) \
        >>"$WORK/logs/perf.log" 2>&1 &
    stat_a=$!
    PIDS+=("$stat_a")
    perf stat -x, -e "$events" -p "$PID_B" -o "$WORK/raw/perf-stat-b.csv" -- sleep $((SECONDS_PER_RUN + 1)) \
        >>"$WORK/logs/perf.log" 2>&1 &
    stat_b=$!
    PIDS+=("$stat_b")
    perf record -q -F 999 -g -o "$perf_data" -p "$PID_A,$PID_B" -- sleep $((SECONDS_PER_RUN + 1)) \
        >>"$WORK/logs/perf.log" 2>&1 &
    rec=$!
    PIDS+=("$rec")
    sleep 0.5
    timeout $((SECONDS_PER_RUN + 30)) ip netns exec "$NS_A" iperf3 -c "$OVL_B" -p "$IPERF_PORT" \
        -t "$SECONDS_PER_RUN" -P 1 -J >"$WORK/raw/iperf-profile.json" 2>&1 || true
    for pid in "$stat_a" "$stat_b" "$rec"; do
        wait "$pid" || true
        forget "$pid"
    done
    frames_a="$(counter_changes "$ca" "$(node_counters "$NS_A" "$H_A" "$DEV_A")" | awk '$1 == "frames_out" { print $2 }')"
    {
        echo "-- per frame a sent ($frames_a frames; perf stat over the run)"
        for node in a b; do
            awk -F, -v node="$node" -v f="$frames_a" '
                $3 == "raw_syscalls:sys_enter" { s = $1 } $3 == "context-switches" { c = $1 }
                $3 == "cpu-migrations" { m = $1 } $3 ~ /task-clock/ { t = $1 }
                END { if (f > 0) printf "node %s: %.2f syscalls, %.2f context switches, %.1f us CPU per frame; %d migrations\n", node, s / f, c / f, t * 1000 / f, m }
            ' "$WORK/raw/perf-stat-$node.csv"
        done
        echo "-- CPU samples by thread and object (cpu-clock sampling in a VM: kernel time shows up where interrupts are re-enabled)"
        perf report -i "$perf_data" --stdio --no-children --sort comm,dso -g none --percent-limit 1 2>/dev/null \
            | grep -v '^#' | sed '/^$/d' | cut -c1-100 | sed 's/[[:space:]]*$//' | head -n 12
        echo "-- top symbols"
        perf report -i "$perf_data" --stdio --no-children --sort comm,symbol -g none --percent-limit 0.8 2>/dev/null \
            | grep -v '^#' | sed '/^$/d' | cut -c1-110 | sed 's/[[:space:]]*$//' | head -n 40
    } >"$PROFILE_REPORT"
fi

# ----- summary ----------------------------------------------------------------------

col() { # PATH STREAMS FIELD -> that column's values
    awk -F'\t' -v p="$1" -v s="$2" -v f="$3" '$1 == p && $2 == s { print $f }' "$RESULTS"
}
per_gb() { # PATH STREAMS FIELD... -> the sum of those CPU columns per GB (1e9 bytes) received, per run
    local p="$1" s="$2"
    shift 2
    awk -F'\t' -v p="$p" -v s="$s" -v fields="$*" '
        BEGIN { n = split(fields, f, " ") }
        $1 == p && $2 == s && $6 > 0 { c = 0; for (i = 1; i <= n; i++) c += $(f[i]); printf "%.3f\n", c / ($6 / 1e9) }' "$RESULTS"
}
cmed() { # STREAMS NODE COUNTER -> the median change of that counter per run (0 if never seen)
    local v
    v="$(awk -F'\t' -v s="$1" -v n="$2" -v c="$3" '$1 == s && $3 == n && $4 == c { print $5 }' "$COUNTERS" | median)"
    [ "$v" = - ] && v=0
    echo "$v"
}
tmed() { # STREAMS NODE FIELD -> the median per run of a node's threads summed (5 CPU-s, 6 and 7 switches)
    awk -F'\t' -v s="$1" -v n="$2" -v f="$3" '$1 == s && $3 == n { sum[$2] += $f } END { for (r in sum) print sum[r] }' "$THREADS" | median
}

echo
echo "== throughput: medians over $ROUNDS rounds (min-max) of ${SECONDS_PER_RUN}s runs, a -> b"
echo "   skylan network mtu ${NET_MTU:-default} (TAP mtu $TAP_MTU); veth and underlay mtu 1500"
if has_path vpncloud; then
    echo "   vpncloud: switch mode, ChaCha20, TAP mtu $VC_MTU (its own choice for a 1500-byte underlay)"
fi
printf "   %-8s %-7s %-27s %-9s %s\n" path streams "Mbit/s" retrans "CPU-s/GB: total = iperf3 + daemon a + daemon b"
for streams in $STREAMS; do
    for path in $PATHS; do
        if [ "$(col "$path" "$streams" 4 | wc -l)" = 0 ]; then
            printf "   %-8s %-7s no successful runs\n" "$path" "$streams"
            continue
        fi
        printf "   %-8s %-7s %-27s %-9s %s = %s + %s + %s\n" "$path" "$streams" \
            "$(col "$path" "$streams" 4 | median) ($(col "$path" "$streams" 4 | range))" \
            "$(col "$path" "$streams" 5 | median)" \
            "$(per_gb "$path" "$streams" 8 9 10 | median)" "$(per_gb "$path" "$streams" 8 | median)" \
            "$(per_gb "$path" "$streams" 9 | median)" "$(per_gb "$path" "$streams" 10 | median)"
    done
    for pair in $RATIO_PAIRS; do
        r="$(awk -F'\t' -v p="${pair%/*}" -v b="${pair#*/}" -v s="$streams" \
            '$1 == p && $2 == b && $3 == s { print $5 }' "$RATIOS")"
        [ -n "$r" ] || continue
        printf "   %-18s -P %s: %.3f of the throughput, median of %d in-round ratios (%s)\n" \
            "${pair%/*} / ${pair#*/}" "$streams" "$(median <<<"$r")" "$(wc -l <<<"$r")" "$(range <<<"$r")"
    done
done

echo
echo "== ping RTT, idle: $PING_COUNT pings x $ROUNDS rounds per path (ms)"
for path in $PATHS; do
    rtts="$(awk -v p="$path" '$1 == p && $2 != "lost" { print $2 }' "$PINGS")"
    lost="$(awk -v p="$path" '$1 == p && $2 == "lost"' "$PINGS" | wc -l)"
    printf "   %-8s median %-7s min-max %-13s p90 %-7s lost %s\n" "$path" "$(median <<<"$rtts")" \
        "$(range <<<"$rtts")" "$(p90 <<<"$rtts")" "$lost"
done

echo
echo "== ping RTT, back to back: 500 pings 1 ms apart x $ROUNDS rounds per path (ms; the median of each round's average)"
for path in $PATHS; do
    avgs="$(awk -v p="$path" '$1 == p { print $2 }' "$BUSY_PINGS")"
    printf "   %-8s median %-7s min-max %s\n" "$path" "$(median <<<"$avgs")" "$(range <<<"$avgs")"
done

if has_path skylan && [ -s "$COUNTERS" ]; then
    echo
    echo "== skylan data path per run (medians; a sends, b receives)"
    for streams in $STREAMS; do
        frames="$(cmed "$streams" a frames_out)"
        awk -v s="$streams" -v f="$frames" -v d="$(cmed "$streams" a tx_datagrams)" \
            -v r="$(cmed "$streams" b udp_RcvbufErrors)" -v i="$(cmed "$streams" b udp_InDatagrams)" \
            -v q="$(cmed "$streams" a tap_tx_dropped)" -v qb="$(cmed "$streams" b tap_rx_dropped)" \
            -v dq="$(cmed "$streams" b drop_queue_full)" 'BEGIN {
            printf "   -P %-3s %d frames, %.2f datagrams per frame; b dropped %d datagrams (%.1f %%) for a full UDP receive buffer;\n",
                s, f, (f > 0 ? d / f : 0), r, (i + r > 0 ? 100 * r / (i + r) : 0)
            printf "          TAP queue drops: a %d, b %d; b core queue-full drops %d\n", q, qb, dq }'
        awk -v s="$streams" -v f="$frames" -v ca="$(tmed "$streams" a 5)" -v cb="$(tmed "$streams" b 5)" \
            -v va="$(tmed "$streams" a 6)" -v vb="$(tmed "$streams" b 6)" \
            -v ia="$(tmed "$streams" a 7)" -v ib="$(tmed "$streams" b 7)" 'BEGIN {
            if (f > 0) printf "          per frame: a %.1f us CPU, %.2f context switches; b %.1f us CPU, %.2f context switches\n",
                1e6 * ca / f, (va + ia) / f, 1e6 * cb / f, (vb + ib) / f }'
    done
fi

if has_path vpncloud && [ -s "$COUNTERS" ]; then
    echo
    echo "== vpncloud data path per run (medians; vca sends, vcb receives)"
    for streams in $STREAMS; do
        awk -v s="$streams" -v r="$(cmed "$streams" vcb udp_RcvbufErrors)" -v i="$(cmed "$streams" vcb udp_InDatagrams)" \
            -v q="$(cmed "$streams" vca tap_tx_dropped)" -v qb="$(cmed "$streams" vcb tap_rx_dropped)" 'BEGIN {
            printf "   -P %-3s vcb received %d datagrams and dropped %d (%.1f %%) for a full UDP receive buffer; TAP queue drops: vca %d, vcb %d\n",
                s, i, r, (i + r > 0 ? 100 * r / (i + r) : 0), q, qb }'
    done
fi

if [ -s "$THREADS" ]; then
    echo
    echo "== skylan CPU by thread, median per run (skylan-packets = the packet loop and control work; skylan-workerN = more packet threads)"
    printf "   %-6s %-5s %-18s %8s %12s %12s\n" streams node thread CPU-s "vol. cs" "invol. cs"
    for streams in $STREAMS; do
        awk -F'\t' -v s="$streams" '$1 == s { print $3 "\t" $4 }' "$THREADS" | sort -u |
            while IFS=$'\t' read -r node role; do
                row() { awk -F'\t' -v s="$streams" -v n="$node" -v r="$role" -v f="$1" '$1 == s && $3 == n && $4 == r { print $f }' "$THREADS" | median; }
                printf "   %-6s %-5s %-18s %8s %12s %12s\n" "$streams" "$node" "$role" "$(row 5)" "$(row 6)" "$(row 7)"
            done
    done
fi

if [ -n "$PROFILE_REPORT" ]; then
    echo
    echo "== profile of the skylan daemons a and b during one -P 1 run"
    sed 's/^/   /' "$PROFILE_REPORT"
fi

echo
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: compare within one run)"

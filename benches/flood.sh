#!/usr/bin/env bash
# A handshake flood against a skylan root: what it costs the root (CPU, memory) and
# whether legitimate nodes still handshake and ping through it.
#
# What it does (needs root, iproute2, iputils-ping, nftables, jq; installs nothing):
#   1. builds a throw-away lab of network namespaces, all named skf-<pid>-*:
#        skf-<pid>-bb     backbone: one bridge, no addresses, no routes
#        skf-<pid>-root   skylan root                198.51.100.241 (underlay, on the bridge)
#        skf-<pid>-ctrl   skylan node --controller   198.51.100.242
#        skf-<pid>-a      skylan node, member        198.51.100.243 -> overlay 198.18.77.x
#        skf-<pid>-b      skylan node, member        198.51.100.244 -> overlay 198.18.77.y
#        skf-<pid>-fl     the flooder                198.51.100.249
#      nftables in a and b drop UDP between their underlay addresses, so a and b reach
#      each other only through the root (RELAY). The root routes 192.0.2.0/24 (the
#      forged flood sources) via the flooder, where nftables counts and drops what the
#      root sends back (cookie replies), so nothing answers with ICMP.
#   2. for each rate: runs examples/handshake_flood (forged HandshakeInits with a valid
#      mac1) at that rate; after a warm-up, over a fixed window, it measures the root's
#      CPU (% of one core, /proc) and peak RSS, a relayed ping a -> b, and restarts
#      node b, timing until b is ONLINE and until a's ping reaches b again.
#   3. prints one table row per rate.
#
# Everything it made is removed on exit, also on failure or Ctrl-C (a trap): it signals
# only the processes it started (by PID) and deletes only its own namespaces.
#
# Usage: benches/flood.sh [options]      (see --help)

set -Eeuo pipefail

# ----- settings ---------------------------------------------------------------------

RATES="0 1000 10000 100000"
WINDOW=20            # seconds measured per rate
WARMUP=2             # seconds of flood before the window opens
PING_COUNT=20
RESTART_LIMIT=30     # give up waiting for b after a restart
KEEP=0
OUT=""
LOG_FILTER="${SKYLAN_LOG:-info}"

usage() {
    cat <<'EOF'
Usage: benches/flood.sh [options]

Floods a skylan root with forged-source HandshakeInits at several rates and reports,
per rate, the root's CPU and peak memory, a ping relayed by the root between two
members, and how long a restarted member takes to be reachable again.
Needs root, iproute2, iputils-ping, nftables and jq.

Options:
  -r, --rates LIST    handshakes per second to send (default "0 1000 10000 100000")
  -t, --seconds S     measurement window per rate (default 20; at least 8)
  -p, --pings N       relayed pings per rate, 0.2 s apart (default 20)
  -o, --out FILE      also write the table (markdown) to FILE
  -k, --keep          keep the temporary work directory with the logs
  -h, --help          this text

Environment:
  SKYLAN_BIN   the skylan binary (default: target/release/skylan, built if missing)
  FLOOD_BIN    the flooder (default: target/release/examples/handshake_flood, built if missing)
  SKYLAN_LOG   the daemons' log filter (default info)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        -r|--rates) RATES="${2:-}"; shift 2 ;;
        -t|--seconds) WINDOW="${2:-}"; shift 2 ;;
        -p|--pings) PING_COUNT="${2:-}"; shift 2 ;;
        -o|--out) OUT="${2:-}"; shift 2 ;;
        -k|--keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "flood.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

LAB_NAME=flood.sh
# shellcheck source=benches/lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab.sh"
[ -n "${RATES// /}" ] || usage_error "--rates is empty"
for r in $RATES; do is_uint "$r" || usage_error "--rates wants numbers, got '$RATES'"; done
is_uint "$WINDOW" && [ "$WINDOW" -ge 8 ] || usage_error "--seconds wants at least 8, got '$WINDOW'"
is_uint "$PING_COUNT" && [ "$PING_COUNT" -ge 1 ] || usage_error "--pings wants a positive integer, got '$PING_COUNT'"

# ----- prerequisites ----------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, TAP, a raw socket); run it with sudo"
missing=""
for tool in ip ping nft jq timeout; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
[ -z "$missing" ] || die "missing:$missing. Install with: apt-get install -y iproute2 iputils-ping nftables jq"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing: skylan needs TUN/TAP (modprobe tun)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release_binary SKY SKYLAN_BIN "$REPO/target/release/skylan" --bin skylan
FLOOD="${FLOOD_BIN:-$REPO/target/release/examples/handshake_flood}"
if [ -n "${RATES//[0 ]/}" ]; then  # rate 0 alone sends nothing: no flooder needed
    release_binary FLOOD FLOOD_BIN "$FLOOD" --example handshake_flood
fi
CLK_TCK="$(getconf CLK_TCK)"

# ----- bookkeeping and cleanup ------------------------------------------------------

lab_begin skf
ROWS="$WORK/rows.tsv"  # one line per rate, the table's columns
: >"$ROWS"

# ----- helpers ----------------------------------------------------------------------

# The skylan hosts (root, ctrl, a, b on 198.51.100.241-244) come from lab.sh.
NS_FL="$ID-fl"
IP_FL=198.51.100.249
FORGED=192.0.2.0/24

peer_link() { sky "$NS_A" "$H_A" peers -j | jq -r --arg b "$ADDR_B" '.[] | select(.address == $b) | .link'; }
is_relay() { [ "$(peer_link)" = RELAY ]; }

now() { date +%s.%N; }

# Everything counted over a window, as "name value" lines: the root's CPU ticks, its
# namespace's UDP counters (udp_RcvbufErrors: datagrams the kernel dropped because the
# root's socket buffer was full), the flooder namespace's nftables counters (sent:
# the flood as it left; replies: what the root sent to the forged sources), and the
# root's own counters from its /metrics (as root_<name>).
snapshot() {
    local s
    s="$(cat "/proc/$PID_ROOT/stat")"
    s="${s##*) }"
    set -- $s
    printf "time %s\nutime %s\nstime %s\n" "$(now)" "${12}" "${13}"
    udp_counters "$NS_ROOT"
    ip netns exec "$NS_FL" nft -j list counters table inet skf |
        jq -r '.nftables[].counter? | select(.) | "\(.name)_packets \(.packets)\n\(.name)_bytes \(.bytes)"'
    api_counters "$NS_ROOT" "$H_ROOT" skylan_root | sed 's/^/root_/'
}

# ----- build the lab ----------------------------------------------------------------

echo "== skylan handshake flood: rates $RATES per s; ${WINDOW}s windows after ${WARMUP}s warm-up"
echo "   binaries $SKY, $FLOOD"
echo "   $(uname -sr), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
sweep_stale

lab_backbone
add_host "$NS_FL" "$IP_FL" p5

# a and b may not talk directly: everything between them goes through the root.
for pair in "$NS_A $IP_B" "$NS_B $IP_A"; do
    set -- $pair
    ip netns exec "$1" nft -f - <<EOF
table inet skf {
    chain in { type filter hook input priority 0; policy accept; ip saddr $2 meta l4proto udp drop; }
    chain out { type filter hook output priority 0; policy accept; ip daddr $2 meta l4proto udp drop; }
}
EOF
done
# The root answers forged sources through the flooder's namespace, which counts and
# drops those packets before routing (they are not for its address, so no ICMP either),
# and counts the flood as it leaves.
ip -n "$NS_ROOT" route add "$FORGED" via "$IP_FL"
for conf in all default eth0; do ip netns exec "$NS_ROOT" sysctl -qw "net.ipv4.conf.$conf.rp_filter=0"; done
ip netns exec "$NS_FL" nft -f - <<EOF
table inet skf {
    counter replies { }
    counter sent { }
    chain pre { type filter hook prerouting priority -300; policy accept; ip saddr $IP_ROOT meta l4proto udp counter name replies drop; }
    chain out { type filter hook output priority 0; policy accept; ip daddr $IP_ROOT udp dport $PORT counter name sent; }
}
EOF

lab_check_sealed

# ----- start skylan -----------------------------------------------------------------

lab_start_skylan
lab_create_network flood
lab_join_members
wait_for "a seeing b as RELAY" 20 is_relay || true
echo "   network $NWID, a $ADDR_A -> b $ADDR_B ($OVL_B), link $(peer_link); direct UDP a <-> b dropped"

# ----- measurements -----------------------------------------------------------------

# sample WINDOW OUTFILE: over WINDOW seconds, one line: the root's CPU (% of one core:
# total user system), its peak RSS and socket receive queue (MB), UDP datagrams in and
# receive-buffer drops per second in its namespace, flood packets sent per second,
# replies to forged sources per second, reply bytes per flood byte, and per second the
# root's cookie replies, the handshakes it dropped for their cookie budget and for a bad
# mac1.
sample() {
    local before rss q max=0 maxq=0 i
    before="$(snapshot)"
    for ((i = 0; i < $1 * 2; i++)); do
        rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID_ROOT/status")"
        q="$(ip netns exec "$NS_ROOT" ss -Huan "sport = :$PORT" | awk '{ print $2; exit }')"
        [ "$rss" -le "$max" ] || max=$rss
        [ "${q:-0}" -le "$maxq" ] || maxq=$q
        sleep 0.5
    done
    awk -v hz="$CLK_TCK" -v m="$max" -v q="$maxq" 'NR == FNR { b[$1] = $2; next } { d[$1] = $2 - b[$1] }
        END { t = d["time"]; u = 100 * d["utime"] / hz / t; s = 100 * d["stime"] / hz / t
            printf "%.0f %.0f %.0f %.1f %.1f %.0f %.0f %.0f %.0f %s %.0f %.0f %.0f\n", u + s, u, s, m / 1024, q / 1048576,
                d["udp_InDatagrams"] / t, d["udp_RcvbufErrors"] / t, d["sent_packets"] / t, d["replies_packets"] / t,
                (d["sent_bytes"] > 0 ? sprintf("%.2f", d["replies_bytes"] / d["sent_bytes"]) : "-"),
                d["root_cookie_replies"] / t, d["root_drop_cookie_rate"] / t, d["root_drop_handshake_mac"] / t }
    ' <(echo "$before") <(snapshot) >"$2"
}

# relay_ping: PING_COUNT pings a -> b through the root: "median max loss%" (ms, ms, %).
relay_ping() {
    local rtts got
    rtts="$(ip netns exec "$NS_A" ping -n -c "$PING_COUNT" -i 0.2 -W 5 "$OVL_B" 2>&1 |
        sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' || true)"
    [ -n "$rtts" ] || { echo "- - 100"; return; }
    got="$(wc -l <<<"$rtts")"
    awk -v m="$(median <<<"$rtts")" -v x="$(sort -g <<<"$rtts" | tail -n1)" -v l=$((100 * (PING_COUNT - got) / PING_COUNT)) \
        'BEGIN { printf "%.2f %.2f %d\n", m, x, l }'
}

# restart_b [FLOODER-PID]: ends node b, starts it again as before, and times (0.1 s)
# until b's info says ONLINE (R_ONLINE) and until a's ping (every 0.1 s) reaches b
# (R_PING); ">N" for what did not happen within RESTART_LIMIT seconds, a "*" for what
# happened only after the flooder had stopped. Not in a subshell: it sets PID_B.
restart_b() {
    local t0 pinger log="$WORK/logs/restart-ping.txt" to_ping="" to_online="" el over=""
    stop "$PID_B"
    t0="$(now)"
    start b "$NS_B" "${B_CMD[@]}"
    PID_B=$STARTED
    ip netns exec "$NS_A" ping -n -D -i 0.1 -w "$RESTART_LIMIT" "$OVL_B" >"$log" 2>&1 &
    pinger=$!
    PIDS+=("$pinger")
    while :; do
        el="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
        [ -z "${1:-}" ] || running "$1" || over="*"
        [ -n "$to_online" ] || ! is_online "$NS_B" "$H_B" >/dev/null 2>&1 || to_online=$el$over
        [ -n "$to_ping" ] || to_ping="$(awk -v t0="$t0" -v o="$over" '/bytes from/ {
            gsub(/[][]/, "", $1); printf "%.1f%s", $1 - t0, o; exit }' "$log")"
        [ -z "$to_ping" ] || [ -z "$to_online" ] || break
        awk -v e="$el" -v l="$RESTART_LIMIT" 'BEGIN { exit !(e >= l) }' && break
        sleep 0.1
    done
    stop "$pinger"
    R_ONLINE="${to_online:->$RESTART_LIMIT}"
    R_PING="${to_ping:->$RESTART_LIMIT}"
}

for rate in $RATES; do
    for n in "root $PID_ROOT" "a $PID_A" "b $PID_B"; do check_alive $n; done
    wait_for "a pinging b at $OVL_B before rate $rate" 60 ip netns exec "$NS_A" ping -c 1 -W 1 "$OVL_B"
    echo "== rate $rate/s: link a -> b $(peer_link)"
    flooder=""
    if [ "$rate" -gt 0 ]; then
        # One second longer than warm-up and window, so the window is all flood.
        start "flood-$rate" "$NS_FL" "$FLOOD" --target "$IP_ROOT:$PORT" --responder "$H_ROOT/identity.public" \
            --rate "$rate" --seconds $((WARMUP + WINDOW + 1)) --sources "$FORGED"
        flooder=$STARTED
    fi
    sleep "$WARMUP"
    [ -z "$flooder" ] || check_alive flooder "$flooder"
    sample "$WINDOW" "$WORK/sample" &
    sampler=$!
    PIDS+=("$sampler")
    read -r p_med p_max p_loss <<<"$(relay_ping)"
    restart_b "$flooder"
    wait "$sampler" || die "sampling the root failed (did it exit?)"
    forget "$sampler"
    read -r cpu cpu_user cpu_sys rss queue udp_in rcvbuf sent replies reply_ratio cookies withheld badmac <"$WORK/sample"
    flood_line="(no flood)"
    if [ -n "$flooder" ]; then
        # A flooder that cannot keep up sends until its count is done: up to 60 s more.
        for i in $(seq 600); do running "$flooder" || break; sleep 0.1; done
        if running "$flooder"; then
            stop "$flooder"
            flood_line="(still sending 60 s after the window; stopped)"
        else
            wait "$flooder" || echo "   the flooder exited with status $?; see its log" >&2
            forget "$flooder"
            flood_line="$(tail -n1 "$WORK/logs/flood-$rate.log")"
        fi
    fi
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$rate" "$sent" "$cpu" "$rss" "$queue" \
        "$p_med" "$p_max" "$p_loss" "$R_PING" "$R_ONLINE" "$udp_in" "$rcvbuf" "$replies" >>"$ROWS"
    echo "   flooder: $flood_line; in the window: $sent/s"
    echo "   root: CPU $cpu % (user $cpu_user, system $cpu_sys), RSS max $rss MB, receive queue max $queue MB;"
    echo "         UDP in $udp_in/s, receive-buffer drops $rcvbuf/s; replies to forged sources $replies/s ($reply_ratio bytes per flood byte)"
    echo "         cookie replies $cookies/s, handshakes withheld for the cookie budget $withheld/s, bad mac1 $badmac/s"
    echo "   relayed ping a -> b: median $p_med ms, max $p_max ms, loss $p_loss %; b restart: ONLINE after $R_ONLINE s, a's ping through after $R_PING s"
done

# ----- summary ----------------------------------------------------------------------

HEAD=(rate/s sent/s "root CPU %" "RSS MB" "rx queue MB" "ping med ms" "ping max ms" "loss %"
    "b restart->ping s" "b restart->ONLINE s" "root UDP in/s" "rcvbuf drops/s" "replies/s")
echo
echo "== handshake flood against the root: ${WINDOW}s windows, $PING_COUNT relayed pings a -> b, one b restart per rate"
{
    printf "%s\t" "${HEAD[@]}" | sed 's/\t$/\n/'
    cat "$ROWS"
} | awk -F'\t' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
    END { for (r = 1; r <= NR; r++) { l = "  "; for (i = 1; i <= NF; i++) l = l sprintf(" %-*s ", w[i], c[r, i])
        sub(/ +$/, "", l); print l } }'
if grep -q '\*' "$ROWS"; then echo "   * b was back only after the flooder had stopped (it took longer than the window)"; fi
if [ -n "$OUT" ]; then
    {
        echo "Handshake flood against a skylan root ($(date -u +%Y-%m-%d), $(nproc) CPUs, ${WINDOW}s windows)"
        echo
        printf "| %s " "${HEAD[@]}"; echo "|"
        printf "|---%.0s" "${HEAD[@]}"; echo "|"
        sed 's/\t/ | /g; s/^/| /; s/$/ |/' "$ROWS"
    } >"$OUT"
    echo "   table written to $OUT"
fi
echo "   CPU % is of one core; the root, nodes and flooder share $(nproc) CPUs. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

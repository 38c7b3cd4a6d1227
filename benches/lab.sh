# The namespace lab the end-to-end benchmarks share (sourced by benches/e2e.sh and
# benches/flood.sh, not run on its own): bookkeeping that removes everything a run made
# on every exit path, the backbone bridge and its hosts, the skylan root, controller and
# two members A and B on one private network, and the CLI helpers the waits use.
#
# The sourcing script sets, before sourcing:
#   LAB_NAME    its name for messages (e2e.sh)
# and before calling lab_begin: KEEP (1: keep the work directory), LOG_FILTER (the
# daemons' SKYLAN_LOG) and, optionally, a function lab_on_exit run by the cleanup
# before the work directory goes (e.g. to copy results out).
#
# Contract: only processes started with `start` are signalled (by PID) and only
# namespaces made with `add_ns` are deleted; a script adds its own hosts with add_host
# after lab_backbone and before lab_start_skylan.

die() {
    echo "$LAB_NAME: $*" >&2
    exit 1
}

usage_error() {
    echo "$LAB_NAME: $* (see --help)" >&2
    exit 2
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# ----- bookkeeping and cleanup ------------------------------------------------------

# lab_begin PREFIX: ID (namespaces are named PREFIX-<pid>-*), the PID and namespace
# lists, the work directory with logs/, and the traps.
lab_begin() {
    LAB_PREFIX="$1"
    ID="$1-$$"
    PIDS=()        # every background process this script started and has not reaped
    NAMESPACES=()  # every namespace this script created
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/skylan-${LAB_NAME%.sh}.XXXXXX")"
    mkdir -p "$WORK/logs"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'echo "$LAB_NAME: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
}

# Ends our processes (SIGTERM, up to 3 s grace, then SIGKILL), deletes our namespaces
# and the work directory. Runs on every exit path.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
    local pid i alive
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for i in $(seq 30); do
        alive=0
        for pid in "${PIDS[@]}"; do
            if running "$pid"; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        if running "$pid"; then
            echo "$LAB_NAME: pid $pid ignored SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#NAMESPACES[@]} - 1; i >= 0; i--)); do
        ip netns del "${NAMESPACES[$i]}" 2>/dev/null
    done
    if declare -F lab_on_exit >/dev/null && [ -d "$WORK" ]; then
        lab_on_exit
    fi
    if [ "$KEEP" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# A child of ours that has not exited (a zombie counts as exited). Only asked about
# PIDs we have not reaped, so the PID cannot belong to another process yet.
running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# Drops a PID we have reaped with `wait` (it may be reused by then: never signal it).
forget() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# Ends one of our processes (SIGTERM, up to 5 s grace, then SIGKILL) and reaps it.
stop() {
    local i
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 50); do running "$1" || break; sleep 0.1; done
    if running "$1"; then kill -KILL "$1" 2>/dev/null || true; fi
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# Namespaces left by earlier runs that were killed before their trap could run
# (PREFIX-<pid>-* whose pid is gone). Only the names are removed; processes still
# inside are listed so they can be ended by hand.
sweep_stale() {
    local ns pid left
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$LAB_PREFIX-[0-9]+-" || true); do
        pid="${ns#"$LAB_PREFIX"-}"
        pid="${pid%%-*}"
        if ! kill -0 "$pid" 2>/dev/null; then
            left="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
            echo "   removing stale namespace $ns of an earlier run${left:+ (processes still inside: ${left}- end them by hand)}"
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}

# ----- namespaces -------------------------------------------------------------------

PORT=9993
IP_ROOT=198.51.100.241
IP_CTRL=198.51.100.242
IP_A=198.51.100.243
IP_B=198.51.100.244
POOL=198.18.77.10-198.18.77.20
ROUTE=198.18.77.0/24

add_ns() {
    ip netns add "$1" || die "cannot create namespace $1"
    NAMESPACES+=("$1")
    ip -n "$1" link set lo up
}

# A host on the backbone bridge: eth0 in the host's namespace, its peer PORT on br0.
add_host() {
    local ns="$1" ip="$2" port="$3"
    add_ns "$ns"
    ip -n "$BB" link add "$port" type veth peer name eth0 netns "$ns"
    ip -n "$BB" link set "$port" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# The backbone (one bridge, no addresses, no routes) and the four skylan hosts on it:
# root, controller, A and B (namespaces $NS_ROOT, $NS_CTRL, $NS_A, $NS_B; bridge ports
# p1-p4, so a script's own hosts use p5 and up).
lab_backbone() {
    BB="$ID-bb" NS_ROOT="$ID-root" NS_CTRL="$ID-ctrl" NS_A="$ID-a" NS_B="$ID-b"
    add_ns "$BB"
    ip -n "$BB" link add br0 type bridge
    ip -n "$BB" link set br0 up
    # Bridged frames skip the IP netfilter hooks (br_netfilter), as on a plain switch.
    local knob
    for knob in bridge-nf-call-iptables bridge-nf-call-ip6tables bridge-nf-call-arptables; do
        ip netns exec "$BB" sysctl -qw "net.bridge.$knob=0" 2>/dev/null || true
    done
    add_host "$NS_ROOT" "$IP_ROOT" p1
    add_host "$NS_CTRL" "$IP_CTRL" p2
    add_host "$NS_A" "$IP_A" p3
    add_host "$NS_B" "$IP_B" p4
}

# Nothing can leave the lab: no namespace of ours has a default route (the backbone has
# no addresses or routes at all), so a packet to any address outside the lab's subnets
# has nowhere to go.
lab_check_sealed() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        [ -z "$(ip -n "$ns" route show default)" ] || die "namespace $ns has a default route"
        [ -z "$(ip -n "$ns" -6 route show default)" ] || die "namespace $ns has an IPv6 default route"
    done
    [ -z "$(ip -n "$BB" route show)" ] || die "the backbone namespace $BB has routes"
}

# ----- binaries ---------------------------------------------------------------------

# release_binary VAR ENV DEFAULT CARGO-ARGS...: sets VAR to the program to run: the one
# the environment variable ENV names (it must be executable), else DEFAULT under the
# repository ($REPO), built with `cargo build --release CARGO-ARGS` when missing.
release_binary() {
    local var="$1" env="$2" path="$3"
    shift 3
    if [ -n "${!env:-}" ]; then
        [ -x "${!env}" ] || die "$env=${!env} is not an executable file"
        path="${!env}"
    elif [ ! -x "$path" ]; then
        echo "== building $path (release; takes a few minutes the first time)"
        (cd "$REPO" && cargo build --release "$@") || die "the release build of $path failed"
    fi
    printf -v "$var" '%s' "$path"
}

# ----- processes and CLI ------------------------------------------------------------

# start NAME NETNS PROGRAM ARGS...: runs PROGRAM in NETNS in the background with its
# output in logs/NAME.log; sets STARTED to its PID (ip netns exec execs the program, so
# the PID is the program's own).
start() {
    local name="$1" ns="$2"
    shift 2
    SKYLAN_LOG="$LOG_FILTER" ip netns exec "$ns" "$@" >>"$WORK/logs/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# sky NETNS HOME ARGS...: the skylan CLI inside a namespace, with a timeout.
sky() {
    local ns="$1" home="$2"
    shift 2
    timeout 20 ip netns exec "$ns" "$SKY" --home "$home" "$@"
}

# wait_for WHAT SECONDS COMMAND...: retries COMMAND every 0.3 s until it succeeds.
wait_for() {
    local what="$1" limit="$2"
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$LAB_NAME: timed out after ${limit}s waiting for $what" >&2
            show_logs
            exit 1
        fi
        sleep 0.3
    done
}

show_logs() {
    local f
    for f in "$WORK"/logs/*.log; do
        [ -e "$f" ] || continue
        echo "----- last lines of $(basename "$f") -----" >&2
        tail -n 25 "$f" >&2
    done
}

check_alive() {
    running "$2" || { echo "$LAB_NAME: $1 (pid $2) exited" >&2; show_logs; exit 1; }
}

node_address() { cut -d: -f1 "$1/identity.public"; }

is_online() { sky "$1" "$2" info -j | jq -e '.online == true'; }

network_field() { # NETNS HOME NWID JQ-EXPR
    sky "$1" "$2" networks -j | jq -er --arg n "$3" ".[] | select(.nwid == \$n) | $4"
}

network_ok() {
    network_field "$1" "$2" "$3" 'select(.status == "OK") | .assignedAddresses[] | select(contains("."))'
}

# ----- skylan -----------------------------------------------------------------------

# lab_start_skylan [MEMBER-ARGS...]: a planet with one root, the controller node and
# members A and B (MEMBER-ARGS added to A's and B's `skylan node`), all online. Sets
# H_ROOT H_CTRL H_A H_B (homes), PID_ROOT PID_A PID_B, ADDR_A ADDR_B and B_CMD (B's
# command line, to start it again).
lab_start_skylan() {
    H_ROOT="$WORK/root" H_CTRL="$WORK/ctrl" H_A="$WORK/a" H_B="$WORK/b"
    mkdir -p "$H_ROOT" "$H_CTRL" "$H_A" "$H_B"
    "$SKY" idtool generate "$H_ROOT/identity.secret" "$H_ROOT/identity.public" >/dev/null
    "$SKY" idtool mkplanet --root "$H_ROOT/identity.public@$IP_ROOT/$PORT" --out "$WORK/planet" >/dev/null

    start root "$NS_ROOT" "$SKY" --home "$H_ROOT" root --port "$PORT" --planet "$WORK/planet"
    PID_ROOT=$STARTED
    start ctrl "$NS_CTRL" "$SKY" --home "$H_CTRL" node --port "$PORT" --planet "$WORK/planet" --controller
    start a "$NS_A" "$SKY" --home "$H_A" node --port "$PORT" --planet "$WORK/planet" "$@"
    PID_A=$STARTED
    B_CMD=("$SKY" --home "$H_B" node --port "$PORT" --planet "$WORK/planet" "$@")
    start b "$NS_B" "${B_CMD[@]}"
    PID_B=$STARTED

    local home
    for home in "$H_CTRL" "$H_A" "$H_B"; do
        wait_for "$(basename "$home") to write its identity" 60 test -s "$home/identity.public"
    done
    check_alive root "$PID_ROOT"
    ADDR_A="$(node_address "$H_A")"
    ADDR_B="$(node_address "$H_B")"
    wait_for "ctrl online" 60 is_online "$NS_CTRL" "$H_CTRL"
    wait_for "a online" 60 is_online "$NS_A" "$H_A"
    wait_for "b online" 60 is_online "$NS_B" "$H_B"
}

# lab_create_network NAME: a private network on the controller (pool $POOL, route
# $ROUTE); sets NWID.
lab_create_network() {
    NWID="$(sky "$NS_CTRL" "$H_CTRL" controller network create --name "$1" --pool "$POOL" \
        --route "$ROUTE" --private -j | jq -er .id)" || die "creating the network failed"
}

# lab_join_members: A and B join $NWID and are authorized; waits until both are OK and
# A pings B's managed address (sets OVL_B).
lab_join_members() {
    sky "$NS_A" "$H_A" join "$NWID" >/dev/null
    sky "$NS_B" "$H_B" join "$NWID" >/dev/null
    sky "$NS_CTRL" "$H_CTRL" controller member authorize "$NWID" "$ADDR_A" -j >/dev/null
    sky "$NS_CTRL" "$H_CTRL" controller member authorize "$NWID" "$ADDR_B" -j >/dev/null
    wait_for "a OK on $NWID" 60 network_ok "$NS_A" "$H_A" "$NWID"
    wait_for "b OK on $NWID" 60 network_ok "$NS_B" "$H_B" "$NWID"
    OVL_B="$(network_ok "$NS_B" "$H_B" "$NWID" | head -n1)"
    OVL_B="${OVL_B%%/*}"
    wait_for "a pinging b at $OVL_B" 60 ip netns exec "$NS_A" ping -c 1 -W 1 "$OVL_B"
}

# The counters of the daemon (node or root) whose home is HOME, from its /metrics, as
# "name value" lines: PREFIX_dropped_total{reason="R"} as drop_R, PREFIX_NAME_total as
# NAME. The local API is reached over bash's /dev/tcp, so no HTTP client is needed.
api_counters() { # NETNS HOME PREFIX
    local ns="$1" home="$2" prefix="$3"
    TOKEN="$(cat "$home/authtoken.secret")" PORT="$(cat "$home/skylan.port")" \
        timeout 5 ip netns exec "$ns" bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 0
        printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\nX-ZT1-Auth: %s\r\n\r\n" "$TOKEN" >&3
        cat <&3' | tr -d '\r' | awk -v p="$prefix" '
        index($1, p "_dropped_total{reason=\"") == 1 {
            r = substr($1, length(p) + 24); sub(/"}$/, "", r); print "drop_" r, $2; next }
        $1 ~ /^[a-z_]+_total$/ && index($1, p "_") == 1 {
            n = substr($1, length(p) + 2); sub(/_total$/, "", n); print n, $2 }' || true
}

# The UDP counters of a namespace's kernel (/proc/net/snmp) as "udp_NAME value" lines.
udp_counters() { # NETNS
    ip netns exec "$1" cat /proc/net/snmp | awk '$1 == "Udp:" {
        if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) print "udp_" n[i], $i }'
}

# ----- numbers ----------------------------------------------------------------------

# The median of the numbers on stdin (one a line); "-" when there are none.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

#!/usr/bin/env bash
# Side-by-side: the same audio workload against Janus 1.1.x (VideoRoom) and Parlor, both on loopback.
# Prints Parlor/Janus ratios of forwarded audio streams per server CPU-second and of one-way latency.
#
# Installs nothing. Needs root (it runs inside its own network namespace: `unshare -n`, `ip` from
# iproute2), Debian `janus` (apt-get install -y janus), python3, and release builds:
#   cargo build --release -p parlor -p parlor-load
# Both servers and the load generator run at the same priority; on a shared machine run it when idle.
# Knobs (env): ROOMS (10) PUBS (2) SUBS (8) DURATION (60 s) THREADS (1) JOIN_RATE (40)
#   CARGO_TARGET_DIR (target)  PARLOR_BIN  PARLOR_LOAD_BIN  JANUS_WS_PORT (8188)
#   PARLOR_HTTP_PORT (7880) PARLOR_UDP_PORT (7882) KEEP (1: keep the work dir)
set -euo pipefail

ROOMS=${ROOMS:-10}
PUBS=${PUBS:-2}
SUBS=${SUBS:-8}
DURATION=${DURATION:-60}
THREADS=${THREADS:-1}
JOIN_RATE=${JOIN_RATE:-40}
JANUS_WS_PORT=${JANUS_WS_PORT:-8188}
PARLOR_HTTP_PORT=${PARLOR_HTTP_PORT:-7880}
PARLOR_UDP_PORT=${PARLOR_UDP_PORT:-7882}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PARLOR_BIN=${PARLOR_BIN:-$TARGET/release/parlor}
LOAD_BIN=${PARLOR_LOAD_BIN:-$TARGET/release/parlor-load}
JANUS_LIB=${JANUS_LIB:-/usr/lib/x86_64-linux-gnu/janus}
# Janus (libnice) gathers no loopback candidates, so it needs a non-loopback address. Workplace rule:
# benchmarks only target loopback or test hosts in a network namespace we create. So the whole
# comparison re-executes itself inside a private network namespace (`unshare -n`, root) with `lo` and a
# dummy (or veth) interface 10.199.0.1/24 that exists only there: no packet can reach any real network.
if [ -z "${PARLOR_IN_NETNS:-}" ]; then
  command -v unshare >/dev/null || { echo "compare_janus: unshare (util-linux) needed" >&2; exit 1; }
  exec unshare -n env PARLOR_IN_NETNS=1 bash "$0" "$@"
fi
ip link set lo up
# A dummy interface where the kernel has the module, else a veth pair (containers often lack `dummy`).
if ! ip link add pl0 type dummy 2>/dev/null; then
  ip link add pl0 type veth peer name pl1 || { echo "compare_janus: cannot create a test interface" >&2; exit 1; }
  ip link set pl1 up
fi
ip addr add 10.199.0.1/24 dev pl0
ip link set pl0 up
HOST_IP=10.199.0.1

die() { echo "compare_janus: $*" >&2; exit 1; }

command -v janus >/dev/null || die "janus not found (Debian: apt-get install -y janus)"
JV=$( (janus --version 2>/dev/null || true) | sed -n 's/^Janus version: [0-9]* (\(.*\))/\1/p')
case "$JV" in
  1.1.*) ;;
  *) echo "compare_janus: warning: expected Janus 1.1.x, found '${JV:-unknown}'" >&2 ;;
esac
command -v python3 >/dev/null || die "python3 not found"
[ -x "$PARLOR_BIN" ] || die "$PARLOR_BIN missing: cargo build --release -p parlor -p parlor-load"
[ -x "$LOAD_BIN" ] || die "$LOAD_BIN missing: cargo build --release -p parlor -p parlor-load"
[ -d "$JANUS_LIB/plugins" ] || die "Janus plugins not found under $JANUS_LIB (set JANUS_LIB)"
[ -n "$HOST_IP" ] || die "no host address found (set HOST_IP)"

WORK=$(mktemp -d /tmp/parlor-vs-janus.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- Janus config (loopback only)
mkdir -p "$WORK/janus"
disable_except() { # dir keep.so → comma list of the others
  (cd "$1" && ls lib*.so 2>/dev/null | grep -v "^$2\$" | paste -sd, -)
}
cat > "$WORK/janus/janus.jcfg" <<EOF
general: {
  configs_folder = "$WORK/janus"
  plugins_folder = "$JANUS_LIB/plugins"
  transports_folder = "$JANUS_LIB/transports"
  events_folder = "$JANUS_LIB/events"
  loggers_folder = "$JANUS_LIB/loggers"
  debug_level = 2
  admin_secret = "not-used"
  session_timeout = 120
}
certificates: {
}
media: {
  rtp_port_range = "20000-40000"
}
nat: {
  nice_debug = false
  full_trickle = false
  ice_lite = false
  ice_tcp = false
  ignore_mdns = true
  ice_enforce_list = "$HOST_IP"
}
plugins: {
  disable = "$(disable_except "$JANUS_LIB/plugins" libjanus_videoroom.so)"
}
transports: {
  disable = "$(disable_except "$JANUS_LIB/transports" libjanus_websockets.so)"
}
loggers: {
  disable = "$(disable_except "$JANUS_LIB/loggers" none)"
}
events: {
  broadcast = false
  disable = "$(disable_except "$JANUS_LIB/events" none)"
}
EOF
cat > "$WORK/janus/janus.transport.websockets.jcfg" <<EOF
general: {
  json = "plain"
  ws = true
  ws_port = $JANUS_WS_PORT
  ws_ip = "127.0.0.1"
  wss = false
}
admin: {
  admin_ws = false
  admin_wss = false
}
EOF
cat > "$WORK/janus/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF

run_load() { # name pid url-and-target-args...
  local name=$1 pid=$2
  shift 2
  echo "== $name: $ROOMS rooms x ($PUBS publishers, $SUBS subscribers), ${DURATION}s" >&2
  "$LOAD_BIN" "$@" --rooms "$ROOMS" --publishers "$PUBS" --subscribers "$SUBS" \
    --duration "$DURATION" --threads "$THREADS" --join-rate "$JOIN_RATE" \
    --server-pid "$pid" --json-out "$WORK/$name.json" >/dev/null
}

# ---------------------------------------------------------------- Janus
janus -C "$WORK/janus/janus.jcfg" -F "$WORK/janus" -L "$WORK/janus.log" >/dev/null 2>&1 &
JPID=$!
PIDS+=("$JPID")
wait_port 127.0.0.1 "$JANUS_WS_PORT" 20 || { tail -20 "$WORK/janus.log" >&2; die "Janus did not start"; }
run_load janus "$JPID" --janus --url "ws://127.0.0.1:$JANUS_WS_PORT" --client-ip "$HOST_IP"
kill "$JPID" && wait "$JPID" 2>/dev/null || true

# ---------------------------------------------------------------- Parlor
KEY=APIbench
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$WORK/parlor"
# Every participant holds a signaling WebSocket from 127.0.0.1: raise the per-IP HTTP connection limit
# (default 256) above the participant count, or joins past 256 fail (e.g. 25 x (2, 10) = 300).
PARLOR_LIMITS_HTTP_MAX_CONNECTIONS_PER_IP=$((ROOMS * (PUBS + SUBS) + 64)) \
PARLOR_KEYS="$KEY:$SECRET" PARLOR_TURN_ENABLED=false RUST_LOG=warn \
  "$PARLOR_BIN" serve --bind "127.0.0.1:$PARLOR_HTTP_PORT" --data-dir "$WORK/parlor" \
  --udp-port "$PARLOR_UDP_PORT" >"$WORK/parlor.log" 2>&1 &
PPID_=$!
PIDS+=("$PPID_")
wait_port 127.0.0.1 "$PARLOR_HTTP_PORT" 20 || { tail -20 "$WORK/parlor.log" >&2; die "Parlor did not start"; }
run_load parlor "$PPID_" --url "ws://127.0.0.1:$PARLOR_HTTP_PORT" --api-key "$KEY" --api-secret "$SECRET"
kill "$PPID_" && wait "$PPID_" 2>/dev/null || true

# ---------------------------------------------------------------- Ratios
python3 - "$WORK/parlor.json" "$WORK/janus.json" <<'EOF'
import json, sys
p, j = (json.load(open(f)) for f in sys.argv[1:3])
def row(name, f, unit=""):
    a, b = f(p), f(j)
    r = f"{a / b:>8.2f}x" if b else f"{'-':>9}"
    print(f"{name:<34} {a:>12.3f} {b:>12.3f} {r} {unit}")
print(f"{'':<34} {'parlor':>12} {'janus':>12} {'ratio':>9}")
row("forwarded streams", lambda s: s["forwarded_streams"])
row("server CPU % (1 core = 100)", lambda s: s["server"]["cpu_pct"])
row("streams per server CPU-second", lambda s: s["server"]["streams_per_cpu_sec"])
row("received packets/s", lambda s: s["received_pps"])
row("loss %", lambda s: s["loss_pct"])
row("latency p50 ms", lambda s: s["latency_ms"]["p50"])
row("latency p99 ms", lambda s: s["latency_ms"]["p99"])
row("join-to-first-packet p50 ms", lambda s: s["first_packet_ms"]["p50"])
row("server RSS end MB", lambda s: s["server"]["rss_kb_end"] / 1024)
print()
print("ratio streams/CPU-s (parlor/janus): %.2f (target >= 2)" %
      (p["server"]["streams_per_cpu_sec"] / j["server"]["streams_per_cpu_sec"]))
print("ratio latency p50 (parlor/janus): %.2f, p99: %.2f (lower is better)" %
      (p["latency_ms"]["p50"] / j["latency_ms"]["p50"], p["latency_ms"]["p99"] / j["latency_ms"]["p99"]))
EOF

#!/usr/bin/env bash
# A/B of two server builds on the same audio workload, alternating, for changes whose effect is
# smaller than this machine's run-to-run noise: each run starts a fresh server from the given binary,
# runs parlor-load against it (loopback), and prints forwarded streams, loss, server CPU, streams per
# server CPU-second, p99 latency, the generator's CPU and the media threads' voluntary context
# switches (read at the end of the run). Usage:
#   benches/ab_load.sh A=/path/to/parlor-before B=/path/to/parlor-after [A B ...]
# (each X=bin argument names side X and runs it once; each bare X runs it again, in order).
# Knobs (env): ROOMS (25) PUBS (2) SUBS (10) DURATION (30) PARLOR_LOAD_BIN (target/release/parlor-load)
# Needs release builds: cargo build --release -p parlor -p parlor-load (copy the binary aside per side).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOMS=${ROOMS:-25} PUBS=${PUBS:-2} SUBS=${SUBS:-10} DURATION=${DURATION:-30}
LOAD=${PARLOR_LOAD_BIN:-${CARGO_TARGET_DIR:-target}/release/parlor-load}
declare -A BIN
order=()
for a in "$@"; do
  case "$a" in
    *=*) BIN[${a%%=*}]=${a#*=}; order+=("${a%%=*}") ;;
    *) order+=("$a") ;;
  esac
done
[ ${#order[@]} -gt 0 ] || { echo "usage: $0 A=bin B=bin [A B ...]" >&2; exit 2; }
n=0
for tag in "${order[@]}"; do
  bin=${BIN[$tag]:?no binary for $tag}
  n=$((n + 1)); out=$(mktemp --suffix=.json); data=$(mktemp -d)
  PARLOR_KEYS="APIload:loadsecret0123456789abcdef0123" PARLOR_TURN_ENABLED=false RUST_LOG=warn \
    PARLOR_RTC_TCP_PORT=0 PARLOR_LIMITS_HTTP_MAX_CONNECTIONS_PER_IP=4000 \
    "$bin" serve --bind 127.0.0.1:7880 --data-dir "$data" --udp-port 7882 >/dev/null 2>&1 &
  pid=$!
  sleep 2
  "$LOAD" --url ws://127.0.0.1:7880 --api-key APIload --api-secret loadsecret0123456789abcdef0123 \
    --rooms "$ROOMS" --publishers "$PUBS" --subscribers "$SUBS" --duration "$DURATION" \
    --server-pid "$pid" --json-out "$out" >/dev/null 2>&1 || true
  cs=0
  for t in /proc/$pid/task/*; do
    if grep -q media "$t/comm" 2>/dev/null; then
      cs=$((cs + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")))
    fi
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$n" "$tag" "$out" "$cs" <<'PY'
import json, sys
n, tag, path, cs = sys.argv[1:5]
j = json.load(open(path)); s = j["server"]
print(f"run {n} {tag}: streams {j['forwarded_streams']} (joins failed {j['joins_failed']}) loss {j['loss_pct']:.3f}% "
      f"server {s['cpu_pct']:.1f}% = {s['streams_per_cpu_sec']:.0f} streams/CPU-s, p99 {j['latency_ms']['p99']} ms, "
      f"generator {j['loadgen_cpu_pct']:.1f}%, media-thread context switches {cs}")
PY
  rm -rf "$data" "$out"
done

#!/usr/bin/env bash
# Load benchmark of the release binary on loopback, in dry-run (no Sipgate in the path):
# notifications per second at saturation (1 alert, 1 recipient), the same for a bare actix-web JSON
# endpoint as the upper bound, latency at a fixed 1,000 notifications per second, idle and peak
# RSS, start-up time to ready, and binary size.
#
#   bash benches/load.sh            # DURATION=10s CONNECTIONS=32
#
# Needs wrk, hey and curl (apt-get install wrk hey curl). Everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-19716}
BARE_PORT=${BARE_PORT:-19800}
for tool in wrk hey curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install wrk hey curl" >&2; exit 1; }
done

cargo build --quiet --release --bin alertmanager-sipgate --example bare-endpoint
BIN=target/release/alertmanager-sipgate

W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

# One route, one recipient; a 1 ms dedup window so that every request takes the whole path
# instead of being answered from the ledger as a duplicate.
cat >"$W/config.yml" <<YAML
recipients: {alice: "+4915112345678"}
routes: [{name: load, to: [alice]}]
delivery: {dedup_window: 1ms}
YAML
cp tests/fixtures/alertmanager-0.25/firing-diskfull.json "$W/payload.json"

rss() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# Start-up: from exec to the first 200 on /-/ready, polled every millisecond.
START_MS=$(python3 - "$BIN" "$W/config.yml" "$PORT" <<'PY'
import socket, subprocess, sys, time
binary, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.monotonic()
p = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                      "--dry-run", "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
            s.sendall(b"GET /-/ready HTTP/1.0\r\n\r\n")
            if s.recv(16).split(b" ")[1:2] == [b"200"]:
                break
    except OSError:
        pass
    if time.monotonic() - started > 10:
        sys.exit("not ready after 10 s")
    time.sleep(0.001)
print(f"{(time.monotonic() - started) * 1000:.1f}")
p.kill(); p.wait()
PY
)

"$BIN" --config.file="$W/config.yml" --web.listen-address="127.0.0.1:$PORT" --dry-run \
  --log.level=error 2>"$W/service.log" &
SERVICE=$!
PIDS+=($SERVICE)
target/release/examples/bare-endpoint "127.0.0.1:$BARE_PORT" &
PIDS+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/" && break
  sleep 0.05
done
sleep 1
IDLE_KB=$(rss "$SERVICE" VmRSS)

cat >"$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("PAYLOAD"), "r"); wrk.body = f:read("*a"); f:close()
LUA
saturate() {
  PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$W/post.lua" "$1" |
    awk '/Requests\/sec/ {print $2}'
}
# Warm-up, then the measured runs.
PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d2s -s "$W/post.lua" "http://127.0.0.1:$PORT/alerts" >/dev/null
OURS=$(saturate "http://127.0.0.1:$PORT/alerts")
BARE=$(saturate "http://127.0.0.1:$BARE_PORT/alerts")

# Fixed rate: 10 workers x 100 requests per second = 1,000 per second.
hey -z "$DURATION" -c 10 -q 100 -m POST -T application/json -D "$W/payload.json" \
  "http://127.0.0.1:$PORT/alerts" >"$W/hey.txt"
PEAK_KB=$(rss "$SERVICE" VmHWM)
CODES=$(curl -s "http://127.0.0.1:$PORT/metrics" | grep '^alertmanager_sipgate_requests_total{.*endpoint="/alerts"}' || true)

echo "== result ($(nproc) cores, $DURATION per run, $CONNECTIONS connections)"
awk -v o="$OURS" -v b="$BARE" 'BEGIN {printf "saturation, dry-run:    %.0f notifications/s\nbare actix-web:         %.0f requests/s\nratio:                  %.0f %%\n", o, b, 100 * o / b}'
awk '/Requests\/sec/ {printf "fixed rate:             %.0f notifications/s\n", $2}
     / 50% in / {printf "  p50:                  %.2f ms\n", $3 * 1000}
     / 99% in / {printf "  p99:                  %.2f ms\n", $3 * 1000}' "$W/hey.txt"
grep -A3 'Status code distribution' "$W/hey.txt" | sed 's/^/  /'
echo "RSS idle:               $((IDLE_KB / 1024)) MiB ($IDLE_KB kB)"
echo "RSS peak:               $((PEAK_KB / 1024)) MiB ($PEAK_KB kB)"
echo "start-up to ready:      $START_MS ms"
echo "binary size:            $(stat -c %s "$BIN" | awk '{printf "%.1f MiB (%d bytes)", $1 / 1048576, $1}')"
echo "$CODES"

#!/usr/bin/env bash
# Load benchmark of the release binary on loopback. In dry-run (no Sipgate in the path):
# notifications per second at saturation (1 alert, 1 recipient), in rounds that alternate with a
# bare actix-web JSON endpoint (the upper bound) and report our throughput as a fraction of it;
# latency at a fixed 1,000 notifications per second; idle and peak RSS; start-up time to ready;
# binary size. Then the same saturation and fixed-rate runs with every SMS sent to the fake
# Sipgate (examples/fake_sipgate.rs) on loopback, answering at once. Last, the sending path on
# each state backend (memory, file, a local redis-server): notifications per second, the
# service's own CPU time per notification (from /proc/PID/stat) and Redis commands per SMS.
#
#   bash benches/load.sh            # ROUNDS=5 DURATION=5s FIXED_DURATION=10s CONNECTIONS=32
#
# Needs wrk, hey, curl and redis-server (apt-get install wrk hey curl redis-server). Everything
# stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
FIXED_DURATION=${FIXED_DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-19716}
BARE_PORT=${BARE_PORT:-19800}
SENDING_PORT=${SENDING_PORT:-19717}
FAKE_PORT=${FAKE_PORT:-19801}
REDIS_PORT=${REDIS_PORT:-19802}
BACKEND_PORT=${BACKEND_PORT:-19720}
for tool in wrk hey curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install wrk hey curl redis-server" >&2; exit 1; }
done

cargo build --quiet --release --bin alertmanager-sipgate --example bare-endpoint --example fake-sipgate
# BIN=... measures another build of the service (for a before/after comparison).
BIN=${BIN:-target/release/alertmanager-sipgate}

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

# Every request a new alert (its fingerprint numbered per wrk thread), so that none is answered
# from the ledger as a duplicate of one sent a moment ago.
cat >"$W/post.lua" <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  local f = io.open(os.getenv("PAYLOAD"), "r"); local body = f:read("*a"); f:close()
  prefix, suffix = body:match('^(.*"fingerprint":")%x+(".*)$')
  n = 0
end
function request()
  n = n + 1
  local fingerprint = string.format("%04x%012x", id, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, prefix .. fingerprint .. suffix)
end
LUA
saturate() {
  PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$W/post.lua" "$1" |
    awk '/Requests\/sec/ {print $2}'
}
# Warm-up, then rounds that alternate between the two servers, so that a slow spell of the
# machine hits both; the medians and the per-round ratios are reported.
for url in "http://127.0.0.1:$PORT/alerts" "http://127.0.0.1:$BARE_PORT/alerts"; do
  PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d2s -s "$W/post.lua" "$url" >/dev/null
done
: >"$W/rounds"
for round in $(seq "$ROUNDS"); do
  ours=$(saturate "http://127.0.0.1:$PORT/alerts")
  bare=$(saturate "http://127.0.0.1:$BARE_PORT/alerts")
  echo "$ours $bare" >>"$W/rounds"
  awk -v r="$round" -v o="$ours" -v b="$bare" \
    'BEGIN {printf "round %d: %.0f vs %.0f requests/s (%.0f %%)\n", r, o, b, 100 * o / b}'
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
OURS=$(awk '{print $1}' "$W/rounds" | median)
BARE=$(awk '{print $2}' "$W/rounds" | median)
RATIO=$(awk '{print 100 * $1 / $2}' "$W/rounds" | median)
RATIO_RANGE=$(awk '{print 100 * $1 / $2}' "$W/rounds" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f to %.0f %%", lo, hi}')

# Fixed rate: 10 clients x 100 requests per second = 1,000 per second. Each client posts its own
# alert, 10 ms apart, so none is a duplicate within the 1 ms dedup window either.
for i in $(seq 10); do
  sed "s/\"fingerprint\":\"[0-9a-f]*\"/\"fingerprint\":\"$(printf '%016x' "$i")\"/" \
    "$W/payload.json" >"$W/payload-$i.json"
done
fixed_rate() {
  local clients=()
  for i in $(seq 10); do
    hey -z "$FIXED_DURATION" -c 1 -q 100 -m POST -T application/json -D "$W/payload-$i.json" \
      -o csv "$1" >"$W/hey-$i.csv" &
    clients+=($!)
  done
  wait "${clients[@]}"
  tail -q -n +2 "$W"/hey-*.csv >"$2"
}
fixed_rate "http://127.0.0.1:$PORT/alerts" "$W/fixed.csv"
PEAK_KB=$(rss "$SERVICE" VmHWM)
CODES=$(curl -s "http://127.0.0.1:$PORT/metrics" |
  grep -E '^alertmanager_sipgate_(requests_total\{.*endpoint="/alerts"|sms_suppressed_total)' || true)

# The same with Sipgate in the path: every SMS goes over HTTP to the fake Sipgate on loopback,
# which accepts it at once.
target/release/examples/fake-sipgate --listen "127.0.0.1:$FAKE_PORT" --delay 0ms --quiet \
  2>"$W/fake.log" &
PIDS+=($!)
cat >"$W/sending.yml" <<YAML
sipgate:
  api_url: http://127.0.0.1:$FAKE_PORT/v2
  token_id: token-AB12CD
  token: 00000000-1111-4222-8333-444444444444
recipients: {alice: "+4915112345678"}
routes: [{name: load, to: [alice]}]
delivery: {dedup_window: 1ms}
YAML
"$BIN" --config.file="$W/sending.yml" --web.listen-address="127.0.0.1:$SENDING_PORT" \
  --log.level=error 2>"$W/sending.log" &
SENDING=$!
PIDS+=($SENDING)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SENDING_PORT/-/ready" >/dev/null && break; sleep 0.05; done
PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d2s -s "$W/post.lua" \
  "http://127.0.0.1:$SENDING_PORT/alerts" >/dev/null
SENDING_RATE=$(saturate "http://127.0.0.1:$SENDING_PORT/alerts")
fixed_rate "http://127.0.0.1:$SENDING_PORT/alerts" "$W/fixed-sending.csv"
SENDING_PEAK_KB=$(rss "$SENDING" VmHWM)
SENT=$(curl -s "http://127.0.0.1:$SENDING_PORT/metrics" |
  grep -E '^alertmanager_sipgate_sms_(sent|suppressed)_total' || true)

# The sending path on each state backend, in rounds that alternate between them. The service's
# CPU time (user + system) over a run, divided by the notifications wrk completed.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$W" >"$W/redis.log" 2>&1 &
REDIS=$!
PIDS+=($REDIS)
for _ in $(seq 100); do [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
declare -A BACKEND_PID BACKEND_URL
port=$BACKEND_PORT
for backend in memory file redis; do
  case $backend in
    memory) state='{memory: {}}' ;;
    file) state="{file: $W/state.redb}" ;;
    redis) state="{redis: {url: \"redis://127.0.0.1:$REDIS_PORT/0\"}}" ;;
  esac
  sed '/^delivery:/d' "$W/sending.yml" >"$W/$backend.yml"
  echo "delivery: {dedup_window: 1ms}" >>"$W/$backend.yml"
  echo "state: $state" >>"$W/$backend.yml"
  "$BIN" --config.file="$W/$backend.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=error 2>"$W/$backend.log" &
  BACKEND_PID[$backend]=$!
  PIDS+=($!)
  BACKEND_URL[$backend]="http://127.0.0.1:$port"
  port=$((port + 1))
done
for backend in memory file redis; do
  for _ in $(seq 100); do curl -sf "${BACKEND_URL[$backend]}/-/ready" >/dev/null && break; sleep 0.05; done
  PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d2s -s "$W/post.lua" \
    "${BACKEND_URL[$backend]}/alerts" >/dev/null
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
REDIS_SENT_BEFORE=$(curl -s "${BACKEND_URL[redis]}/metrics" |
  awk '/^alertmanager_sipgate_sms_sent_total/ {s += $2} END {print s + 0}')
: >"$W/backends"
for round in $(seq "$ROUNDS"); do
  for backend in memory file redis; do
    pid=${BACKEND_PID[$backend]}
    before=$(cpu_ticks "$pid")
    redis_before=$(cpu_ticks "$REDIS")
    done_requests=$(PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" \
      -s "$W/post.lua" "${BACKEND_URL[$backend]}/alerts" |
      awk '/requests in/ {print $1} /Requests\/sec/ {print $2}' | paste -sd' ')
    after=$(cpu_ticks "$pid")
    redis_after=$(cpu_ticks "$REDIS")
    echo "$backend $done_requests $((after - before)) $((redis_after - redis_before))" >>"$W/backends"
  done
done
REDIS_SENT=$(( $(curl -s "${BACKEND_URL[redis]}/metrics" |
  awk '/^alertmanager_sipgate_sms_sent_total/ {s += $2} END {print s + 0}') - REDIS_SENT_BEFORE ))
REDIS_STATS=$(redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r')
BACKENDS_FAILED=$(for backend in memory file redis; do
  curl -s "${BACKEND_URL[$backend]}/metrics" |
    grep -E '^alertmanager_sipgate_(state_errors_total|sms_failed_total)\{' |
    awk -v b="$backend" '$2 > 0 {print b ": " $0}'
done)

# Rate, p50 and p99 of the response times, and the status codes, from hey's per-request CSV.
latency() {
  python3 - "$1" "$FIXED_DURATION" <<'PY'
import collections, csv, sys
rows = list(csv.reader(open(sys.argv[1])))
times = sorted(float(r[0]) for r in rows)
seconds = float(sys.argv[2].rstrip("s"))
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
print(f"  rate:                 {len(times) / seconds:.0f} notifications/s")
print(f"  p50:                  {pick(0.50):.2f} ms")
print(f"  p99:                  {pick(0.99):.2f} ms")
codes = collections.Counter(r[6] for r in rows)
print("  status codes:         " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())))
PY
}

echo "== result ($(nproc) cores, $DURATION per run, $CONNECTIONS connections)"
awk -v o="$OURS" -v b="$BARE" -v r="$RATIO" -v range="$RATIO_RANGE" 'BEGIN {printf "saturation, dry-run:    %.0f notifications/s (median of rounds)\nbare actix-web:         %.0f requests/s (median of rounds)\nratio:                  %.0f %% (median of rounds; %s)\n", o, b, r, range}'
echo "fixed rate, dry-run:"
latency "$W/fixed.csv"
echo "RSS idle:               $((IDLE_KB / 1024)) MiB ($IDLE_KB kB)"
echo "RSS peak:               $((PEAK_KB / 1024)) MiB ($PEAK_KB kB)"
echo "start-up to ready:      $START_MS ms"
echo "binary size:            $(stat -c %s "$BIN" | awk '{printf "%.1f MiB (%d bytes)", $1 / 1048576, $1}')"
echo "$CODES"
echo "saturation, sending:    $SENDING_RATE notifications/s (fake Sipgate answering at once)"
echo "fixed rate, sending:"
latency "$W/fixed-sending.csv"
echo "RSS peak, sending:      $((SENDING_PEAK_KB / 1024)) MiB ($SENDING_PEAK_KB kB)"
echo "$SENT"
echo "sending path by state backend (median of $ROUNDS rounds; CPU per notification: the service's own):"
python3 - "$W/backends" "$TICK" "$REDIS_SENT" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    backend, requests, rate, ticks, redis_ticks = line.split()
    rows[backend].append((float(rate), int(ticks) / int(sys.argv[2]) / int(requests) * 1e6,
                          int(redis_ticks) / int(sys.argv[2]) / int(requests) * 1e6))
memory = statistics.median(r[0] for r in rows["memory"])
for backend in ("memory", "file", "redis"):
    rate = statistics.median(r[0] for r in rows[backend])
    cpu = statistics.median(r[1] for r in rows[backend])
    extra = ""
    if backend == "redis":
        extra = f"; redis-server {statistics.median(r[2] for r in rows[backend]):.1f} us"
    print(f"  {backend:7s} {rate:8.0f} notifications/s  {100 * rate / memory:5.1f} % of memory"
          f"  CPU {cpu:5.1f} us/notification{extra}")
PY
echo "redis commands from the service per SMS sent ($REDIS_SENT SMS):"
echo "$REDIS_STATS" | awk -F'[:=,]' -v sent="$REDIS_SENT" \
  '/^cmdstat_(evalsha|eval|ping|script)/ {printf "  %-10s %d calls, %.2f per SMS\n", substr($1, 9), $3, $3 / sent}'
echo "  (besides these it sends GET only while it waits for an SMS in flight elsewhere)"
[ -z "$BACKENDS_FAILED" ] || { echo "failures on a backend:"; echo "$BACKENDS_FAILED"; }

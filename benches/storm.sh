#!/usr/bin/env bash
# Alert storm: N distinct notifications (1 alert, 1 recipient each) as fast as the service answers,
# against a fake Sipgate that takes DELAY per SMS, with the default concurrency limit.
# Reports notifications answered per second, status codes, SMS accepted, idle and peak RSS.
#
#   bash benches/storm.sh                 # N=10000 CONNECTIONS=50 DELAY=50ms
#   N=20000 bash benches/storm.sh
#
# Needs wrk (apt-get install wrk) and curl. Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
CONNECTIONS=${CONNECTIONS:-50}
DELAY=${DELAY:-50ms}
FAKE_PORT=${FAKE_PORT:-18089}
PORT=${PORT:-19716}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --quiet --release --bin alertmanager-sipgate --example fake-sipgate

W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

target/release/examples/fake-sipgate --listen "127.0.0.1:$FAKE_PORT" --delay "$DELAY" --quiet \
  2>"$W/fake.log" &
PIDS+=($!)

cat >"$W/config.yml" <<YAML
sipgate:
  api_url: http://127.0.0.1:$FAKE_PORT/v2
  token_id: token-AB12CD
  token: 00000000-1111-4222-8333-444444444444
recipients:
  alice: "+4915228817386"
routes:
  - name: storm
    to: [alice]
YAML

target/release/alertmanager-sipgate --config.file="$W/config.yml" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=error 2>"$W/service.log" &
SERVICE=$!
PIDS+=($SERVICE)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null || { cat "$W/service.log"; exit 1; }
sleep 1
IDLE_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVICE/status")

cat >"$W/storm.lua" <<LUA
local n, limit = 0, $N
request = function()
  if n >= limit then
    wrk.thread:stop()
  end
  n = n + 1
  local body = string.format(
    '{"receiver":"sms","status":"firing","groupKey":"{}:{alertname=\\\\"Storm%d\\\\"}","version":"4",' ..
    '"alerts":[{"status":"firing","labels":{"alertname":"Storm%d","instance":"host%d:9100","severity":"critical"},' ..
    '"annotations":{"summary":"Storm alert number %d"},"startsAt":"2026-11-25T09:00:00Z",' ..
    '"endsAt":"0001-01-01T00:00:00Z","fingerprint":"%016x"}]}', n, n, n % 97, n, n)
  return wrk.format("POST", "/alerts", {["Content-Type"] = "application/json"}, body)
end
LUA

answered() {
  curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk 'index($0, "alertmanager_sipgate_requests_total{") == 1 && /endpoint="\/alerts"/ {s += $NF} END {print s + 0}'
}

echo "storm: $N notifications, $CONNECTIONS connections, fake Sipgate delay $DELAY"
# wrk runs for a duration, not a count: stop it with SIGINT (it then prints its summary) once N
# notifications were answered; the Lua script stops sending at N as well.
wrk -t1 -c"$CONNECTIONS" -d600s --timeout 10s --latency -s "$W/storm.lua" "http://127.0.0.1:$PORT" >"$W/wrk.txt" &
WRK=$!
PIDS+=($WRK)
STARTED=$(date +%s.%N)
while [ "$(answered)" -lt "$N" ] && kill -0 "$WRK" 2>/dev/null; do sleep 0.2; done
ENDED=$(date +%s.%N)
kill -INT "$WRK" 2>/dev/null || true
wait "$WRK" || true
cat "$W/wrk.txt"

PEAK_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVICE/status")
AFTER_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVICE/status")
METRICS=$(curl -sf "http://127.0.0.1:$PORT/metrics")
sum() { printf '%s\n' "$METRICS" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

echo
echo "== result"
ANSWERED=$(answered)
awk -v n="$ANSWERED" -v a="$STARTED" -v b="$ENDED" \
  'BEGIN {printf "answered:              %d notifications in %.1f s = %.0f per second\n", n, b - a, n / (b - a)}'
echo "answered 200:          $(sum 'alertmanager_sipgate_requests_total{code="200",endpoint="/alerts"}')"
echo "answered 502:          $(sum 'alertmanager_sipgate_requests_total{code="502",endpoint="/alerts"}')"
echo "SMS accepted by fake:  $(sum 'alertmanager_sipgate_sms_sent_total')"
echo "SMS failed:            $(sum 'alertmanager_sipgate_sms_failed_total')"
echo "RSS idle:              $((IDLE_KB / 1024)) MiB ($IDLE_KB kB)"
echo "RSS peak:              $((PEAK_KB / 1024)) MiB ($PEAK_KB kB)"
echo "RSS after:             $((AFTER_KB / 1024)) MiB ($AFTER_KB kB)"

#!/usr/bin/env bash
# Load benchmark of the release binary on loopback, side by side with a bare actix-web JSON
# endpoint (the upper bound: it parses the body and answers, nothing else).
#
# Saturation: wrk posts one-alert notifications (a new fingerprint in every request, one
# recipient) to each server in turn, in rounds that alternate between them so that a slow spell
# of the machine hits all of them. Servers: the bare endpoint; the service in dry-run; the service
# sending every SMS over HTTP to the fake Sipgate (examples/fake_sipgate.rs, answering at once)
# with each state backend (memory, file, a local redis-server). For each: notifications per
# second, the server's own CPU time per notification (user + system, from /proc/PID/stat), that
# CPU time as a multiple of the bare endpoint's in the same round, p99 latency and peak RSS.
# Then latency at a fixed 1,000 notifications per second, idle RSS, start-up time to ready and
# binary size.
#
#   bash benches/load.sh            # ROUNDS=3 DURATION=8s FIXED_DURATION=10s CONNECTIONS=32
#   BIN=/path/to/other/alertmanager-sipgate bash benches/load.sh   # another build, same method
#
# Needs wrk, hey, curl and redis-server (apt-get install wrk hey curl redis-server). Everything
# stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
FIXED_DURATION=${FIXED_DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-19716}
for tool in wrk hey curl redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install wrk hey curl redis-server python3" >&2; exit 1; }
done

cargo build --quiet --release --bin alertmanager-sipgate --example bare-endpoint --example fake-sipgate
# BIN=... measures another build of the service (for a before/after comparison).
BIN=${BIN:-target/release/alertmanager-sipgate}

W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

BARE_PORT=$BASE_PORT
FAKE_PORT=$((BASE_PORT + 1))
REDIS_PORT=$((BASE_PORT + 2))
STARTUP_PORT=$((BASE_PORT + 3))

# One route, one recipient; a 1 ms dedup window so that every request takes the whole path
# instead of being answered from the ledger as a duplicate.
cat >"$W/dry-run.yml" <<YAML
recipients: {alice: "+4915228817386"}
routes: [{name: load, to: [alice]}]
delivery: {dedup_window: 1ms}
YAML
cp tests/fixtures/alertmanager-0.25/firing-diskfull.json "$W/payload.json"

rss() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# Start-up: from exec to the first 200 on /-/ready, polled every millisecond.
START_MS=$(python3 - "$BIN" "$W/dry-run.yml" "$STARTUP_PORT" <<'PY'
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

target/release/examples/fake-sipgate --listen "127.0.0.1:$FAKE_PORT" --delay 0ms --quiet \
  2>"$W/fake.log" &
PIDS+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$W" >"$W/redis.log" 2>&1 &
REDIS=$!
PIDS+=($REDIS)
for _ in $(seq 100); do [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done

SERVERS=(bare dry-run memory file redis)
declare -A PID URL
port=$((BASE_PORT + 4))
for server in "${SERVERS[@]}"; do
  URL[$server]="http://127.0.0.1:$port"
  case $server in
    bare)
      target/release/examples/bare-endpoint "127.0.0.1:$port" & ;;
    dry-run)
      "$BIN" --config.file="$W/dry-run.yml" --web.listen-address="127.0.0.1:$port" --dry-run \
        --log.level=error 2>"$W/$server.log" & ;;
    *)
      case $server in
        memory) state='{memory: {}}' ;;
        file) state="{file: $W/state.redb}" ;;
        redis) state="{redis: {url: \"redis://127.0.0.1:$REDIS_PORT/0\"}}" ;;
      esac
      cat >"$W/$server.yml" <<YAML
sipgate:
  api_url: http://127.0.0.1:$FAKE_PORT/v2
  token_id: token-AB12CD
  token: 00000000-1111-4222-8333-444444444444
recipients: {alice: "+4915228817386"}
routes: [{name: load, to: [alice]}]
delivery: {dedup_window: 1ms}
state: $state
YAML
      "$BIN" --config.file="$W/$server.yml" --web.listen-address="127.0.0.1:$port" \
        --log.level=error 2>"$W/$server.log" & ;;
  esac
  PID[$server]=$!
  PIDS+=($!)
  port=$((port + 1))
done
for server in "${SERVERS[@]}"; do
  path=/-/ready
  [ "$server" = bare ] && path=/
  for _ in $(seq 100); do curl -s -o /dev/null "${URL[$server]}$path" && break; sleep 0.05; done
done
sleep 1
IDLE_DRY_KB=$(rss "${PID[dry-run]}" VmRSS)
IDLE_SENDING_KB=$(rss "${PID[memory]}" VmRSS)

# Every request a new alert (its fingerprint numbered per run and wrk thread), so that none is
# answered from the ledger as a duplicate of one sent a moment ago.
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
  local fingerprint = string.format("%04x%02x%010x", tonumber(os.getenv("RUN")), id, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, prefix .. fingerprint .. suffix)
end
LUA
# One saturation run: "requests rate p99_ms non_2xx".
echo 0 >"$W/runs"
saturate() {
  local run=$(($(cat "$W/runs") + 1))
  echo "$run" >"$W/runs"
  RUN=$run PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d"$1" --latency -s "$W/post.lua" "$2/alerts" |
    awk '/requests in/ {n = $1}
         /Requests\/sec/ {rate = $2}
         $1 == "99%" {v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[^m]s$/) ms *= 1000; p99 = ms}
         /Non-2xx/ {bad = $NF}
         END {printf "%d %s %.3f %d\n", n, rate, p99, bad}'
}
for server in "${SERVERS[@]}"; do saturate 2s "${URL[$server]}" >/dev/null; done
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
sent_total() {
  curl -s "$1/metrics" | awk '/^alertmanager_sipgate_sms_sent_total/ {s += $2} END {print s + 0}'
}
REDIS_SENT_BEFORE=$(sent_total "${URL[redis]}")
: >"$W/rounds"
for round in $(seq "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    pid=${PID[$server]}
    before=$(cpu_ticks "$pid")
    redis_before=$(cpu_ticks "$REDIS")
    result=$(saturate "$DURATION" "${URL[$server]}")
    after=$(cpu_ticks "$pid")
    redis_after=$(cpu_ticks "$REDIS")
    redis_ticks=0
    [ "$server" = redis ] && redis_ticks=$((redis_after - redis_before))
    echo "$round $server $result $((after - before)) $redis_ticks" >>"$W/rounds"
  done
done
REDIS_SENT=$(( $(sent_total "${URL[redis]}") - REDIS_SENT_BEFORE ))
REDIS_STATS=$(redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r')
# What the services counted: no SMS may have been a duplicate (each request took the whole path)
# and none may have failed.
CHECKS=$(for server in dry-run memory file redis; do
  curl -s "${URL[$server]}/metrics" |
    grep -E '^alertmanager_sipgate_(sms_suppressed_total|sms_failed_total|state_errors_total)\{' |
    awk -v s="$server" '$2 > 0 {print "  " s ": " $0}'
done)
: >"$W/peak"
for server in "${SERVERS[@]}"; do echo "$server $(rss "${PID[$server]}" VmHWM)" >>"$W/peak"; done

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
      -o csv "$1/alerts" >"$W/hey-$i.csv" &
    clients+=($!)
  done
  wait "${clients[@]}"
  tail -q -n +2 "$W"/hey-*.csv >"$2"
}
fixed_rate "${URL[dry-run]}" "$W/fixed-dry-run.csv"
fixed_rate "${URL[memory]}" "$W/fixed-sending.csv"

echo "== result ($(nproc) cores, $ROUNDS rounds of $DURATION per server, wrk -t2 -c$CONNECTIONS)"
python3 - "$W/rounds" "$TICK" "$W/peak" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, server, requests, rate, p99, bad, ticks, redis_ticks = line.split()
    tick = int(sys.argv[2])
    rows[server][rnd] = dict(
        rate=float(rate), p99=float(p99), bad=int(bad),
        cpu=int(ticks) / tick / int(requests) * 1e6,
        redis=int(redis_ticks) / tick / int(requests) * 1e6)
targets = {"dry-run": 1.6, "memory": 3.0, "file": None, "redis": 4.5}
labels = {"bare": "bare actix-web endpoint", "dry-run": "dry-run",
          "memory": "sending, memory state", "file": "sending, file state",
          "redis": "sending, redis state"}
print(f"{'server':25s} {'notif./s':>9s} {'CPU/notif.':>11s} {'x bare (range)':>20s} {'target':>7s} {'p99':>8s}")
for server in ("bare", "dry-run", "memory", "file", "redis"):
    runs = rows[server]
    rate = statistics.median(r["rate"] for r in runs.values())
    cpu = statistics.median(r["cpu"] for r in runs.values())
    p99 = statistics.median(r["p99"] for r in runs.values())
    ratio = ""
    target = ""
    if server != "bare":
        ratios = sorted(runs[k]["cpu"] / rows["bare"][k]["cpu"] for k in runs)
        ratio = f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        if targets[server]:
            verdict = "met" if statistics.median(ratios) <= targets[server] else "MISSED"
            target = f"<={targets[server]}x {verdict}"
    extra = f"  + redis-server {statistics.median(r['redis'] for r in runs.values()):.1f} us" if server == "redis" else ""
    bad = sum(r["bad"] for r in runs.values())
    extra += f"  NON-2XX ANSWERS: {bad}" if bad else ""
    print(f"{labels[server]:25s} {rate:9.0f} {cpu:8.1f} us {ratio:>20s} {target:>7s} {p99:5.2f} ms{extra}")
print("peak RSS under saturation:")
for line in open(sys.argv[3]):
    server, kb = line.split()
    print(f"  {labels[server]:25s} {int(kb):6d} kB ({int(kb) / 1024:.1f} MiB)")
PY

# Rate, p50 and p99 of the response times, and the status codes, from hey's per-request CSV.
latency() {
  python3 - "$1" "$FIXED_DURATION" "$2" <<'PY'
import collections, csv, sys
rows = list(csv.reader(open(sys.argv[1])))
times = sorted(float(r[0]) for r in rows)
seconds = float(sys.argv[2].rstrip("s"))
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
codes = collections.Counter(r[6] for r in rows)
print(f"fixed rate, {sys.argv[3]:8s} {len(times) / seconds:.0f} notifications/s, "
      f"p50 {pick(0.50):.2f} ms, p99 {pick(0.99):.2f} ms, status codes: "
      + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())))
PY
}
latency "$W/fixed-dry-run.csv" dry-run
latency "$W/fixed-sending.csv" sending
echo "RSS idle:                 dry-run $IDLE_DRY_KB kB, sending $IDLE_SENDING_KB kB"
echo "start-up to ready:        $START_MS ms"
echo "binary size:              $(stat -c %s "$BIN" | awk '{printf "%.1f MiB (%d bytes)", $1 / 1048576, $1}')"
echo "redis commands from the service per SMS sent ($REDIS_SENT SMS; those inside the scripts not counted):"
echo "$REDIS_STATS" | awk -F'[:=,]' -v sent="$REDIS_SENT" \
  '/^cmdstat_(evalsha|eval|ping|script)/ {printf "  %-10s %d calls, %.2f per SMS\n", substr($1, 9), $3, $3 / sent}'
if [ -n "$CHECKS" ]; then
  echo "SMS SUPPRESSED OR FAILED UNDER SATURATION (every request must take the whole path):"
  echo "$CHECKS"
  exit 1
fi
echo "no SMS suppressed or failed under saturation"

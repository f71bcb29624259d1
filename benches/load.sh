#!/usr/bin/env bash
# Load benchmark of the release binary on loopback, side by side with a bare actix-web JSON
# endpoint (the upper bound: it parses the body and answers, nothing else).
#
# Saturation: wrk posts one-alert notifications (a new fingerprint in every request, one
# recipient) to each server in turn, in rounds that alternate between them so that a slow spell
# of the machine hits all of them. Servers: the bare endpoint; the service in dry-run; the service
# sending every SMS over HTTP to the fake Sipgate (examples/fake_sipgate.rs, answering at once)
# with each state backend (memory, file, a local redis-server, a local Redis Cluster of three
# masters with a replica each, made by redis-cli --cluster create). For each: notifications per
# second, the server's own CPU time per notification (user + system, from /proc/PID/stat), that
# CPU time as a multiple of the bare endpoint's in the same round, p99 latency and peak RSS; for
# the two Redis backends also the store's CPU time per notification (the redis-server, or the
# six cluster nodes together). Then latency at a fixed 1,000 notifications per second, idle RSS,
# start-up time to ready and binary size.
#
# Last, the round trips per notification to Redis and to the cluster, with 1 and with 3
# recipients: redis-cli MONITOR on the redis-server (on every master of the cluster) while
# RT_NOTIFICATIONS distinct notifications are posted one after the other, scripts already
# loaded; the commands that came from a client, divided by the notifications. Commands run inside
# a script ("[0 lua]") are not round trips, and the health check's INFO and probe SET (once a
# second per service, whatever the traffic) are counted apart.
#
#   bash benches/load.sh            # ROUNDS=3 DURATION=8s FIXED_DURATION=10s CONNECTIONS=32
#                                   # RT_NOTIFICATIONS=200
#   BIN=/path/to/other/alertmanager-sipgate bash benches/load.sh   # another build, same method
#
# Ports: BASE_PORT (19716) to BASE_PORT + 23, the cluster's bus ports among them (set with
# --cluster-port, not the default port + 10000).
#
# Needs wrk, hey, curl, redis-server and redis-cli (apt-get install wrk hey curl redis-server
# redis-tools). Everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
FIXED_DURATION=${FIXED_DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
RT_NOTIFICATIONS=${RT_NOTIFICATIONS:-200}
BASE_PORT=${BASE_PORT:-19716}
for tool in wrk hey curl redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install wrk hey curl redis-server redis-tools python3" >&2; exit 1; }
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
# The servers of the saturation rounds on BASE_PORT + 4 to + 9, then the services with three
# recipients for the round trips, then the cluster's nodes and their bus ports.
REDIS_3_PORT=$((BASE_PORT + 10))
CLUSTER_3_PORT=$((BASE_PORT + 11))
CLUSTER_PORT=$((BASE_PORT + 12))
CLUSTER_BUS_PORT=$((BASE_PORT + 18))

# Runs "$@" every 50 ms until it succeeds; gives up after 10 s, naming WHAT.
retry() {
  local what=$1
  shift
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "$what: not within 10 s" >&2
  exit 1
}
redis_answers() { [ "$(redis-cli -p "$1" PING)" = PONG ]; }

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
retry "redis-server on $REDIS_PORT" redis_answers "$REDIS_PORT"

# The cluster: six empty nodes, made into three masters with a replica each, as an operator
# makes one; ready once every node says the cluster is ok.
CLUSTER_PORTS=()
CLUSTER_PIDS=()
for i in 0 1 2 3 4 5; do
  mkdir "$W/cluster-$i"
  redis-server --port $((CLUSTER_PORT + i)) --cluster-port $((CLUSTER_BUS_PORT + i)) \
    --bind 127.0.0.1 --save "" --appendonly no --dir "$W/cluster-$i" --cluster-enabled yes \
    --cluster-config-file nodes.conf --repl-diskless-sync-delay 0 >"$W/cluster-$i/redis.log" 2>&1 &
  CLUSTER_PIDS+=($!)
  PIDS+=($!)
  CLUSTER_PORTS+=($((CLUSTER_PORT + i)))
done
for port in "${CLUSTER_PORTS[@]}"; do retry "cluster node on $port" redis_answers "$port"; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 1 \
  --cluster-yes >"$W/cluster-create.log" 2>&1 || { cat "$W/cluster-create.log" >&2; exit 1; }
cluster_ok() { redis-cli -p "$1" CLUSTER INFO | grep -q '^cluster_state:ok'; }
for port in "${CLUSTER_PORTS[@]}"; do retry "the cluster as node $port sees it" cluster_ok "$port"; done
CLUSTER_MASTERS=()
for port in "${CLUSTER_PORTS[@]}"; do
  if [ "$(redis-cli -p "$port" ROLE | head -1)" = master ]; then CLUSTER_MASTERS+=("$port"); fi
done
CLUSTER_URLS=$(printf '"redis://127.0.0.1:%s", ' "${CLUSTER_PORTS[@]}")
CLUSTER_STATE="{redis: {cluster: {urls: [${CLUSTER_URLS%, }]}}}"
REDIS_STATE="{redis: {url: \"redis://127.0.0.1:$REDIS_PORT/0\"}}"

# The sending service's config on FILE: state STATE, one route to the recipients named.
declare -A NUMBER=([alice]="+4915228817386" [bob]="+4915254599371" [carol]="+4915799912345")
sending_config() {
  local file=$1 state=$2 name recipients=()
  shift 2
  for name in "$@"; do recipients+=("$name: \"${NUMBER[$name]}\""); done
  cat >"$file" <<YAML
sipgate:
  api_url: http://127.0.0.1:$FAKE_PORT/v2
  token_id: token-AB12CD
  token: 00000000-1111-4222-8333-444444444444
recipients: {$(IFS=,; echo "${recipients[*]}" | sed 's/,/, /g')}
routes: [{name: load, to: [$(IFS=,; echo "$*" | sed 's/,/, /g')]}]
delivery: {dedup_window: 1ms}
state: $state
YAML
}

SERVERS=(bare dry-run memory file redis cluster)
declare -A PID URL
port=$((BASE_PORT + 4))
for server in "${SERVERS[@]}" redis-3 cluster-3; do
  case $server in
    redis-3) port=$REDIS_3_PORT ;;
    cluster-3) port=$CLUSTER_3_PORT ;;
  esac
  URL[$server]="http://127.0.0.1:$port"
  case $server in
    bare)
      target/release/examples/bare-endpoint "127.0.0.1:$port" & ;;
    dry-run)
      "$BIN" --config.file="$W/dry-run.yml" --web.listen-address="127.0.0.1:$port" --dry-run \
        --log.level=error 2>"$W/$server.log" & ;;
    *)
      case $server in
        memory) sending_config "$W/$server.yml" '{memory: {}}' alice ;;
        file) sending_config "$W/$server.yml" "{file: $W/state.redb}" alice ;;
        redis) sending_config "$W/$server.yml" "$REDIS_STATE" alice ;;
        cluster) sending_config "$W/$server.yml" "$CLUSTER_STATE" alice ;;
        redis-3) sending_config "$W/$server.yml" "$REDIS_STATE" alice bob carol ;;
        cluster-3) sending_config "$W/$server.yml" "$CLUSTER_STATE" alice bob carol ;;
      esac
      "$BIN" --config.file="$W/$server.yml" --web.listen-address="127.0.0.1:$port" \
        --log.level=error 2>"$W/$server.log" & ;;
  esac
  PID[$server]=$!
  PIDS+=($!)
  port=$((port + 1))
done
for server in "${SERVERS[@]}" redis-3 cluster-3; do
  path=/-/ready
  [ "$server" = bare ] && path=/
  retry "$server answering (log: $W/$server.log)" curl -s -o /dev/null "${URL[$server]}$path"
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
# A number of its own for each run, in its alerts' fingerprints.
echo 0 >"$W/runs"
next_run() {
  local run=$(($(cat "$W/runs") + 1))
  echo "$run" >"$W/runs"
  echo "$run"
}
# One saturation run: "requests rate p99_ms non_2xx".
saturate() {
  local run
  run=$(next_run)
  RUN=$run PAYLOAD="$W/payload.json" wrk -t2 -c"$CONNECTIONS" -d"$1" --latency -s "$W/post.lua" "$2/alerts" |
    awk '/requests in/ {n = $1}
         /Requests\/sec/ {rate = $2}
         $1 == "99%" {v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[^m]s$/) ms *= 1000; p99 = ms}
         /Non-2xx/ {bad = $NF}
         END {printf "%d %s %.3f %d\n", n, rate, p99, bad}'
}
for server in "${SERVERS[@]}"; do saturate 2s "${URL[$server]}" >/dev/null; done
for port in "$REDIS_PORT" "${CLUSTER_PORTS[@]}"; do redis-cli -p "$port" CONFIG RESETSTAT >/dev/null; done
sent_total() {
  curl -s "$1/metrics" | awk '/^alertmanager_sipgate_sms_sent_total/ {s += $2} END {print s + 0}'
}
# CPU ticks of the state store behind SERVER: the redis-server, or the cluster's nodes together.
store_ticks() {
  local ticks=0 pid
  case $1 in
    redis) ticks=$(cpu_ticks "$REDIS") ;;
    cluster) for pid in "${CLUSTER_PIDS[@]}"; do ticks=$((ticks + $(cpu_ticks "$pid"))); done ;;
  esac
  echo "$ticks"
}
REDIS_SENT_BEFORE=$(sent_total "${URL[redis]}")
CLUSTER_SENT_BEFORE=$(sent_total "${URL[cluster]}")
: >"$W/rounds"
for round in $(seq "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    pid=${PID[$server]}
    before=$(cpu_ticks "$pid")
    store_before=$(store_ticks "$server")
    result=$(saturate "$DURATION" "${URL[$server]}")
    after=$(cpu_ticks "$pid")
    store_after=$(store_ticks "$server")
    echo "$round $server $result $((after - before)) $((store_after - store_before))" >>"$W/rounds"
  done
done
REDIS_SENT=$(( $(sent_total "${URL[redis]}") - REDIS_SENT_BEFORE ))
CLUSTER_SENT=$(( $(sent_total "${URL[cluster]}") - CLUSTER_SENT_BEFORE ))
REDIS_STATS=$(redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r')
# The masters only: the service talks to them, and a replica's PINGs come from its master.
CLUSTER_STATS=$(for port in "${CLUSTER_MASTERS[@]}"; do redis-cli -p "$port" INFO commandstats; done | tr -d '\r')
# What the services counted: no SMS may have been a duplicate (each request took the whole path)
# and none may have failed.
CHECKS=$(for server in dry-run memory file redis cluster; do
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

# Posts COUNT distinct notifications to the service at URL, one after the other, each answered
# with a 2xx before the next.
post_one_by_one() {
  python3 - "$1" "$W/payload.json" "$(next_run)" "$2" <<'PY'
import json, sys, urllib.request
url, payload, run, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = json.load(open(payload))
for n in range(count):
    for alert in body["alerts"]:
        alert["fingerprint"] = f"{run:04x}{n:012x}"
    request = urllib.request.Request(f"{url}/alerts", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        response.read()
PY
}
# Round trips: "== LABEL" ("backend recipients"), then every line redis-cli MONITOR on PORTS saw
# while RT_NOTIFICATIONS notifications went to the service at URL.
monitor_ok() { [ "$(head -c 2 "$1")" = OK ]; }
round_trips() {
  local label=$1 url=$2 port monitors=()
  shift 2
  post_one_by_one "$url" 1 # loads the scripts (the 1-recipient services did under saturation)
  for port in "$@"; do
    redis-cli -p "$port" MONITOR >"$W/monitor-$port.log" &
    monitors+=($!)
    PIDS+=($!)
  done
  for port in "$@"; do retry "MONITOR on $port" monitor_ok "$W/monitor-$port.log"; done
  post_one_by_one "$url" "$RT_NOTIFICATIONS"
  # The last settlement may follow the last answer by a moment.
  sleep 0.5
  kill "${monitors[@]}"
  wait "${monitors[@]}" 2>/dev/null || true
  echo "== $label"
  for port in "$@"; do cat "$W/monitor-$port.log"; rm "$W/monitor-$port.log"; done
}
{
  round_trips "redis 1" "${URL[redis]}" "$REDIS_PORT"
  round_trips "redis 3" "${URL[redis-3]}" "$REDIS_PORT"
  round_trips "cluster 1" "${URL[cluster]}" "${CLUSTER_MASTERS[@]}"
  round_trips "cluster 3" "${URL[cluster-3]}" "${CLUSTER_MASTERS[@]}"
} >"$W/monitor.log"

echo "== result ($(nproc) cores, $ROUNDS rounds of $DURATION per server, wrk -t2 -c$CONNECTIONS)"
python3 - "$W/rounds" "$TICK" "$W/peak" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, server, requests, rate, p99, bad, ticks, store_ticks = line.split()
    tick = int(sys.argv[2])
    rows[server][rnd] = dict(
        rate=float(rate), p99=float(p99), bad=int(bad),
        cpu=int(ticks) / tick / int(requests) * 1e6,
        store=int(store_ticks) / tick / int(requests) * 1e6)
targets = {"dry-run": 1.6, "memory": 3.0, "file": None, "redis": 4.5, "cluster": None}
labels = {"bare": "bare actix-web endpoint", "dry-run": "dry-run",
          "memory": "sending, memory state", "file": "sending, file state",
          "redis": "sending, redis state", "cluster": "sending, redis cluster"}
stores = {"redis": "redis-server", "cluster": "6 cluster nodes"}
print(f"{'server':25s} {'notif./s':>9s} {'CPU/notif.':>11s} {'x bare (range)':>20s} {'target':>7s} {'p99':>8s}")
for server in ("bare", "dry-run", "memory", "file", "redis", "cluster"):
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
    extra = f"  + {stores[server]} {statistics.median(r['store'] for r in runs.values()):.1f} us" if server in stores else ""
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
# The script calls of STATS (INFO commandstats, of a cluster's masters together) per SMS sent.
calls_per_sms() {
  echo "$3 commands from the service per SMS sent ($2 SMS; those inside the scripts not counted):"
  echo "$1" | awk -F'[:=,]' -v sent="$2" '/^cmdstat_(evalsha|eval|ping|script)/ {calls[substr($1, 9)] += $3}
    END {for (c in calls) printf "  %-10s %d calls, %.2f per SMS\n", c, calls[c], calls[c] / sent}'
}
calls_per_sms "$REDIS_STATS" "$REDIS_SENT" redis
calls_per_sms "$CLUSTER_STATS" "$CLUSTER_SENT" "redis cluster"
echo "round trips per notification to the state store ($RT_NOTIFICATIONS notifications one after the other):"
python3 - "$W/monitor.log" "$RT_NOTIFICATIONS" <<'PY'
import collections, re, sys
# redis-cli MONITOR: 1700000000.123456 [0 127.0.0.1:50000] "EVALSHA" "<sha>" "4" ...
line_re = re.compile(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?')
count = int(sys.argv[2])
runs = []
for line in open(sys.argv[1]):
    if line.startswith("== "):
        runs.append((line[3:].strip(), collections.Counter(), collections.Counter()))
        continue
    match = line_re.match(line)
    if not match:
        continue  # MONITOR's first line, "OK"
    client, command, first = match.groups()
    if client == "lua":
        continue  # run inside a script, not a round trip
    command = command.upper()
    health = command == "INFO" or (command == "SET" and (first or "").endswith("probe:ping"))
    runs[-1][2 if health else 1][command] += 1
print(f"  {'backend':8s} {'recipients':>10s} {'round trips':>12s}  by command (the health checks of all services on the store apart)")
for label, counted, health in runs:
    backend, recipients = label.split()
    by = ", ".join(f"{c} {n}" for c, n in counted.most_common())
    checks = ", ".join(f"{c} {n}" for c, n in health.most_common()) or "none"
    print(f"  {backend:8s} {recipients:>10s} {sum(counted.values()) / count:12.2f}  {by or '-'}"
          f" (health check: {checks})")
PY
if [ -n "$CHECKS" ]; then
  echo "SMS SUPPRESSED OR FAILED UNDER SATURATION (every request must take the whole path):"
  echo "$CHECKS"
  exit 1
fi
echo "no SMS suppressed or failed under saturation"

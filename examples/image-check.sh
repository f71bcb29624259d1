#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile and runs it the way production
# does: as a non-root user, read-only root filesystem, the example config mounted. Checks that
# it becomes ready, logs a dry-run SMS for a posted notification, turns healthy by its own
# HEALTHCHECK and stops cleanly; prints the image size.
#
#   bash examples/image-check.sh          (as root, with a running Docker engine)
#
# Where no image registry can be reached, the builder and base images are stand-ins made from
# Debian packages (debootstrap + docker import); the builder gets this machine's Rust toolchain.
# Where one can be reached, OFFICIAL=1 builds with the Dockerfile's defaults instead.
# Containers use the host network (--network host): the check works without a bridge.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=${SUITE:-bookworm}
mirror=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
image=alertmanager-sipgate:image-check
base_image=local/debian-base:$suite
# The builder carries this machine's toolchain: a new toolchain makes a new builder.
builder_image=local/rust-builder:$suite-$(rustc --version | awk '{print $2}')
container=alertmanager-sipgate-image-check
port=9716   # the image's default, which its HEALTHCHECK probes

fail() { echo "image-check: FAILED: $*" >&2; exit 1; }
for tool in docker curl; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install docker.io curl)"
done
docker info >/dev/null 2>&1 || fail "no Docker engine answers; start one, e.g. dockerd --iptables=false --bridge=none"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  fail "port $port is in use; the container listens there on the host network"
fi

work=$(mktemp -d)
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A root filesystem of Debian's minbase variant plus `packages`, imported as an image.
stand_in() {
  local name=$1 packages=$2 extra=${3:-}
  if [ -z "${REBUILD:-}" ] && docker image inspect "$name" >/dev/null 2>&1; then
    echo "   $name exists (REBUILD=1 makes it again)"
    return
  fi
  local root="$work/rootfs-${name//[:\/]/-}"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log"; fail "debootstrap $suite"; }
  if [ -n "$extra" ]; then "$extra" "$root"; fi
  rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$name" >/dev/null
  echo "   $name imported"
}

# The builder fetches crates like this machine does: with its Rust toolchain, the certificate
# authorities it trusts (which may include a local proxy's) and, below, its proxy settings.
with_rust() {
  local sysroot
  sysroot=$(rustc --print sysroot)
  mkdir -p "$1/usr/local/rust"
  cp -a "$sysroot/." "$1/usr/local/rust/"
  cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"
  echo "   builder has $("$1/usr/local/rust/bin/rustc" --version)"
}

build_args=()
# Docker passes these to every build step without an ARG in the Dockerfile.
for proxy in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  if [ -n "${!proxy:-}" ]; then build_args+=(--build-arg "$proxy=${!proxy}"); fi
done
if [ -z "${OFFICIAL:-}" ]; then
  command -v debootstrap >/dev/null || fail "debootstrap not found (apt-get install debootstrap)"
  echo "== stand-in images from Debian $suite ($mirror)"
  stand_in "$base_image" ca-certificates
  stand_in "$builder_image" ca-certificates,gcc,libc6-dev with_rust
  build_args+=(--build-arg "BUILDER_IMAGE=$builder_image" --build-arg "BASE_IMAGE=$base_image")
fi

echo "== docker build (the repository's Dockerfile)"
started=$(date +%s)
docker build --network host "${build_args[@]}" \
  --build-arg "REVISION=$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)" \
  -t "$image" . >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log"; fail "docker build"; }
echo "   built in $(( $(date +%s) - started )) s"

echo "== run: non-root, read-only, example config"
etc="$work/etc"
mkdir -p "$etc"
cp -r examples/config.yml examples/templates "$etc/"
secret=$(head -c 24 /dev/urandom | base64)
printf '%s\n' "$secret" >"$etc/sms-password"
# The container's user is not this machine's: the files must be readable by others.
chmod -R a+rX "$etc"
docker run -d --name "$container" --network host --read-only \
  --health-interval=2s --health-start-period=2s \
  -v "$etc:/etc/alertmanager-sipgate:ro" "$image" >/dev/null

logs() { docker logs "$container" 2>&1; }
wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 150); do
    if eval "$check"; then return 0; fi
    sleep 0.2
  done
  logs | tail -n 20
  fail "$what"
}

wait_for "/-/ready answers 200" "curl -fsS http://127.0.0.1:$port/-/ready >$work/ready 2>/dev/null"
echo "   /-/ready: $(cat "$work/ready")"
grep -qx 'OK (dry-run, state: memory)' "$work/ready" || fail "/-/ready says $(cat "$work/ready"), expected OK (dry-run, state: memory)"

user=$(docker inspect -f '{{.Config.User}}' "$container")
[ "$user" = "65532:65532" ] || fail "image user is '$user', expected 65532:65532"
uid=$(docker top "$container" -eo pid,uid | awk 'NR == 2 {print $2}')
[ "$uid" = 65532 ] || fail "the service runs as uid '$uid', expected 65532"
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$container")" = true ] \
  || fail "root filesystem is not read-only"
echo "   runs as uid $uid on a read-only root filesystem"

code=$(curl -s -o "$work/answer" -w '%{http_code}' -u "alertmanager:$secret" \
  -H 'Content-Type: application/json' --data-binary @examples/payloads/firing.json \
  "http://127.0.0.1:$port/alerts")
[ "$code" = 200 ] || fail "POST /alerts answered $code: $(cat "$work/answer")"
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @examples/payloads/firing.json \
  "http://127.0.0.1:$port/alerts")
[ "$code" = 401 ] || fail "POST /alerts without credentials answered $code, expected 401"
# The example pages whoever its schedule has on call now.
wait_for "a dry-run SMS in docker logs" \
  "logs | grep 'dry-run: SMS not sent' | grep 'route=critical' >/dev/null"
echo "   POST /alerts: 200 $(cat "$work/answer")"
echo "   docker logs: $(logs | grep 'dry-run: SMS not sent' | grep 'route=critical' | head -n 1)"

wait_for "HEALTHCHECK turns healthy" \
  "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $container)\" = healthy ]"
echo "   HEALTHCHECK: healthy"

docker stop -t 20 "$container" >/dev/null
status=$(docker inspect -f '{{.State.ExitCode}}' "$container")
[ "$status" = 0 ] || fail "exit code $status after docker stop"
# grep reads the whole log: with -q it could stop early, and pipefail would report docker's
# broken pipe as a failure.
logs | grep 'shutting down' >/dev/null || fail "no graceful shutdown in the log"
echo "   docker stop: exit 0 after a graceful shutdown"

size=$(docker image inspect -f '{{.Size}}' "$image")
echo "== image size: $(( size / 1000000 )) MB ($size bytes)"
if [ -z "${OFFICIAL:-}" ]; then
  base=$(docker image inspect -f '{{.Size}}' "$base_image")
  echo "   of which the stand-in base: $(( base / 1000000 )) MB; the service layer: $(( (size - base) / 1000000 )) MB"
fi
echo "image-check: all checks passed"

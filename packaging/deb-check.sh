#!/usr/bin/env bash
# Installs the Debian package on this machine and checks it as an operator would meet it: the
# files, the user and the generated secret are there, the man page renders and the bash
# completion registers, check-config accepts the installed config without being told where it
# is, the installed binary runs as the package's user and answers /-/ready, and a purge leaves
# nothing behind. Run as root, after packaging/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

package=alertmanager-sipgate
deb=$(ls -t target/debian/${package}_*.deb 2>/dev/null | head -n 1 || true)
[ -n "$deb" ] || { echo "deb-check: no package in target/debian; run packaging/build-release.sh" >&2; exit 1; }
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }
if dpkg -s "$package" >/dev/null 2>&1; then
  fail "$package is installed already; this check installs and purges it"
fi

log=$(mktemp)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  dpkg --purge "$package" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

echo "== dpkg -i $deb"
dpkg -i "$deb"
for path in /usr/bin/alertmanager-sipgate /etc/alertmanager-sipgate/config.yml \
  /etc/alertmanager-sipgate/templates/short.hbs /lib/systemd/system/alertmanager-sipgate.service; do
  [ -e "$path" ] || [ -e "/usr$path" ] || fail "$path is missing"
done
grep -qx /etc/alertmanager-sipgate/config.yml "/var/lib/dpkg/info/$package.conffiles" \
  || fail "config.yml is not a conffile"
getent passwd "$package" >/dev/null || fail "no user $package"
[ "$(stat -c '%U %a' /var/lib/alertmanager-sipgate)" = "$package 750" ] \
  || fail "state directory: $(stat -c '%U %a' /var/lib/alertmanager-sipgate)"
[ "$(stat -c '%G %a' /etc/alertmanager-sipgate/sms-password)" = "$package 640" ] \
  || fail "sms-password: $(stat -c '%G %a' /etc/alertmanager-sipgate/sms-password)"
echo "   files, conffiles, user, state directory and secret are in place"

echo "== man page and shell completions"
man_page=/usr/share/man/man1/alertmanager-sipgate.1.gz
for path in "$man_page" /usr/share/man/man1/alertmanager-sipgate-test-sms.1.gz \
  /usr/share/bash-completion/completions/alertmanager-sipgate \
  /usr/share/zsh/vendor-completions/_alertmanager-sipgate \
  /usr/share/fish/vendor_completions.d/alertmanager-sipgate.fish; do
  [ -s "$path" ] || fail "$path is missing or empty"
done
command -v man >/dev/null || fail "man not found (apt-get install man-db)"
warnings=$(man --warnings -l "$man_page" 2>&1 >/dev/null)
[ -z "$warnings" ] || fail "man -l $man_page warns: $warnings"
man -l "$man_page" 2>/dev/null | grep -q SUBCOMMANDS || fail "man -l $man_page renders no SUBCOMMANDS"
complete=$(bash -c 'source /usr/share/bash-completion/completions/alertmanager-sipgate; complete -p alertmanager-sipgate') \
  || fail "the bash completion does not register alertmanager-sipgate"
echo "   man -l renders $man_page; bash: $complete"

# setpriv changes user and then execs: the process it leaves is the program itself.
as_package_user() {
  setpriv --reuid="$package" --regid="$package" --init-groups -- "$@"
}

echo "== check-config on the installed config, its default"
as_package_user /usr/bin/alertmanager-sipgate check-config

echo "== the installed binary as $package"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setpriv --reuid="$package" --regid="$package" --init-groups -- /usr/bin/alertmanager-sipgate \
  --config.file=/etc/alertmanager-sipgate/config.yml --web.listen-address="127.0.0.1:$port" \
  >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if ready=$(curl -fsS "http://127.0.0.1:$port/-/ready" 2>/dev/null); then break; fi
  sleep 0.1
done
[ "${ready:-}" = "OK (dry-run, state: file)" ] || { cat "$log"; fail "/-/ready: ${ready:-no answer}"; }
[ "$(ps -o user= -p "$pid")" = "$package" ] || fail "runs as $(ps -o user= -p "$pid")"
secret=$(cat /etc/alertmanager-sipgate/sms-password)
code=$(curl -s -o /dev/null -w '%{http_code}' -u "alertmanager:$secret" \
  --data-binary @examples/payloads/firing.json "http://127.0.0.1:$port/alerts")
[ "$code" = 200 ] || { cat "$log"; fail "POST /alerts with the generated secret: $code"; }
echo "   /-/ready: $ready; POST /alerts with the generated secret: $code"
kill -TERM "$pid"
wait "$pid" || fail "exit code $? after SIGTERM"
pid=
[ "$(stat -c '%U' /var/lib/alertmanager-sipgate/state.redb)" = "$package" ] \
  || fail "state file: $(stat -c '%U' /var/lib/alertmanager-sipgate/state.redb 2>&1)"
echo "   the state file is in the state directory, owned by $package"

echo "== dpkg --purge"
dpkg --purge "$package"
for path in /usr/bin/alertmanager-sipgate /etc/alertmanager-sipgate /var/lib/alertmanager-sipgate; do
  [ ! -e "$path" ] || fail "$path is left after the purge"
done
echo "deb-check: all checks passed"

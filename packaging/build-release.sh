#!/usr/bin/env bash
# The release binary and the Debian package, built so that they run on glibc 2.28 and later
# (Debian 10, RHEL 8, Ubuntu 20.04) whatever the build machine's glibc is: cargo-zigbuild links
# against glibc 2.28's symbol versions. Fails when the binary needs anything newer.
#
#   bash packaging/build-release.sh
#   -> target/x86_64-unknown-linux-gnu/release/alertmanager-sipgate
#   -> target/package/: the packaged config, man pages and shell completions
#   -> target/debian/alertmanager-sipgate_<version>-1_amd64.deb
#
# Needs: pip install ziglang cargo-zigbuild; cargo install cargo-deb --locked; binutils.
set -euo pipefail
cd "$(dirname "$0")/.."

floor=2.28
triple=x86_64-unknown-linux-gnu
binary=target/$triple/release/alertmanager-sipgate

echo "== portable build (glibc $floor)"
cargo zigbuild --release --locked --target "$triple.$floor"

echo "== glibc the binary needs"
newest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
echo "   newest symbol version: GLIBC_$newest"
if [ "$(printf '%s\n%s\n' "$newest" "$floor" | sort -V | tail -n 1)" != "$floor" ]; then
  objdump -T "$binary" | grep "GLIBC_$newest" >&2
  echo "build-release: FAILED: the binary needs GLIBC_$newest, more than $floor" >&2
  exit 1
fi
if readelf -V "$binary" | grep -q GLIBC_ABI_DT_RELR; then
  echo "build-release: FAILED: packed relative relocations need glibc 2.36" >&2
  exit 1
fi
echo "   no GLIBC_ABI_DT_RELR; runs on glibc $floor and later"

echo "== the packaged config: examples/config.yml with the state in the state directory"
# One instance that remembers across restarts: the file backend in the unit's StateDirectory=.
mkdir -p target/package
line='state: {file: /var/lib/alertmanager-sipgate/state.redb}'
# The commented "# state:" block becomes that one line.
awk -v line="$line" '
  $0 == "# state:" { print line; skipping = 1; next }
  skipping && /^#   / { next }
  { skipping = 0; print }
' examples/config.yml > target/package/config.yml
grep -qx "$line" target/package/config.yml \
  || { echo "build-release: FAILED: no state line for the package in examples/config.yml" >&2; exit 1; }

echo "== man pages and shell completions, from the binary's own command line"
# Generated here and never committed: they follow the flags of the binary just built.
rm -rf target/package/man target/package/completions
mkdir -p target/package/man target/package/completions
"$binary" man --out-dir target/package/man
gzip -9 -n target/package/man/*.1
"$binary" completion bash > target/package/completions/alertmanager-sipgate
"$binary" completion zsh > target/package/completions/_alertmanager-sipgate
"$binary" completion fish > target/package/completions/alertmanager-sipgate.fish
ls target/package/man

echo "== Debian package"
cargo deb --no-build --target "$triple"
ls -l target/debian/*.deb

#!/usr/bin/env bash
# The main job on the bundled samples, on a fresh Debian machine: installs the system packages,
# builds the tools, serves samples/ with the fake BBB server on 127.0.0.1 and records sample A
# (a 15 s presentation with slides, annotations, zoom, screen share and a 440 Hz tone) to
# out/sample.mp4 with bbb-record. No external server is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-deps
# The same packages as migrator/debian/build-deb.sh builds, so that one release build serves both.
cargo build --release --locked -p bbb-recorder -p bbb-migrator -p bbb-tests \
  --bin bbb-record --bin bbb-migrate --bin fake-bbb
# Where cargo put them (CARGO_TARGET_DIR or a cargo config may move target/).
bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"

mkdir -p out
log="$(mktemp)"
"$bin/fake-bbb" --samples samples >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  base="$(sed -n 's/^fake-bbb listening on //p' "$log")"
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "${base:-}" ] || { cat "$log"; echo "fake-bbb did not start" >&2; exit 1; }

record_id=2e7380bcd2a9cc83f2a744b8707a7f75c0a94e9d-1767261600000
url="$base/playback/presentation/2.3/$record_id"
echo "recording $url"
"$bin/bbb-record" "$url" -o out/sample.mp4
echo "the recording is at $(realpath out/sample.mp4)"

#!/usr/bin/env bash
# Builds the Debian package bbb-rescue_<version>_amd64.deb (both tools, man pages, completions,
# the example configuration, the systemd units and the Pod plugin) into target/debian/, and
# prints its path on the last line. Needs cargo-deb (`cargo install cargo-deb --locked`) and the
# build dependencies of .ci/install-deps.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v cargo-deb >/dev/null || {
  echo "FATAL: cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }

# The same packages as samples/demo.sh builds (features are unified over the packages of a
# build: another set would compile the binaries again); fake-bbb serves the package's check.
cargo build --release --locked -p bbb-recorder -p bbb-migrator -p bbb-tests \
  --bin bbb-record --bin bbb-migrate --bin fake-bbb
# Where cargo put them (CARGO_TARGET_DIR or a cargo config may move target/); cargo-deb reads
# the assets from the same place.
target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
release="$target/release"
gen="$release/package"
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/bash" "$gen/zsh" "$gen/fish"
for tool in bbb-record bbb-migrate; do
  # One page per tool and per subcommand (man bbb-migrate-claim).
  "$release/$tool" --generate "man-pages:$gen/man"
  "$release/$tool" --generate complete-bash >"$gen/bash/$tool"
  "$release/$tool" --generate complete-zsh >"$gen/zsh/_$tool"
  "$release/$tool" --generate complete-fish >"$gen/fish/$tool.fish"
done
# -n: no timestamp in the gzip header, so two builds give the same pages.
gzip -9n "$gen"/man/*.1
"$release/bbb-migrate" init-config --output - >"$gen/bbb-migrate.toml"

# --no-build: the binaries above are the ones whose pages were generated.
deb="$(cargo deb --locked -p bbb-migrator --no-build --quiet)"
echo "$deb"

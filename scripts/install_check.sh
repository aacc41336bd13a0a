#!/usr/bin/env bash
# The README's install lines, run for real into a scratch root: release
# builds of the daemon's crate and the CLI's from the lock file as committed.
# (The other lines of that block run in tests/it/operator.rs, on the test
# build's binaries.)
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t lines < <(awk '/^## Install$/ { section = 1 } section && /^```sh$/ { block = 1; next } block && /^```$/ { exit } block && /^cargo install / { print }' README.md)
expected=("cargo install --path . --locked --root /usr/local" "cargo install --path crates/cli --locked --root /usr/local")
if [ "${lines[*]}" != "${expected[*]}" ]; then
    echo "README's install block has the cargo lines '${lines[*]}', not '${expected[*]}': update $0" >&2
    exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# A target dir of its own (release), kept between runs on a dev machine.
for line in "${lines[@]}"; do
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/install" ${line/\/usr\/local/$root} --quiet
done
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
for bin in crewshipd crewship; do
    got=$("$root/bin/$bin" --version)
    if [ "$got" != "$bin $version" ]; then
        echo "$root/bin/$bin --version says '$got', not '$bin $version'" >&2
        exit 1
    fi
done
echo "==> the README's install lines built and installed crewshipd and crewship $version"

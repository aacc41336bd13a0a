#!/usr/bin/env bash
# The README's install line, run for real into a scratch root: a release
# build of both binaries from the lock file as committed. (The other lines
# of that block run in tests/it/operator.rs, on the test build's binaries.)
set -euo pipefail
cd "$(dirname "$0")/.."

line=$(awk '/^## Install$/ { section = 1 } section && /^```sh$/ { getline; print; exit }' README.md)
expected="cargo install --path . --locked --root /usr/local"
if [ "$line" != "$expected" ]; then
    echo "README's install block starts with '$line', not '$expected': update $0" >&2
    exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# A target dir of its own (release), kept between runs on a dev machine.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/install" ${line/\/usr\/local/$root} --quiet
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
for bin in crewshipd crewship; do
    got=$("$root/bin/$bin" --version)
    if [ "$got" != "$bin $version" ]; then
        echo "$root/bin/$bin --version says '$got', not '$bin $version'" >&2
        exit 1
    fi
done
echo "==> the README's install line built and installed crewshipd and crewship $version"

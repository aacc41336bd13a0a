# Shared by the scripts: install Debian packages, with sudo when not root.
apt_install() {
    local run=()
    [ "$(id -u)" -eq 0 ] || run=(sudo)
    echo "==> installing Debian packages: $*"
    "${run[@]}" apt-get update -qq
    "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

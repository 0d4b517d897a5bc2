#!/usr/bin/env bash
# Builds the two Debian packages from this repository into target/debian/:
#   backuppc-enroll-client  enroll, rsyncsend, client.toml, man pages, completions
#   backuppc-enroll-server  forced-command, server.toml, man pages, completions
# Needs cargo and cargo-deb (installed here when missing); prints the paths.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
# One release build serves both packages.
cargo build --locked --release
cargo deb --locked --no-build
cargo deb --locked --no-build --variant server

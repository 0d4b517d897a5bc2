#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: installs what it needs, then
# runs the unit tests and the integration tests (a real sshd on loopback,
# real rsync, real sudo, system users created and removed by the tests),
# then builds and checks the Debian packages (packaging/check-debs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-4}"
# The Debian packages: build, lintian, install, run, remove, purge.
bash packaging/check-debs.sh

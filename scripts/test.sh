#!/usr/bin/env bash
# The whole test suite, as root on Debian 12: installs what it needs, then
# runs the unit tests and the integration tests (a real sshd on loopback,
# real rsync, real sudo, system users created and removed by the tests),
# then builds and checks the Debian packages (packaging/check-debs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh --test
cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-4}"
# The Debian packages: build, lintian, install, run, remove, purge.
bash packaging/check-debs.sh
# The tests remove their folders, the last one the base folder; the users
# lock in /run is left by design while tests run, and goes now.
rmdir /var/lib/backuppc-enroll-tests 2>/dev/null || true
rm -f /run/backuppc-enroll-tests.users.lock

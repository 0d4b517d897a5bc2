#!/usr/bin/env bash
# Benchmarks of backuppc-enroll, as root on Debian 12: each figure is a
# ratio of two variants measured side by side, alternating, in one run.
#   1. an SSH session whose forced command is rsyncsend answering `true`,
#      against /bin/true as forced command;
#   2. rsync pulls through rsyncsend against plain rsync (through sudo) over
#      the same sshd: 10,000 small files (100 MB) and one 1 GiB file, with
#      and without --protect-args, and the ceiling `ssh cat` of that file;
#   3. a whole enrollment (forced-command: key generation, locked atomic
#      writes, registry) against a trivial session of the register key;
#   4. a burst of BENCH_BURST (default 200) concurrent enrollments of
#      distinct hosts against the same burst of trivial sessions, with
#      Debian's default MaxStartups and a raised one.
# BENCH_ROUNDS (default 15) sets the number of rounds. Results: BENCHMARKS.md.
# Fuzzing for a bounded time is bench/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --release --locked --test bench -- --ignored --nocapture --test-threads=1 2>&1 | grep -v '^running\|^test \|^$'

#!/usr/bin/env bash
# Benchmarks of backuppc-enroll, as root on Debian 12: each figure is a
# ratio of two variants measured by one in-process runner (warm-up rounds
# discarded, A and B alternated, min / median / max of both printed).
#   1. an SSH session whose forced command is rsyncsend answering `true`,
#      against /bin/true as forced command;
#   2. rsync pulls through rsyncsend against plain rsync (through sudo, by
#      the bench's own sudoers drop-in) over the same sshd, both ends on
#      tmpfs: 10,000 small files (100 MB) and one 1 GiB file, with and
#      without --protect-args, and the ceiling `ssh cat` of that file;
#   3. a whole enrollment against a trivial session of the register key,
#      with BackupPC's daemon running (private mount namespace) and told to
#      reload each time; then the handler's CPU (user+sys of forced-command);
#   4. a burst of BENCH_BURST (default 200) concurrent enrollments of
#      distinct hosts against the same burst of trivial sessions, with
#      Debian's default MaxStartups and a raised one;
#   5. enroll's ssh2 session with and without TCP_NODELAY.
#   6. `forced-command fleet check` over 200 hosts against a sequential
#      ssh loop (bench/fleet.sh);
#   7. a 1 GiB upload through dropbox against OpenSSH's sftp-server
#      (bench/dropbox.sh; its BENCH_ROUNDS default is 3).
# BENCH_ROUNDS (default 15) sets the number of rounds. Results: BENCHMARKS.md.
# Fuzzing for a bounded time is bench/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --release --locked --test bench -- --ignored --nocapture --test-threads=1 2>&1 | grep -v '^running\|^test \|^$'
bench/fleet.sh
BENCH_ROUNDS="${BENCH_DROPBOX_ROUNDS:-3}" bench/dropbox.sh

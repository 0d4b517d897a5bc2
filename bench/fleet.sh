#!/usr/bin/env bash
# Benchmark of `forced-command fleet check` (as root on Debian 12):
# BENCH_FLEET_HOSTS (default 200) registry hosts on loopback addresses
# 127.0.x.y, 15 to an sshd with Debian's default MaxStartups, against the
# seed's loop shape (host after host, five sequential OpenSSH `ssh`
# sessions each) over the same hosts in the same run. BENCH_FLEET_ROUNDS
# (default 3) rounds, alternating which side goes first;
# BENCH_FLEET_PARALLEL (default 32) is fleet's --parallel. Results:
# BENCHMARKS.md, "Fleet operations".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked --test bench_fleet -- --ignored --nocapture --test-threads=1 2>&1 | grep -v '^running\|^test \|^$'

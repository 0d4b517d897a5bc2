#!/usr/bin/env bash
# Runs every cargo-fuzz target of the project for a bounded time (default
# 60 s each; FUZZ_SECONDS to change) and prints the executions each made.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is
# enough with RUSTC_BOOTSTRAP=1, which cargo-fuzz's sanitizer flags need.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for t in $(cargo fuzz list); do
    mkdir -p "corpus/$t"
    out=$(cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 2>&1) || {
        echo "$out" | tail -40
        echo "fuzz target $t FAILED"
        exit 1
    }
    runs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
    echo "$t: $runs executions in ${seconds}s, no crash"
done

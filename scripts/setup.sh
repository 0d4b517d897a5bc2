#!/usr/bin/env bash
# Installs what building and testing backuppc-enroll needs on Debian 12,
# as root: OpenSSH (client and server), rsync, sudo, Perl, the C
# libraries ssh2 builds against, BackupPC, and a Rust toolchain when none
# is there.
# Installing openssh-server or backuppc must not start the system's sshd,
# BackupPC or Apache behind the caller's back (tests start their own on
# loopback), so service starts are held off during the install.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (it installs packages)" >&2
    exit 1
fi

# backuppc and backuppc-rsync: the real BackupPC 4 the end-to-end test
# drives; slapd: the OpenLDAP directory of the LDAP tests (each daemon is
# started by its test on loopback, never as a service).
# man-db, groff-base, zsh, fish: the generated man pages and completions are
# rendered and parsed by the tests; lintian and dpkg-dev check the packages.
packages=(openssh-server openssh-client rsync sudo perl libssl-dev pkg-config gcc procps util-linux ca-certificates curl hyperfine strace
    backuppc backuppc-rsync iputils-ping slapd man-db groff-base zsh fish lintian dpkg-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    held=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        held=1
    fi
    trap '[ "$held" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    # slapd: no server config of its own (tests run their own slapd).
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
mkdir -p /run/sshd

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    # Debian 12's own cargo (1.63) is too old for this project.
    echo "setup: installing a Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo --version

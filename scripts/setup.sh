#!/usr/bin/env bash
# Installs what backuppc-enroll needs on Debian 12, as root, for one
# purpose (sourced by the scripts that need it, or run on its own):
#
#   setup.sh --demo   what scripts/demo.sh uses: OpenSSH, rsync, sudo, ping, Perl,
#                     BackupPC 4 (with the web server and mail agent it
#                     depends on), and the C tools and libraries the build
#                     needs
#   setup.sh          (or --test) all of that, plus what the test suite and
#                     the package checks use: OpenLDAP's slapd, man-db,
#                     zsh, fish, lintian, dpkg-dev, hyperfine
#
# and a Rust toolchain new enough for Cargo.toml's rust-version (rustup's,
# in ~/.cargo, when no recent enough cargo is found).
#
# Installing openssh-server, backuppc, apache2, exim4 or slapd must not
# start those services behind the caller's back (the demo and the tests
# start their own on loopback): starts are held off during the install
# (policy-rc.d, removed right after), and every service the packages
# installed by this run bring is left disabled.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (it installs packages)" >&2
    exit 1
fi

setup_purpose=test
case "${1:-}" in
    --demo) setup_purpose=demo ;;
    --test | "") ;;
    *)
        echo "setup: unknown option ${1}: use --demo or --test" >&2
        exit 2
        ;;
esac

# The build: the C libraries and tools the ssh2 crate builds against, and
# curl for rustup. The demo: OpenSSH (client and server), rsync, sudo,
# Perl, BackupPC 4 and its rsync (backuppc-rsync), ping (BackupPC pings a
# host before backing it up), nsenter (util-linux).
setup_packages=(openssh-server openssh-client rsync sudo perl libssl-dev pkg-config gcc procps util-linux
    ca-certificates curl backuppc backuppc-rsync iputils-ping)
if [ "$setup_purpose" = test ]; then
    # slapd: the OpenLDAP directory of the LDAP tests (each test starts
    # its own on loopback). man-db, groff-base, zsh, fish: the generated
    # man pages and completions are rendered and parsed by the tests;
    # lintian and dpkg-dev check the packages; hyperfine runs the benches;
    # strace injects the crash tests' kills; chromium opens the fleet
    # report's HTML page headless, exim4-daemon-light delivers its mail
    # to a local mailbox.
    setup_packages+=(hyperfine strace slapd man-db groff-base zsh fish lintian dpkg-dev python3-paramiko postgresql-15 chromium exim4-daemon-light)
fi

# Services (systemd units, or init scripts without systemd) of the
# packages named, disabled unless they were there before this run.
setup_disable_services() {
    local pkg unit name
    for pkg in "$@"; do
        if [ -d /run/systemd/system ]; then
            for unit in $(dpkg -L "$pkg" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|socket|timer)$' || true); do
                name=$(basename "$unit")
                case "$name" in *@.*) continue ;; esac
                if systemctl is-enabled --quiet "$name" 2>/dev/null; then
                    systemctl disable --quiet "$name" && echo "setup: disabled $name (installed by $pkg)"
                fi
            done
        fi
        for unit in $(dpkg -L "$pkg" 2>/dev/null | grep -E '^/etc/init\.d/[^/]+$' || true); do
            name=$(basename "$unit")
            if [ -d /run/systemd/system ]; then
                systemctl is-enabled --quiet "$name" 2>/dev/null || continue
                systemctl disable --quiet "$name" 2>/dev/null || true
            else
                update-rc.d "$name" disable >/dev/null 2>&1 || true
            fi
            echo "setup: disabled $name (init script of $pkg)"
        done
    done
}

setup_missing=()
for p in "${setup_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || setup_missing+=("$p")
done
if [ "${#setup_missing[@]}" -gt 0 ]; then
    echo "setup: installing ${setup_missing[*]} (and what they depend on)"
    dpkg-query -W -f='${Package}\n' | sort > /tmp/backuppc-enroll-setup.before
    setup_held=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# backuppc-enroll scripts/setup.sh: no service starts while it installs\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        setup_held=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # slapd: no server config of its own (tests run their own slapd).
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    setup_status=0
    apt-get update -q && apt-get install -y -q --no-install-recommends "${setup_missing[@]}" || setup_status=$?
    # Removed here, not in an EXIT trap: a script that sources this one
    # sets its own EXIT trap, which would replace ours.
    if [ "$setup_held" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    setup_new=$(dpkg-query -W -f='${Package}\n' | sort | comm -13 /tmp/backuppc-enroll-setup.before -)
    rm -f /tmp/backuppc-enroll-setup.before
    # shellcheck disable=SC2086 # one package name a line
    setup_disable_services $setup_new
    if [ "$setup_status" -ne 0 ]; then
        echo "setup: apt-get failed (exit status $setup_status) installing ${setup_missing[*]}: see its messages above" >&2
        exit 1
    fi
fi
mkdir -p /run/sshd

# Rust: Cargo.toml's rust-version is the oldest that builds this project;
# Debian 12's own cargo (1.63) is older. rustup's toolchain in ~/.cargo is
# preferred when there is one.
setup_need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml")
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
setup_cargo_ok() {
    local have
    have=$(cargo --version 2>/dev/null | awk '{print $2}') || return 1
    [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$setup_need" "${have%%-*}" | sort -V | head -1)" = "$setup_need" ]
}
if ! setup_cargo_ok; then
    if command -v cargo >/dev/null 2>&1; then
        echo "setup: $(command -v cargo) is $(cargo --version), older than Rust $setup_need this project needs (Debian 12's own cargo is 1.63); installing Rust through rustup into $HOME/.cargo"
    else
        echo "setup: no cargo found; installing Rust through rustup into $HOME/.cargo"
    fi
    if [ -x "$HOME/.cargo/bin/rustup" ]; then
        "$HOME/.cargo/bin/rustup" toolchain install stable --profile minimal -c rustfmt,clippy
        "$HOME/.cargo/bin/rustup" default stable
    else
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! setup_cargo_ok; then
        echo "setup: cargo is still older than Rust $setup_need ($(cargo --version 2>&1)): run 'rustup update stable', or remove the old cargo from PATH ($(command -v cargo))" >&2
        exit 1
    fi
fi
cargo --version

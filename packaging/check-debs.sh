#!/usr/bin/env bash
# Checks the Debian packages the way an administrator meets them, on this
# machine, as root: builds both, runs lintian (no errors allowed), installs
# them with dpkg -i, runs the installed programs, removes them (conffiles
# stay), purges them (nothing stays), and fails on the first surprise.
#
# It refuses to run where either package is already installed: it would
# purge the administrator's own installation.
set -euo pipefail
cd "$(dirname "$0")/.."

client=backuppc-enroll-client
server=backuppc-enroll-server
fail() {
    echo "check-debs: FAILED: $*" >&2
    exit 1
}
installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qv '^not-installed$'
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges the packages)"
for p in $client $server; do
    if installed "$p"; then
        fail "$p is installed on this machine; this check installs and purges it, so run it elsewhere"
    fi
done
for path in /etc/backuppc-enroll /var/lib/backuppc-enroll /usr/lib/backuppc-enroll; do
    [ ! -e "$path" ] || fail "$path exists before the packages are installed; the purge check needs a machine without it"
done

echo "== build"
bash packaging/build-debs.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
client_deb=target/debian/${client}_${version}-1_${arch}.deb
server_deb=target/debian/${server}_${version}-1_${arch}.deb
[ -f "$client_deb" ] && [ -f "$server_deb" ] || fail "packages not built"

echo "== lintian"
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$client_deb" "$server_deb" 2>&1 \
    | grep -v '^running with root privileges' || true
lintian --fail-on error "$client_deb" "$server_deb" >/dev/null 2>&1 || fail "lintian reports errors"

workdir=$(mktemp -d)
# The BackupPC account's ssh folder: the README's steps add the register
# key there, the purge must take it out again, byte for byte.
bpc_ssh="$(getent passwd backuppc | cut -d: -f6)/.ssh"
snapshot() {
    if [ -e "$bpc_ssh" ]; then (cd "$bpc_ssh" && find . -printf '%p %U:%G %m\n' | sort && cat authorized_keys 2>/dev/null); else echo absent; fi
}
snapshot > "$workdir/ssh.before"
[ -e "$bpc_ssh" ] && cp -a "$bpc_ssh" "$workdir/ssh.saved"
cleanup() {
    # Whatever happened, leave the machine as it was.
    for p in $client $server; do
        if installed "$p"; then dpkg --purge "$p" >/dev/null 2>&1 || true; fi
    done
    if [ "$(snapshot)" != "$(cat "$workdir/ssh.before")" ]; then
        rm -rf "$bpc_ssh"
        if [ -e "$workdir/ssh.saved" ]; then cp -a "$workdir/ssh.saved" "$bpc_ssh"; fi
    fi
    # None of them existed before (checked above).
    rm -rf /etc/backuppc-enroll /var/lib/backuppc-enroll /usr/lib/backuppc-enroll
    rm -rf "$workdir"
}
trap cleanup EXIT

echo "== dpkg -i: the client first, then the server, where enroll has already made /var/lib/backuppc-enroll as root"
dpkg -i "$client_deb"
install -d -m 0755 /var/lib/backuppc-enroll
dpkg -i "$server_deb" | tee "$workdir/install.log"
grep -q 'forced-command check-config' "$workdir/install.log" || fail "the server's postinst does not print the next step"
dpkg -L $client $server | sort > "$workdir/files"

echo "== installed programs"
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
expect_version="$version${revision:+ (git $revision)}"
for cmd in enroll forced-command /usr/lib/backuppc-enroll/rsyncsend; do
    got=$("$cmd" --version)
    [ "$got" = "$(basename "$cmd") $expect_version" ] || fail "$cmd --version: got '$got', want '$(basename "$cmd") $expect_version'"
    echo "$got"
done
[ "$(command -v enroll)" = /usr/bin/enroll ] || fail "enroll is not on the PATH"
[ "$(stat -c '%U:%G %a' /var/lib/backuppc-enroll)" = "backuppc:backuppc 750" ] \
    || fail "registry folder: $(stat -c '%U:%G %a' /var/lib/backuppc-enroll), want backuppc:backuppc 750"
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml)" = "root:backuppc 640" ] \
    || fail "server.toml: $(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml), want root:backuppc 640"
for page in enroll enroll-bundle rsyncsend forced-command forced-command-check-config forced-command-token-create; do
    file=$(man -w "$page") || fail "man $page: not found"
    warnings=$(MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$file" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "man $page: $warnings"
done
for f in /usr/share/bash-completion/completions/enroll /usr/share/bash-completion/completions/forced-command \
    /usr/share/zsh/vendor-completions/_enroll /usr/share/fish/vendor_completions.d/forced-command.fish; do
    [ -s "$f" ] || fail "$f missing"
done
[ ! -e /etc/backuppc-enroll/register-key ] || fail "the client package must not ship a register key"
[ ! -e /var/lib/backuppc-enroll/client-state.json ] || fail "installing the client enrolled something"

echo "== the README's server steps"
ssh-keygen -q -t ed25519 -N '' -C 'register key' -f "$workdir/register-key"
ssh-keygen -q -t ed25519 -N '' -C 'server host key' -f "$workdir/host-key"
sed -i 's|^url = .*|url = "https://backup.test.invalid/backuppc/index.cgi?host={host}"|' /etc/backuppc-enroll/server.toml
forced-command install-register-key "$workdir/register-key.pub"
grep -q "^restrict,command=\"/usr/bin/forced-command --config /etc/backuppc-enroll/server.toml\" ssh-ed25519 " "$bpc_ssh/authorized_keys" \
    || fail "the register key line does not name the installed forced-command"

echo "== forced-command check-config (installed config, this machine's BackupPC)"
set +e
forced-command check-config > "$workdir/check.out" 2>&1
status=$?
set -e
cat "$workdir/check.out"
grep -q '^ok: /etc/backuppc-enroll/server.toml parses' "$workdir/check.out" || fail "check-config did not read the installed server.toml"
grep -q '^ok: /var/lib/backuppc-enroll is writable by backuppc' "$workdir/check.out" || fail "check-config: registry folder not ready"
# Debian's stock config.pl lets users edit RsyncSshArgs and friends: the
# one error expected here, which the README's lines fix. Check that the
# fix makes check-config pass, in a private mount namespace so this
# machine's config.pl is never changed.
errors=$(grep -c '^error:' "$workdir/check.out" || true)
if [ "$errors" -gt 0 ]; then
    [ "$status" -eq 1 ] || fail "check-config found errors but exited $status"
    [ "$errors" -eq 1 ] && grep -q '^error: users may edit RsyncSshArgs' "$workdir/check.out" \
        || fail "check-config: unexpected errors on a fresh install"
    cp /etc/backuppc/config.pl "$workdir/config.pl"
    grep '^\$Conf{CgiUserConfigEdit}' README.md >> "$workdir/config.pl"
    unshare --mount --propagation private -- sh -c \
        "mount --bind '$workdir/config.pl' /etc/backuppc/config.pl && exec forced-command check-config" \
        > "$workdir/check.out" 2>&1 || { cat "$workdir/check.out"; fail "check-config still fails with the README's config.pl lines"; }
    echo "-- with the README's CgiUserConfigEdit lines: check-config passes"
fi
! grep -q 'shipped example' "$workdir/check.out" || fail "check-config still sees the example url"

echo "== enroll bundle (installed enroll)"
(cd "$workdir" && enroll bundle --server backup.example.org --register-key register-key --host-key host-key.pub -o site.tar.gz)
tar -tvzf "$workdir/site.tar.gz" | grep -q -- '-rw------- root/root .* etc/backuppc-enroll/register-key$' \
    || fail "the bundle's register key is not 0600 root"

echo "== the site bundle unpacked at / (as on a workstation)"
tar -xpzf "$workdir/site.tar.gz" -C /
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/register-key)" = "root:root 600" ] || fail "installed register key is not 0600 root"
enroll --dry-run --yes --logon root > "$workdir/dry-run.out" 2>&1 || { cat "$workdir/dry-run.out"; fail "enroll --dry-run with the bundle"; }
cat "$workdir/dry-run.out"
grep -q 'ask backuppc@backup.example.org port 22' "$workdir/dry-run.out" || fail "enroll does not read the bundle's client.toml"
grep -q 'bound to /usr/lib/backuppc-enroll/rsyncsend' "$workdir/dry-run.out" || fail "enroll does not bind keys to the installed rsyncsend"
cp -p /etc/backuppc-enroll/client.toml "$workdir/client.toml.bundle"

echo "== dpkg -i again (the upgrade path): the admin's edits and overrides stay"
cp -p /etc/backuppc-enroll/server.toml "$workdir/server.toml.edited"
dpkg -i "$server_deb" "$client_deb" | tee "$workdir/reinstall.log"
! grep -q 'is installed. Next:' "$workdir/reinstall.log" || fail "postinst repeats the first-install steps on an upgrade"
cmp -s /etc/backuppc-enroll/server.toml "$workdir/server.toml.edited" || fail "the edited server.toml was replaced"
cmp -s /etc/backuppc-enroll/client.toml "$workdir/client.toml.bundle" || fail "the bundle's client.toml was replaced"
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml)" = "root:backuppc 640" ] || fail "server.toml mode lost on upgrade"

echo "== dpkg -r, then purge, the client alone: the server's registry folder stays"
dpkg -r $client | tee "$workdir/remove.log"
grep -q "removing this machine's enrollment" "$workdir/remove.log" || fail "the client's prerm did not run enroll --uninstall"
for f in /usr/bin/enroll /usr/lib/backuppc-enroll/rsyncsend; do
    [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -f /etc/backuppc-enroll/client.toml ] || fail "conffile client.toml removed by dpkg -r (only a purge removes it)"
dpkg --purge $client
for f in client.toml register-key server_host_keys; do
    [ ! -e "/etc/backuppc-enroll/$f" ] || fail "/etc/backuppc-enroll/$f left after the client's purge"
done
[ "$(stat -c '%U:%G %a' /var/lib/backuppc-enroll 2>&1)" = "backuppc:backuppc 750" ] \
    || fail "purging the client took the server's registry folder"
forced-command check-config > "$workdir/check-after.out" 2>&1 || true
grep -q '^ok: /var/lib/backuppc-enroll is writable by backuppc' "$workdir/check-after.out" \
    || fail "check-config: registry folder not usable after the client's purge"

echo "== dpkg -r, then purge, the server"
dpkg -r $server
[ ! -e /usr/bin/forced-command ] || fail "forced-command left after dpkg -r"
[ -f /etc/backuppc-enroll/server.toml ] || fail "conffile server.toml removed by dpkg -r (only a purge removes it)"
dpkg --purge $server
left=$(while read -r f; do [ -d "$f" ] || [ ! -e "$f" ] || echo "$f"; done < "$workdir/files")
[ -z "$left" ] || fail "files left after purge: $left"
for path in /etc/backuppc-enroll /var/lib/backuppc-enroll /usr/lib/backuppc-enroll /usr/share/doc/$client /usr/share/doc/$server; do
    [ ! -e "$path" ] || fail "$path left after purge"
done
! dpkg-statoverride --list /etc/backuppc-enroll/server.toml >/dev/null || fail "statoverride left after purge"
[ "$(snapshot)" = "$(cat "$workdir/ssh.before")" ] || fail "$bpc_ssh differs after purge: $(snapshot)"
echo "check-debs: both packages build, pass lintian, install, run, and purge cleanly"

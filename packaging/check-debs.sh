#!/usr/bin/env bash
# Checks the Debian packages the way an administrator meets them, on this
# machine, as root: builds both, runs lintian (no errors allowed), installs
# them with dpkg -i, runs the installed programs, removes them (conffiles
# stay), purges them (nothing stays), and fails on the first surprise.
#
# It refuses to run where either package is already installed: it would
# purge the administrator's own installation.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
# A check never dies without saying what failed: any command that stops
# the script (set -e) is named, with its line and exit status, once, by
# the main shell (a failure inside a $(…) fails the command around it).
trap 'status=$?; [ "$BASH_SUBSHELL" -gt 0 ] || echo "check-debs: FAILED: line $LINENO: $BASH_COMMAND (exit status $status)" >&2' ERR

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
# The workstation's backup account of the enrollment below.
backup_user=bpedeb
! id "$backup_user" >/dev/null 2>&1 || fail "user $backup_user exists (a previous run?): userdel -r $backup_user"

# The BackupPC account's ssh folder: the README's steps add the register
# key there, the purge must take it out again, byte for byte.
bpc_home=$(getent passwd backuppc | cut -d: -f6) || fail "no backuppc account: install backuppc first (scripts/setup.sh does)"
bpc_ssh="$bpc_home/.ssh"
workdir=$(mktemp -d)
# A real BackupPC server's folder holds its own key and known_hosts and
# often no authorized_keys yet: every file may be absent.
snapshot() {
    if [ ! -e "$bpc_ssh" ]; then
        echo absent
        return
    fi
    (cd "$bpc_ssh" && find . -printf '%p %U:%G %m\n' | sort)
    if [ -f "$bpc_ssh/authorized_keys" ]; then cat "$bpc_ssh/authorized_keys"; fi
}
snapshot > "$workdir/ssh.before"
if [ -e "$bpc_ssh" ]; then cp -a "$bpc_ssh" "$workdir/ssh.saved"; fi
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
    if id "$backup_user" >/dev/null 2>&1; then userdel --remove "$backup_user" 2>/dev/null || true; fi
    rm -f "/etc/sudoers.d/backuppc-enroll-$backup_user"
    rm -rf "$workdir"
}
# Set before the first step that can fail, so no run leaves its folder.
trap cleanup EXIT

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

echo "== dpkg -i: the client first, then the server, where enroll has already made /var/lib/backuppc-enroll as root"
dpkg -i "$client_deb"
install -d -m 0755 /var/lib/backuppc-enroll
dpkg -i "$server_deb" | tee "$workdir/install.log"
grep -q 'forced-command check-config' "$workdir/install.log" || fail "the server's postinst does not print the next step"
dpkg -L $client $server | sort > "$workdir/files"

echo "== installed programs"
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
expect_version="$version${revision:+ (git $revision)}"
for cmd in enroll forced-command dropbox /usr/lib/backuppc-enroll/rsyncsend; do
    got=$("$cmd" --version)
    [ "$got" = "$(basename "$cmd") $expect_version" ] || fail "$cmd --version: got '$got', want '$(basename "$cmd") $expect_version'"
    echo "$got"
done
[ "$(command -v enroll)" = /usr/bin/enroll ] || fail "enroll is not on the PATH"
[ -x /usr/bin/forced-command-fleet ] || fail "forced-command-fleet (which forced-command fleet runs) is not installed beside forced-command"
[ "$(stat -c '%U:%G %a' /var/lib/backuppc-enroll)" = "backuppc:backuppc 755" ] \
    || fail "registry folder: $(stat -c '%U:%G %a' /var/lib/backuppc-enroll), want backuppc:backuppc 755"
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml)" = "root:backuppc 640" ] \
    || fail "server.toml: $(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml), want root:backuppc 640"
for page in enroll enroll-bundle enroll-jobs rsyncsend rsyncsend-run-job rsyncsend-rotate-key forced-command \
    forced-command-check-config forced-command-token-create forced-command-fleet-job forced-command-fleet-rotate-key \
    dropbox dropbox-setup; do
    file=$(man -w "$page") || fail "man $page: not found"
    warnings=$(MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$file" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "man $page: $warnings"
done
for f in /usr/share/bash-completion/completions/enroll /usr/share/bash-completion/completions/forced-command \
    /usr/share/zsh/vendor-completions/_enroll /usr/share/fish/vendor_completions.d/forced-command.fish \
    /usr/share/bash-completion/completions/dropbox /lib/systemd/system/dropbox-prune@.timer; do
    [ -s "$f" ] || fail "$f missing"
done
[ ! -e /etc/backuppc-enroll/register-key ] || fail "the client package must not ship a register key"
[ ! -e /var/lib/backuppc-enroll/client-state.json ] || fail "installing the client enrolled something"

echo "== the README's server steps"
ssh-keygen -q -t ed25519 -N '' -C 'register key' -f "$workdir/register-key"
sed -i 's|^url = .*|url = "https://backup.test.invalid/backuppc/index.cgi?host={host}"|' /etc/backuppc-enroll/server.toml
forced-command install-register-key "$workdir/register-key.pub"
grep -q "^restrict,command=\"/usr/bin/forced-command --config /etc/backuppc-enroll/server.toml\" ssh-ed25519 " "$bpc_ssh/authorized_keys" \
    || fail "the register key line does not name the installed forced-command"

echo "== forced-command check-config (installed config, this machine's BackupPC)"
# Expected to fail here (see below): a list, so the ERR trap stays quiet.
forced-command check-config > "$workdir/check.out" 2>&1 && status=0 || status=$?
cat "$workdir/check.out"
grep -q '^ok: /etc/backuppc-enroll/server.toml parses' "$workdir/check.out" || fail "check-config did not read the installed server.toml"
grep -q '^ok: /var/lib/backuppc-enroll is writable by backuppc' "$workdir/check.out" || fail "check-config: registry folder not ready"
# Debian's stock config.pl lets users edit RsyncSshArgs and friends: the
# one error expected here, which the README's lines fix. Check that the
# fix makes check-config pass, in a private mount namespace so this
# machine's config.pl is never changed.
cp /etc/backuppc/config.pl "$workdir/config.pl.fixed"
grep '^\$Conf{CgiUserConfigEdit}' README.md >> "$workdir/config.pl.fixed"
errors=$(grep -c '^error:' "$workdir/check.out" || true)
if [ "$errors" -gt 0 ]; then
    [ "$status" -eq 1 ] || fail "check-config found errors but exited $status"
    [ "$errors" -eq 1 ] && grep -q '^error: users may edit RsyncSshArgs' "$workdir/check.out" \
        || fail "check-config: unexpected errors on a fresh install"
    unshare --mount --propagation private -- sh -c \
        "mount --bind '$workdir/config.pl.fixed' /etc/backuppc/config.pl && exec forced-command check-config" \
        > "$workdir/check.out" 2>&1 || { cat "$workdir/check.out"; fail "check-config still fails with the README's config.pl lines"; }
    echo "-- with the README's CgiUserConfigEdit lines: check-config passes"
fi
! grep -q 'shipped example' "$workdir/check.out" || fail "check-config still sees the example url"

echo "== a real enrollment and backup with the installed programs"
# This machine plays both sides. sshd runs on a free loopback port in a
# private mount namespace where BackupPC's config folder and the backuppc
# account's home are copies, so the machine's own BackupPC is untouched;
# the workstation side (backup account, sudoers drop-in, key line, state)
# is real, and undone below by the client's prerm.
ns=$workdir/ns
mkdir -p "$ns/sshd" "$ns/backup"
# The backuppc account writes the backup under it.
chmod 0711 "$workdir"
chmod 0755 "$ns"
cp -a /etc/backuppc "$ns/etc-backuppc"
cat "$workdir/config.pl.fixed" > "$ns/etc-backuppc/config.pl"
# Debian's stock hosts file has BackupPC back up localhost for the backuppc
# logon; here localhost is the workstation that enrolls.
sed -i '/^localhost[[:space:]]/d' "$ns/etc-backuppc/hosts"
rm -f "$ns/etc-backuppc/localhost.pl"
install -d -o backuppc -g backuppc -m 0750 "$ns/home"
cp -a "$bpc_ssh" "$ns/home/.ssh"
chown backuppc:backuppc "$ns/backup"
ssh-keygen -q -t ed25519 -N '' -C check-debs-sshd -f "$ns/sshd/host_key"
port=$((20000 + RANDOM % 40000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
cat > "$ns/sshd/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $ns/sshd/host_key
PidFile none
# PAM: Debian's backuppc account has a locked password ("!").
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers backuppc $backup_user
AllowTcpForwarding no
X11Forwarding no
CONF
cat > "$ns/site.toml" <<TOML
# this check's workstation: its own backup account, its loopback sshd
backup_user = "$backup_user"
hostname = "localhost"
sshd_port = $port
host_keys = ["$ns/sshd/host_key.pub"]
TOML
enroll bundle --server 127.0.0.1 --port "$port" --register-key "$workdir/register-key" \
    --host-key "$ns/sshd/host_key.pub" --client-config "$ns/site.toml" -o "$ns/site.tar.gz"
tar -tvzf "$ns/site.tar.gz" | grep -q -- '-rw------- root/root .* etc/backuppc-enroll/register-key$' \
    || fail "the bundle's register key is not 0600 root"
tar -xpzf "$ns/site.tar.gz" -C /
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/register-key)" = "root:root 600" ] || fail "installed register key is not 0600 root"
mkdir -p /run/sshd
unshare --mount --propagation private -- bash -c '
    set -euo pipefail
    ns=$1; port=$2
    mount --bind "$ns/etc-backuppc" /etc/backuppc
    mount --bind "$ns/home" /var/lib/backuppc
    /usr/sbin/sshd -D -e -f "$ns/sshd/sshd_config" 2> "$ns/sshd/log" &
    sshd=$!
    trap "kill $sshd" EXIT
    # Ready when sshd says so (a connect could reach something else).
    for _ in $(seq 100); do grep -q "Server listening on 127.0.0.1 port $port" "$ns/sshd/log" && break; sleep 0.1; done
    enroll --yes --logon root
    grep -q "^localhost[[:space:]]0[[:space:]]root$" /etc/backuppc/hosts
    ssh_cmd=$(perl -e "our %Conf; do \$ARGV[0] or die; print \$Conf{RsyncSshArgs}[1]" /etc/backuppc/pc/localhost.pl)
    runuser -u backuppc -- rsync -a --protect-args --rsync-path=/usr/bin/rsync -e "${ssh_cmd//\$sshPath//usr/bin/ssh}" \
        127.0.0.1:/etc/debian_version "$ns/backup/"
    forced-command revoke localhost
' bash "$ns" "$port" > "$ns/run.log" 2>&1 || { cat "$ns/run.log" "$ns/sshd/log"; fail "enrollment or backup with the installed programs"; }
cat "$ns/run.log"
cmp -s "$ns/backup/debian_version" /etc/debian_version || fail "the backup through rsyncsend did not bring the file back"
keys_of() {
    { cat "/var/lib/$backup_user/.ssh/authorized_keys" 2>/dev/null || true; } \
        | grep -c 'command="/usr/lib/backuppc-enroll/rsyncsend --config /etc/backuppc-enroll/client.toml"' || true
}
[ "$(keys_of)" = 1 ] || fail "no key line bound to the installed rsyncsend"
[ -f "/etc/sudoers.d/backuppc-enroll-$backup_user" ] || fail "no sudoers drop-in"
cp -p /etc/backuppc-enroll/client.toml "$workdir/client.toml.bundle"

echo "== dpkg -i again (the upgrade path): the admin's edits and overrides stay"
cp -p /etc/backuppc-enroll/server.toml "$workdir/server.toml.edited"
dpkg -i "$server_deb" "$client_deb" | tee "$workdir/reinstall.log"
! grep -q 'is installed. Next:' "$workdir/reinstall.log" || fail "postinst repeats the first-install steps on an upgrade"
cmp -s /etc/backuppc-enroll/server.toml "$workdir/server.toml.edited" || fail "the edited server.toml was replaced"
cmp -s /etc/backuppc-enroll/client.toml "$workdir/client.toml.bundle" || fail "the bundle's client.toml was replaced"
[ "$(stat -c '%U:%G %a' /etc/backuppc-enroll/server.toml)" = "root:backuppc 640" ] || fail "server.toml mode lost on upgrade"

echo "== dpkg -r, then purge, the client alone: the server's registry folder stays"
[ "$(keys_of)" = 1 ] || fail "the reinstall (prerm upgrade) touched the enrollment"
dpkg -r $client | tee "$workdir/remove.log"
grep -q "removing this machine's enrollment" "$workdir/remove.log" || fail "the client's prerm did not run enroll --uninstall"
[ "$(keys_of)" = 0 ] || fail "the key line outlived rsyncsend"
[ ! -e "/etc/sudoers.d/backuppc-enroll-$backup_user" ] || fail "the sudoers drop-in outlived rsyncsend"
id "$backup_user" >/dev/null 2>&1 || fail "the backup account went with the package (it must stay)"
for f in /usr/bin/enroll /usr/lib/backuppc-enroll/rsyncsend; do
    [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -f /etc/backuppc-enroll/client.toml ] || fail "conffile client.toml removed by dpkg -r (only a purge removes it)"
dpkg --purge $client
for f in client.toml register-key server_host_keys; do
    [ ! -e "/etc/backuppc-enroll/$f" ] || fail "/etc/backuppc-enroll/$f left after the client's purge"
done
[ "$(stat -c '%U:%G %a' /var/lib/backuppc-enroll 2>&1)" = "backuppc:backuppc 755" ] \
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

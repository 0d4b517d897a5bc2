#!/usr/bin/env bash
# A local demo of the whole product, as root on Debian 12, in a few
# minutes: this machine plays the backup server and a workstation.
#
#  - The server is the real BackupPC 4 of Debian's backuppc package,
#    running in a private mount namespace over copies of its config folder
#    (/etc/backuppc) and a fresh data folder (/var/lib/backuppc, the
#    backuppc account's home): the machine's own BackupPC is untouched
#    (checked at the end). A private sshd on a loopback port serves both
#    sides: the register key, bound to forced-command, and the workstation's
#    backup account, bound to rsyncsend.
#  - The workstation enrolls itself with `enroll`; BackupPC then runs a full
#    backup through rsyncsend, lists it with its own tools, restores a
#    deleted file, and the per-host key is refused a shell.
#
# It installs what it uses (scripts/setup.sh --demo: OpenSSH, rsync, sudo,
# BackupPC and what it depends on, a Rust toolchain if needed), leaving
# every service those packages bring disabled. What it creates (two
# accounts, a sudoers drop-in, /var/lib/backuppc-enroll-demo) is removed at
# the end; pass --keep to look at it afterwards. apt and cargo write to the
# log file named below.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
keep=0
case "${1:-}" in
    --keep) keep=1 ;;
    "") ;;
    *)
        echo "usage: $0 [--keep]" >&2
        exit 2
        ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (it installs packages, creates two accounts and starts an sshd on loopback)" >&2
    exit 1
fi

demo=/var/lib/backuppc-enroll-demo
log=/var/tmp/backuppc-enroll-demo.log
bin=/usr/share/backuppc/bin
backup_user=bpe-demo-bkp
share=$demo/workstation
ns_pid=""
sshd_pid=""
daemon_pid=""
step_name=""
started=$(date +%s)

if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
# step "what happens" "how long": the heading of the next step.
step() {
    step_name=$1
    say "$1 ($2)"
}
fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}
# Run a noisy command with its output in the log; on failure show its end.
logged() {
    echo "--- $(date -u +%H:%M:%S) $*" >> "$log"
    if ! "$@" >> "$log" 2>&1; then
        echo "demo: FAILED: $* (step: $step_name); the end of $log:" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
}
# Named once, by the main shell (a failure in a $(…) that matters fails
# the command around it there too).
trap 'status=$?; [ "$BASH_SUBSHELL" -gt 0 ] || echo "demo: FAILED at line $LINENO (step: $step_name): $BASH_COMMAND (exit status $status)" >&2' ERR

# Inside the private mount namespace (where the copies are mounted), and as
# the backuppc account there, as BackupPC's tools insist.
in_ns() { nsenter --target="$ns_pid" --mount -- "$@"; }
as_backuppc() { in_ns setpriv --reuid=backuppc --regid=backuppc --init-groups --reset-env -- "$@"; }

stop_pid() {
    local pid=$1 _
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    # The daemon first (it may be writing), then sshd, then the namespace.
    stop_pid "$daemon_pid"
    stop_pid "$sshd_pid"
    stop_pid "$ns_pid"
    rm -f "$demo/pids"
    if [ "$keep" = 0 ]; then
        [ -x "$demo/bin/enroll" ] && "$demo/bin/enroll" --config "$demo/etc/client.toml" --uninstall --remove-user >/dev/null 2>&1 || true
        if id "$backup_user" >/dev/null 2>&1; then userdel --remove "$backup_user" 2>/dev/null || true; fi
        rm -f "/etc/sudoers.d/backuppc-enroll-$backup_user"
        rm -rf "$demo"
    else
        echo "kept $demo and the account $backup_user (the daemons are stopped); remove them with: bash $0"
    fi
}

# Leftovers of an interrupted run: its daemons (by the pids it noted, if
# they are still those programs), its account and folder.
if [ -f "$demo/pids" ]; then
    while read -r pid; do
        case "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" in
            *sleep* | *sshd* | *BackupPC*) stop_pid "$pid" ;;
        esac
    done < "$demo/pids"
fi
if [ -e "$demo" ] || id "$backup_user" >/dev/null 2>&1; then
    keep_asked=$keep
    keep=0
    cleanup
    keep=$keep_asked
fi
trap cleanup EXIT
: > "$log"
echo "demo: apt and cargo output goes to $log"

step "1/9 Install what the demo uses: OpenSSH, rsync, sudo, BackupPC 4, Rust; services left disabled" "about 1-2 minutes on a fresh Debian 12, nothing when present"
logged bash scripts/setup.sh --demo
# The cargo setup.sh checked: rustup's when there is one.
if [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
grep '^setup: ' "$log" || echo "all installed already"
echo "$(cargo --version), BackupPC $(dpkg-query -W -f='${Version}' backuppc)"

step "2/9 Build enroll, forced-command and rsyncsend" "about 2-4 minutes the first time, seconds after"
logged cargo build --locked --bins
install -d -m 755 "$demo" "$demo/bin" "$demo/etc" "$demo/state" "$demo/sshd"
install -m 755 target/debug/enroll target/debug/forced-command target/debug/rsyncsend "$demo/bin/"
ls -l "$demo/bin"

step "3/9 The backup server: BackupPC's config copied, a fresh data folder, the register key bound to forced-command" "a second"
# What the machine's own BackupPC has now: compared at the end.
bpc_home=$(getent passwd backuppc | cut -d: -f6) || fail "no backuppc account: is the backuppc package installed?"
snapshot() {
    { find /etc/backuppc "$bpc_home/.ssh" -printf '%p %U:%G %m %s\n' 2>/dev/null || true; } | sort
    { find /etc/backuppc "$bpc_home/.ssh" -type f -exec md5sum {} + 2>/dev/null || true; } | sort
    ls -la /run/backuppc 2>/dev/null || true
}
snapshot > "$demo/machine-backuppc.before"
cp -a /etc/backuppc "$demo/etc-backuppc"
# Debian's stock hosts file backs up localhost; here localhost is the
# workstation that enrolls.
sed -i '/^localhost[[:space:]]/d' "$demo/etc-backuppc/hosts"
rm -f "$demo/etc-backuppc/localhost.pl"
top=$demo/topdir
install -d -o backuppc -g backuppc -m 750 "$top"
for d in pc pool cpool log; do install -d -o backuppc -g backuppc -m 750 "$top/$d"; done
install -d -o backuppc -g backuppc -m 700 "$top/.ssh"
install -d -o backuppc -g backuppc -m 755 "$demo/run" "$demo/registry"
# The daemon's socket and pid file in a folder of its own, so that
# nothing here reaches the machine's BackupPC; no SMB tools needed.
cat >> "$demo/etc-backuppc/config.pl" <<PERL
# backuppc-enroll demo
\$Conf{RunDir} = '$demo/run';
\$Conf{SmbClientPath} = '';
\$Conf{NmbLookupPath} = '';
\$Conf{NmbLookupCmd} = '';
PERL
# The users may not change how their host is reached (the README's lines).
grep '^\$Conf{CgiUserConfigEdit}' README.md >> "$demo/etc-backuppc/config.pl" || true

logon="${SUDO_USER:-root}"
cat > "$demo/etc/server.toml" <<TOML
url = "https://backup.example.org/backuppc/index.cgi?host={host}"
logon_check = "nss"
registry = "$demo/registry/registry.json"
audit_log = "$demo/registry/audit.log"
[shares]
linux = ["$share"]
TOML
chmod 644 "$demo/etc/server.toml"
ssh-keygen -q -t ed25519 -N '' -C "register key" -f "$demo/etc/register-key"
echo "restrict,command=\"$demo/bin/forced-command --config $demo/etc/server.toml\" $(cat "$demo/etc/register-key.pub")" \
    > "$top/.ssh/authorized_keys"
chown backuppc:backuppc "$top/.ssh/authorized_keys"
chmod 600 "$top/.ssh/authorized_keys"
echo "register key in ~backuppc/.ssh/authorized_keys (the copy), bound to forced-command:"
cut -c1-110 "$top/.ssh/authorized_keys" | sed 's/$/…/'

# What the workstation's user keeps: a few files, one only root can read.
install -d -m 755 "$share/Documents"
echo "quarterly report" > "$share/Documents/report 2026.txt"
echo "notes" > "$share/Documents/notes.md"
echo "root-only secret" > "$share/root-only.txt"
chmod 600 "$share/root-only.txt"
ln -s Documents/notes.md "$share/notes-link"

step "4/9 A private mount namespace with the copies over /etc/backuppc and /var/lib/backuppc; in it an sshd on loopback and the BackupPC daemon" "a few seconds"
unshare --mount --propagation private -- bash -c \
    'mount --bind "$1" /etc/backuppc && mount --bind "$2" /var/lib/backuppc && exec sleep infinity' \
    bash "$demo/etc-backuppc" "$top" &
ns_pid=$!
echo "$ns_pid" >> "$demo/pids"
for _ in $(seq 100); do
    [ "$(in_ns stat -c %i /var/lib/backuppc 2>/dev/null)" = "$(stat -c %i "$top")" ] && break
    kill -0 "$ns_pid" 2>/dev/null || fail "the mount namespace did not start"
    sleep 0.1
done
[ "$(in_ns stat -c %i /var/lib/backuppc)" = "$(stat -c %i "$top")" ] || fail "the copies are not mounted in the namespace"

ssh-keygen -q -t ed25519 -N '' -C demo-sshd -f "$demo/sshd/host_key"
port=$((20000 + RANDOM % 40000))
while (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
cat > "$demo/sshd/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $demo/sshd/host_key
PidFile none
# PAM as on Debian: the backuppc account's password is locked ("!").
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers backuppc $backup_user
AllowTcpForwarding no
X11Forwarding no
CONF
mkdir -p /run/sshd
# Started as simple commands (not through in_ns, a function, which "&"
# would run in a subshell): $! is then the daemon itself, stopped by pid.
nsenter --target="$ns_pid" --mount -- /usr/sbin/sshd -D -e -f "$demo/sshd/sshd_config" 2> "$demo/sshd/log" &
sshd_pid=$!
echo "$sshd_pid" >> "$demo/pids"
# Ready when sshd says so (a connect could reach something else).
for _ in $(seq 100); do grep -q "Server listening on 127.0.0.1 port $port" "$demo/sshd/log" && break; sleep 0.1; done
grep -q "Server listening on 127.0.0.1 port $port" "$demo/sshd/log" || fail "sshd did not start: $(cat "$demo/sshd/log")"
echo "sshd (pid $sshd_pid) on 127.0.0.1:$port"

nsenter --target="$ns_pid" --mount -- setpriv --reuid=backuppc --regid=backuppc --init-groups --reset-env -- \
    "$bin/BackupPC" > "$demo/daemon.log" 2>&1 &
daemon_pid=$!
echo "$daemon_pid" >> "$demo/pids"
for _ in $(seq 150); do
    [ -S "$demo/run/BackupPC.sock" ] && as_backuppc "$bin/BackupPC_serverMesg" status info > /dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || fail "BackupPC did not start: $(cat "$demo/daemon.log")"
    sleep 0.2
done
as_backuppc "$bin/BackupPC_serverMesg" status info > /dev/null 2>&1 || fail "BackupPC does not answer: $(cat "$demo/daemon.log")"
! as_backuppc "$bin/BackupPC_serverMesg" status hosts | grep -q '"localhost"' || fail "BackupPC already lists localhost"
echo "BackupPC daemon (pid $daemon_pid) running, with no host yet"

step "5/9 The workstation enrolls itself: enroll --logon $logon --yes" "a second or two"
echo "[127.0.0.1]:$port $(cat "$demo/sshd/host_key.pub")" > "$demo/etc/server_host_keys"
cat > "$demo/etc/client.toml" <<TOML
server = "127.0.0.1"
port = $port
server_user = "backuppc"
server_host_keys = "$demo/etc/server_host_keys"
register_key = "$demo/etc/register-key"
backup_user = "$backup_user"
backup_home = "$demo/$backup_user"
rsyncsend = "$demo/bin/rsyncsend"
state_file = "$demo/state/client-state.json"
hostname = "localhost"
sshd_port = $port
host_keys = ["$demo/sshd/host_key.pub"]
restore = true
TOML
"$demo/bin/enroll" --config "$demo/etc/client.toml" --logon "$logon" --yes
grep -q '"backuppc_reload":"ok"' "$demo/registry/audit.log" || fail "forced-command did not reload BackupPC: $(cat "$demo/registry/audit.log")"
as_backuppc "$bin/BackupPC_serverMesg" status hosts | grep -q '"localhost"' || fail "the daemon does not list localhost"
echo "forced-command told the running BackupPC to reload: it now lists localhost"

step "6/9 What the server and the workstation wrote" "instant"
echo "--- /etc/backuppc/hosts (the copy), without comments:"
grep -v '^#' "$demo/etc-backuppc/hosts" | grep .
echo "--- /etc/backuppc/pc/localhost.pl:"
cat "$demo/etc-backuppc/localhost.pl"
echo "--- ~backuppc/.ssh/known_hosts (the workstation's pinned host key):"
cat "$top/.ssh/known_hosts"
echo "--- ~backuppc/.ssh/backuppc-enroll/ (the per-host key pair):"
ls -l "$top/.ssh/backuppc-enroll"
echo "--- the workstation's authorized_keys for $backup_user:"
cat "$demo/$backup_user/.ssh/authorized_keys"
echo "--- its sudoers drop-in:"
cat "/etc/sudoers.d/backuppc-enroll-$backup_user"

step "7/9 BackupPC_dump -f: BackupPC runs a full backup of localhost through rsyncsend, then lists it" "about 10 seconds"
logged as_backuppc "$bin/BackupPC_dump" -f -v localhost
# The backups file: num, type, start, end, nFiles, size, …, xferErrs (11th).
IFS=$'\t' read -r num kind _ _ nfiles size _ _ _ _ xfer_errs _ < <(tail -n 1 "$top/pc/localhost/backups")
echo "backup #$num: $kind, $nfiles files, $size bytes, $xfer_errs transfer errors"
[ "$kind" = full ] && [ "$xfer_errs" = 0 ] || fail "the full backup did not succeed (see $log)"
echo "--- BackupPC_ls -R -h localhost -n $num -s $share /"
as_backuppc "$bin/BackupPC_ls" -R -h localhost -n "$num" -s "$share" / | sed '/^$/d'
echo "--- root-only.txt, read back from BackupPC's pool (BackupPC_tarCreate | tar -xO):"
as_backuppc "$bin/BackupPC_tarCreate" -h localhost -n "$num" -s "$share" /root-only.txt | tar -xOf -

step "8/9 The user deletes a file; BackupPC_restore puts it back through rsyncsend" "a few seconds"
rm "$share/Documents/report 2026.txt"
echo "deleted: $share/Documents/report 2026.txt"
req=$top/pc/localhost/restoreReq.demo
cat > "$req" <<PERL
%RestoreReq = (
  'fileList' => ['/Documents/report 2026.txt'],
  'hostDest' => 'localhost',
  'hostSrc' => 'localhost',
  'num' => '$num',
  'pathHdrDest' => '/Documents',
  'pathHdrSrc' => '/Documents',
  'reqTime' => $(date +%s),
  'shareDest' => '$share',
  'shareSrc' => '$share',
  'user' => '$logon'
);
PERL
chown backuppc:backuppc "$req"
logged as_backuppc "$bin/BackupPC_restore" -v localhost localhost restoreReq.demo
[ "$(cat "$share/Documents/report 2026.txt" 2>/dev/null)" = "quarterly report" ] || fail "the file was not restored (see $log)"
echo "restored: $share/Documents/report 2026.txt: $(cat "$share/Documents/report 2026.txt")"
echo "BackupPC's restore log: $(tail -n 1 "$top/pc/localhost/restores" | cut -f 1,4 --output-delimiter=' ')"

step "9/9 The per-host key can do nothing else; the register key neither" "a second"
ssh_cmd=$(perl -e 'our %Conf; do $ARGV[0] or die; print $Conf{RsyncSshArgs}[1]' "$demo/etc-backuppc/localhost.pl")
ssh_cmd=${ssh_cmd//\$sshPath//usr/bin/ssh}
for cmd in sh 'cat /etc/shadow'; do
    echo "\$ ssh -i ~backuppc/.ssh/backuppc-enroll/localhost.key $backup_user@127.0.0.1 '$cmd'"
    # shellcheck disable=SC2086 # the ssh command line, as BackupPC splits it
    if as_backuppc $ssh_cmd 127.0.0.1 "$cmd" < /dev/null > "$demo/refused.out" 2>&1; then
        fail "the per-host key ran '$cmd': $(cat "$demo/refused.out")"
    fi
    sed 's/^/  /' "$demo/refused.out"
done
echo "\$ ssh -i register-key backuppc@127.0.0.1 sh"
if ssh -i "$demo/etc/register-key" -p "$port" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$demo/etc/server_host_keys" -o StrictHostKeyChecking=yes backuppc@127.0.0.1 sh \
    < /dev/null > "$demo/refused.out" 2>&1; then
    fail "the register key ran a shell: $(cat "$demo/refused.out")"
fi
sed 's/^/  /' "$demo/refused.out"

# Stopped, and nothing is left in the private namespace.
ns_id=$(readlink "/proc/$ns_pid/ns/mnt")
stop_pid "$daemon_pid"
stop_pid "$sshd_pid"
stop_pid "$ns_pid"
sleep 0.5
left=$(for p in /proc/[0-9]*; do [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns_id" ] && echo "${p#/proc/}"; done || true)
[ -z "$left" ] || fail "processes still run in the demo's namespace: $(ps -o pid,args -p "$(echo $left | tr ' ' ,)")"
snapshot > "$demo/machine-backuppc.after"
if ! cmp -s "$demo/machine-backuppc.before" "$demo/machine-backuppc.after"; then
    diff "$demo/machine-backuppc.before" "$demo/machine-backuppc.after" >&2 || true
    fail "the machine's own /etc/backuppc or ~backuppc/.ssh changed"
fi
say "Done in $(($(date +%s) - started)) s. The machine's own /etc/backuppc and ~backuppc/.ssh are as they were."
echo "The user customises backups at: $(grep -o 'https://[^"]*' "$demo/state/client-state.json")"

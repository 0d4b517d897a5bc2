#!/usr/bin/env bash
# A local demo of the whole product, as root on Debian 12: a private sshd on
# loopback plays the backup server (with a temporary BackupPC config
# folder), this machine enrolls itself with `enroll`, and a real rsync
# backup runs through `rsyncsend`, the way BackupPC pulls it. Everything it
# creates is removed at the end (pass --keep to look at it afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1
source scripts/setup.sh
cargo build --locked --release --bins

demo=/var/lib/backuppc-enroll-demo
server_user=bpe-demo-srv
backup_user=bpe-demo-bkp
port=""
sshd_pid=""

if [ -t 1 ]; then
    say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

cleanup() {
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
    if [ "$keep" = 0 ]; then
        [ -x "$demo/bin/enroll" ] && "$demo/bin/enroll" --config "$demo/etc/client.toml" --uninstall --remove-user >/dev/null 2>&1 || true
        id "$server_user" >/dev/null 2>&1 && userdel --remove "$server_user" 2>/dev/null || true
        id "$backup_user" >/dev/null 2>&1 && userdel --remove "$backup_user" 2>/dev/null || true
        rm -f "/etc/sudoers.d/backuppc-enroll-$backup_user"
        rm -rf "$demo"
    else
        echo "kept $demo (remove with: $0 and no --keep, or rm -rf $demo; userdel -r $server_user $backup_user)"
    fi
}
trap cleanup EXIT

# Leftovers of an interrupted run.
[ -n "$(ls -A "$demo" 2>/dev/null)" ] && { keep=0; cleanup; }
id "$server_user" >/dev/null 2>&1 && userdel --remove "$server_user"
id "$backup_user" >/dev/null 2>&1 && userdel --remove "$backup_user"

say "1. The backup server: account $server_user, BackupPC config folder, register key"
install -d -m 755 "$demo" "$demo/bin" "$demo/etc" "$demo/state" "$demo/sshd"
install -m 755 target/release/enroll target/release/forced-command target/release/rsyncsend "$demo/bin/"
useradd --system --create-home --home-dir "$demo/server-home" --shell /bin/sh --password '*' --user-group "$server_user"
install -d -m 755 -o "$server_user" -g "$server_user" "$demo/backuppc" "$demo/registry" "$demo/backups"
cat > "$demo/backuppc/hosts" <<'HOSTS'
host        dhcp    user      moreUsers     # <--- do not edit this line
#farside    0       craig     jill,jeff     # <--- example static IP host entry
HOSTS
chown "$server_user:" "$demo/backuppc/hosts"

# What the workstation's user keeps: a few files, one only root can read.
install -d -m 755 "$demo/workstation/Documents"
echo "quarterly report" > "$demo/workstation/Documents/report 2026.txt"
echo "notes" > "$demo/workstation/Documents/notes.md"
echo "root-only secret" > "$demo/workstation/root-only.txt"
chmod 600 "$demo/workstation/root-only.txt"
ln -s Documents/notes.md "$demo/workstation/notes-link"

logon="${SUDO_USER:-root}"
cat > "$demo/etc/server.toml" <<TOML
backuppc_conf_dir = "$demo/backuppc"
backuppc_user = "$server_user"
url = "https://backup.example.org/backuppc/index.cgi?host={host}"
logon_check = "nss"
registry = "$demo/registry/registry.json"
audit_log = "$demo/registry/audit.log"
reload_command = []
[shares]
linux = ["$demo/workstation"]
mac = ["/Users"]
TOML
ssh-keygen -q -t ed25519 -N '' -C "register key" -f "$demo/etc/register-key"
install -d -m 700 -o "$server_user" -g "$server_user" "$demo/server-home/.ssh"
echo "restrict,command=\"$demo/bin/forced-command --config $demo/etc/server.toml\" $(cat "$demo/etc/register-key.pub")" \
    > "$demo/server-home/.ssh/authorized_keys"
chown "$server_user:" "$demo/server-home/.ssh/authorized_keys"
chmod 600 "$demo/server-home/.ssh/authorized_keys"
echo "register key installed for $server_user, bound to forced-command"

say "2. A private sshd on loopback plays the server (and this workstation's sshd)"
ssh-keygen -q -t ed25519 -N '' -C demo-sshd -f "$demo/sshd/host_key"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || shuf -i 20000-60000 -n 1)
cat > "$demo/sshd/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $demo/sshd/host_key
PidFile none
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $server_user $backup_user
AllowTcpForwarding no
X11Forwarding no
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$demo/sshd/sshd_config" 2>"$demo/sshd/log" &
sshd_pid=$!
# Ready when sshd says so (a connect could reach something else).
for _ in $(seq 100); do grep -q "Server listening on 127.0.0.1 port $port" "$demo/sshd/log" && break; sleep 0.1; done
echo "sshd pid $sshd_pid on 127.0.0.1:$port"

say "3. The workstation enrolls itself: enroll --logon $logon --yes"
echo "[127.0.0.1]:$port $(cat "$demo/sshd/host_key.pub")" > "$demo/etc/server_host_keys"
cat > "$demo/etc/client.toml" <<TOML
server = "127.0.0.1"
port = $port
server_user = "$server_user"
server_host_keys = "$demo/etc/server_host_keys"
register_key = "$demo/etc/register-key"
backup_user = "$backup_user"
backup_home = "$demo/$backup_user"
rsyncsend = "$demo/bin/rsyncsend"
state_file = "$demo/state/client-state.json"
hostname = "localhost"
sshd_port = $port
host_keys = ["$demo/sshd/host_key.pub"]
TOML
"$demo/bin/enroll" --config "$demo/etc/client.toml" --logon "$logon" --yes

say "4. What the server wrote"
echo "--- hosts:"; grep -v '^#' "$demo/backuppc/hosts"
echo "--- pc/localhost.pl:"; cat "$demo/backuppc/pc/localhost.pl"
echo "--- known_hosts:"; cat "$demo/server-home/.ssh/known_hosts"
echo "--- workstation's authorized_keys for $backup_user:"; cat "$demo/$backup_user/.ssh/authorized_keys"
echo "--- sudoers drop-in:"; cat "/etc/sudoers.d/backuppc-enroll-$backup_user"

say "5. A real backup through rsyncsend, as BackupPC pulls it (per-host key, pinned host key, --protect-args)"
ssh_cmd=$(perl -e 'our %Conf; do $ARGV[0] or die; print $Conf{RsyncSshArgs}[1]' "$demo/backuppc/pc/localhost.pl")
ssh_cmd=${ssh_cmd//\$sshPath//usr/bin/ssh}
runuser -u "$server_user" -- rsync -aH --numeric-ids --protect-args --stats --rsync-path=/usr/bin/rsync \
    -e "$ssh_cmd" "127.0.0.1:$demo/workstation/" "$demo/backups/localhost/" | sed -n '/Number of files:/p;/Total transferred file size/p'
echo "--- backed up:"; (cd "$demo/backups/localhost" && find . -mindepth 1 | sort)
echo "--- root-only file, read through sudo by rsyncsend: $(cat "$demo/backups/localhost/root-only.txt")"
echo "--- and the key can do nothing else:"
runuser -u "$server_user" -- $ssh_cmd 127.0.0.1 'cat /etc/shadow' </dev/null 2>&1 | head -1 || true

say "Done. The user customises backups at: $(grep -o 'https://[^"]*' "$demo/state/client-state.json")"

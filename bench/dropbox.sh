#!/usr/bin/env bash
# The drop box against OpenSSH's own sftp-server, as root on Debian 12:
# one account made by `dropbox setup`, one private sshd on loopback, two
# keys of that account (one bound to dropbox, one to
# /usr/lib/openssh/sftp-server writing into a folder beside the box, on
# the same disk), and `sftp -b put` of one BENCH_SIZE (default 1 GiB)
# .tar.gz through each, alternated (AB, BA, …) for BENCH_ROUNDS (default
# 3) rounds. dropbox's time includes its verification (gzip and tar read
# to the end) and flushes; both servers run under /usr/bin/time for their
# peak memory. A third side is sftp-server followed by an fsync of the
# uploaded file (`sync FILE`): the time until the upload is on disk, which
# dropbox guarantees before it answers the close and sftp-server does not.
# Prints min / median / max of each and the ratios of medians.
# BENCH_ON=tmpfs puts the whole run (sources, box, sftp-server's folder)
# on a tmpfs, where no flush waits for a disk: what is left is the cost
# of dropbox itself (its protocol work and its verification).
# Results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${BENCH_SIZE:-1073741824}
rounds=${BENCH_ROUNDS:-3}
cargo build --release --locked --bin dropbox >&2
w=$(mktemp -d /var/tmp/dropbox-bench.XXXXXX)
if [ "${BENCH_ON:-disk}" = tmpfs ]; then
    mount -t tmpfs -o "size=$((size * 3 / 1048576 + 512))m,mode=755" bench-dropbox "$w"
fi
chmod 755 "$w"
user=dbxbench$$
sshd_pid=
cleanup() {
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
    "$w/dropbox" --config "$w/box.toml" uninstall --remove-archives >/dev/null 2>&1 || true
    userdel "$user" >/dev/null 2>&1 || true
    if [ "${BENCH_ON:-disk}" = tmpfs ]; then umount "$w"; fi
    rm -rf "$w"
}
trap cleanup EXIT
install -m 755 target/release/dropbox "$w/dropbox"
cat >"$w/box.toml" <<EOF
user = "$user"
folder = "$w/box"
home = "$w/home"
dropbox = "$w/dropbox"
max_file_size = "4G"
keep_free = 0
EOF
ssh-keygen -q -t ed25519 -N '' -f "$w/key_dropbox"
ssh-keygen -q -t ed25519 -N '' -f "$w/key_plain"
ssh-keygen -q -t ed25519 -N '' -f "$w/host_key"
"$w/dropbox" --config "$w/box.toml" setup --key "$w/key_dropbox.pub" >/dev/null
install -d -o "$user" -m 750 "$w/plain"
# Both lines through /usr/bin/time, so both pay the same wrapper.
printf 'restrict,command="/usr/bin/time -o %s -f %%M %s --config %s" %s\nrestrict,command="/usr/bin/time -o %s -f %%M /usr/lib/openssh/sftp-server -d %s" %s\n' \
    "$w/rss" "$w/dropbox" "$w/box.toml" "$(cut -d' ' -f1,2 "$w/key_dropbox.pub")" \
    "$w/rss" "$w/plain" "$(cut -d' ' -f1,2 "$w/key_plain.pub")" >"$w/home/.ssh/authorized_keys"
touch "$w/rss" && chown "$user" "$w/rss"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$w/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $w/host_key
PidFile none
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $user
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$w/sshd_config" 2>"$w/sshd.log" &
sshd_pid=$!
for _ in $(seq 100); do grep -q "Server listening" "$w/sshd.log" && break; sleep 0.1; done
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$w/host_key.pub")" >"$w/known_hosts"
name=jpro_instance-001-2026-03-01_02h-30-00.tar.gz
mkdir -p "$w/src" "$w/local"
head -c "$size" /dev/urandom >"$w/src/data.bin"
tar -C "$w/src" -cf - data.bin | gzip -1 >"$w/local/$name"
rm -rf "$w/src"
echo "put $w/local/$name" >"$w/batch"
run() { # side (dropbox, plain, durable) → seconds, peak KiB
    rm -f "$w/box/$name" "$w/box/.receipts/$name.json" "$w/plain/$name"
    sync
    local t0 t1 key=$1
    [ "$1" = durable ] && key=plain
    t0=$(date +%s.%N)
    sftp -q -F /dev/null -i "$w/key_$key" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile="$w/known_hosts" -P "$port" -b "$w/batch" "$user@127.0.0.1" >/dev/null
    [ "$1" = durable ] && sync "$w/plain/$name"
    t1=$(date +%s.%N)
    sleep 0.2
    echo "$(echo "$t1 - $t0" | bc) $(tail -1 "$w/rss")"
}
[ "$(run dropbox | cut -d' ' -f1)" ] && [ -s "$w/box/.receipts/$name.json" ] || { echo "dropbox did not accept the archive" >&2; exit 1; }
declare -a A B C MA MB
for i in $(seq "$rounds"); do
    case $((i % 3)) in
        1) order="plain durable dropbox" ;;
        2) order="dropbox plain durable" ;;
        0) order="durable dropbox plain" ;;
    esac
    for side in $order; do
        read -r t m < <(run "$side")
        case $side in
            plain) A+=("$t"); MA+=("$m") ;;
            durable) C+=("$t") ;;
            dropbox) B+=("$t"); MB+=("$m") ;;
        esac
    done
done
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%.2f / %.2f / %.2f", v[1], v[int((NR+1)/2)], v[NR]}'; }
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "archive: $(stat -c %s "$w/local/$name") bytes, $rounds rounds, on ${BENCH_ON:-disk}"
echo "sftp-server s (min/med/max): $(stats "${A[@]}")   peak RSS KiB: $(stats "${MA[@]}")"
echo "sftp-server + fsync s:       $(stats "${C[@]}")"
echo "dropbox     s (min/med/max): $(stats "${B[@]}")   peak RSS KiB: $(stats "${MB[@]}")"
echo "ratio of medians dropbox/sftp-server: $(echo "scale=3; $(med "${B[@]}") / $(med "${A[@]}")" | bc)"
echo "ratio of medians dropbox/(sftp-server + fsync): $(echo "scale=3; $(med "${B[@]}") / $(med "${C[@]}")" | bc)"

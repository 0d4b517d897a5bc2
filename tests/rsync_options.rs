//! The options a real rsync client sends, through a real sshd and
//! `rsyncsend`: the server account pulls (a backup) and pushes (a restore)
//! with the per-host key and the pinned host key, as BackupPC would, each
//! without and with `-s` (the options then come on stdin). Before these
//! forms were on the allow-list each of these transfers was refused, so a
//! refusal here fails the test. Also: a workstation whose sshd has only
//! an ECDSA host key enrolls and is backed up.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const PROTECT: [&[&str]; 2] = [&[], &["--protect-args"]];

fn ok(w: &World, out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nsshd: {}",
        text(&out.stderr),
        fs::read_to_string(&w.sshd.log).unwrap_or_default()
    );
}

fn refused(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} must be refused");
    assert!(text(&out.stderr).contains("rsyncsend: refused"), "{what}: {}", text(&out.stderr));
}

/// Push `src` into `dest` on the workstation as the server account would
/// for a restore: rsync over the per-host config's ssh command.
fn push(w: &World, src: &Path, dest: &Path, extra: &[&str]) -> Output {
    let ssh = w.ssh_command("localhost");
    w.server
        .command("/usr/bin/rsync")
        .args(["-a", "--numeric-ids", "--rsync-path=/usr/bin/rsync", "-e", &ssh])
        .args(extra)
        .arg(format!("{}/", src.display()))
        .arg(format!("127.0.0.1:{}/", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn backups_with_the_options_rsync_sends() {
    let w = World::new(Options::default());
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let src = format!("{}/", w.data.display());
    let sets: &[&[&str]] = &[
        &["--inplace"],
        &["--inplace", "--sparse"],
        &["--append"],
        &["--append-verify"],
        &["-B", "2048"],
        &["--block-size=4096"],
        &["--no-specials"],
        &["--no-devices"],
        &["--no-D"],
        &["--partial-dir=.rsync-partial", "--delay-updates"],
        &["-zz"],
        &["--compress-choice=zlib"],
        &["--max-alloc=2G"],
    ];
    for (i, set) in sets.iter().enumerate() {
        for protect in PROTECT {
            let what = format!("backup with {set:?} {protect:?}");
            let dest = w.dir.join(&format!("backup-{i}-{}", protect.len()));
            let extra: Vec<&str> = set.iter().chain(protect.iter()).copied().collect();
            let out = w.pull("localhost", &src, &dest, &extra);
            ok(&w, &out, &what);
            assert_same_tree(&w.data, &dest);
        }
    }

    // --append reaches both sides: the sender sends only what is past the
    // receiver's length (a wrong prefix stays); --append-verify (sent as
    // `--append --append`) checks the whole file and sends it again.
    for protect in PROTECT {
        for (mode, want) in [("--append", "XXXin\n"), ("--append-verify", "plain\n")] {
            let dest = w.dir.join(&format!("append{mode}-{}", protect.len()));
            fs::create_dir_all(&dest).unwrap();
            fs::write(dest.join("plain.txt"), "XXX").unwrap();
            w.server.chown(&dest.join("plain.txt"));
            let file = format!("{}/plain.txt", w.data.display());
            let extra: Vec<&str> = [mode].iter().chain(protect.iter()).copied().collect();
            let out = w.pull("localhost", &file, &dest, &extra);
            ok(&w, &out, &format!("{mode} {protect:?}"));
            assert_eq!(fs::read_to_string(dest.join("plain.txt")).unwrap(), want, "{mode} {protect:?}");
        }
    }

    // Specials: --no-specials leaves a FIFO out, --no-devices (sent as
    // --specials) brings it. Last: a FIFO in the share would block the
    // tree comparisons above.
    let specials = w.data.join("specials");
    fs::create_dir_all(&specials).unwrap();
    fs::write(specials.join("file"), "x").unwrap();
    run_ok(Command::new("mkfifo").arg(specials.join("fifo")));
    let src = format!("{}/", specials.display());
    for protect in PROTECT {
        for (mode, fifo) in [("--no-specials", false), ("--no-devices", true)] {
            let dest = w.dir.join(&format!("specials{mode}-{}", protect.len()));
            let extra: Vec<&str> = [mode].iter().chain(protect.iter()).copied().collect();
            let out = w.pull("localhost", &src, &dest, &extra);
            ok(&w, &out, &format!("{mode} {protect:?}"));
            assert!(dest.join("file").exists(), "{mode} {protect:?}");
            assert_eq!(fs::symlink_metadata(dest.join("fifo")).is_ok(), fifo, "{mode} {protect:?}: FIFO copied?");
        }
    }
}

#[test]
fn restores_with_the_options_rsync_sends() {
    let w = World::new(Options { restore: true, ..Options::default() });
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    let src = w.dir.mkdir("to-restore");
    fs::write(src.join("a.txt"), "restored a\n").unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.bin"), vec![3u8; 200_000]).unwrap();
    run_ok(Command::new("chown").arg("-R").arg(&w.server.name).arg(&src));
    let sets: &[&[&str]] = &[
        // Sent as the two words `--partial-dir DIR` (escaped without -s).
        &["--partial-dir=.rsync partial", "--delay-updates"],
        &["--partial-dir=.rsync-partial"],
        &["--inplace"],
        &["--append-verify"],
        &["-B", "1024"],
        &["--no-specials"],
        &["--fsync"],
    ];
    for (i, set) in sets.iter().enumerate() {
        for protect in PROTECT {
            let what = format!("restore with {set:?} {protect:?}");
            let dest = w.data.join(format!("restored-{i}-{}", protect.len()));
            fs::create_dir_all(&dest).unwrap();
            let extra: Vec<&str> = set.iter().chain(protect.iter()).copied().collect();
            let out = push(&w, &src, &dest, &extra);
            ok(&w, &out, &what);
            assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), "restored a\n", "{what}");
            assert_eq!(fs::read(dest.join("sub/b.bin")).unwrap(), vec![3u8; 200_000], "{what}");
            let names: Vec<_> = fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names.len(), 2, "{what}: no partial folder left: {names:?}");
        }
    }

    // A partial folder is a relative name: anything that would write
    // elsewhere is refused, whichever form it arrives in.
    let dest = w.data.join("restored-refused");
    fs::create_dir_all(&dest).unwrap();
    for bad in ["--partial-dir=/tmp", "--partial-dir=..", "--partial-dir=../elsewhere", "--partial-dir=a/b"] {
        for protect in PROTECT {
            let extra: Vec<&str> = [bad].iter().chain(protect.iter()).copied().collect();
            let out = push(&w, &src, &dest, &extra);
            refused(&out, &format!("{bad} {protect:?}"));
        }
    }
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "nothing restored by a refused command");
}

#[test]
fn enrollment_with_only_an_ecdsa_host_key() {
    let keys = TestDir::new("ecdsa");
    let key = keys.join("ssh_host_ecdsa_key");
    let host_pub = keygen_type(&key, "ecdsa", "ecdsa-only");
    assert!(host_pub.starts_with("ecdsa-sha2-nistp256 "), "{host_pub}");
    let w = World::new(Options { sshd_host_key: Some(key), ..Options::default() });
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);

    // The server pinned the workstation's ECDSA key, bare, under the alias.
    let kh = fs::read_to_string(w.server.home.join(".ssh/known_hosts")).unwrap();
    let bare: Vec<&str> = host_pub.split(' ').take(2).collect();
    assert_eq!(kh, format!("localhost {}\n", bare.join(" ")));

    // And a backup connects with StrictHostKeyChecking against that pin.
    let dest = w.dir.join("backup");
    let out = w.pull("localhost", &format!("{}/", w.data.display()), &dest, &["--protect-args"]);
    ok(&w, &out, "backup of an ECDSA-only workstation");
    assert_same_tree(&w.data, &dest);
}

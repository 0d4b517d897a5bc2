//! Root rsync confined to the shares, attacked through the real sshd, the
//! real per-host key, real sudo and a real rsync client: symlinks the
//! backup account cannot see, a folder swapped for a symlink while pulls
//! run, filter rules naming files outside, a shell as the backup account
//! calling sudo itself, restores into new folders. Each case checks that
//! no byte from outside the shares arrived and nothing outside changed.

mod common;

use common::world::{Options, World};
use common::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file outside the shares that only root can read, with a token that
/// must never show up on the backup server.
const TOKEN: &str = "OUTSIDE-SECRET-7f3a9c";

fn outside(w: &World) -> PathBuf {
    let dir = w.dir.mkdir("outside");
    fs::write(dir.join("secret.txt"), format!("{TOKEN}\n")).unwrap();
    chmod(&dir.join("secret.txt"), 0o600);
    dir
}

/// Every file under `root` (and the rsync client's messages) that holds
/// the token.
fn leaks(root: &Path, out: &Output) -> Vec<String> {
    let mut found = Vec::new();
    // Regular files only: a symlink that arrived as a symlink (rsync -l)
    // carries no bytes of its target.
    for (path, bytes, _) in snapshot(&[root]) {
        let regular = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if regular && String::from_utf8_lossy(&bytes).contains(TOKEN) {
            found.push(path.display().to_string());
        }
    }
    for (name, s) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if text(s).contains(TOKEN) {
            found.push(format!("rsync's {name}"));
        }
    }
    found
}

fn enrolled(opts: Options) -> World {
    let w = World::new(opts);
    w.enroll_ok(&["--logon", "cmartin", "--yes"]);
    w
}

/// Set the client's shares (the key overrides the enrollment's).
fn set_shares(w: &World, shares: &[&Path]) {
    let list: Vec<String> = shares.iter().map(|s| format!("{:?}", s)).collect();
    let mut cfg = fs::read_to_string(&w.client_toml).unwrap();
    cfg.push_str(&format!("shares = [{}]\n", list.join(", ")));
    fs::write(&w.client_toml, cfg).unwrap();
}

/// Push `src/` to `dest` as the server would for a restore.
fn push(w: &World, src: &Path, dest: &str) -> Output {
    let ssh = w.ssh_command("localhost");
    w.server
        .command("/usr/bin/rsync")
        .args(["-a", "--numeric-ids", "--rsync-path=/usr/bin/rsync", "-e", &ssh])
        .arg(format!("{}/", src.display()))
        .arg(format!("127.0.0.1:{dest}"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn status_names_the_confinement() {
    let w = enrolled(Options::default());
    let out = w.ssh_as_server("localhost", "status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = report.lines().find(|l| l.starts_with("confinement: ")).unwrap_or_else(|| panic!("{report}"));
    match backuppc_enroll::sys::landlock_abi() {
        Ok(v) => assert_eq!(line, format!("confinement: landlock (ABI {v})")),
        Err(_) => assert!(line.starts_with("confinement: none ("), "{line}"),
    }
}

/// A user's `~/x -> /` in a 0700 home the backup account cannot enter:
/// the forced command cannot resolve it, the root helper can and refuses.
/// The same home's own files are backed up (root reads them).
#[test]
fn a_symlink_in_a_private_home_does_not_open_the_disk() {
    let w = enrolled(Options::default());
    let out_dir = outside(&w);
    let name = unique("bpeh");
    let home = w.data.join(&name);
    let user = SystemUser::create(&name, &home);
    chmod(&home, 0o700);
    symlink("/", home.join("x")).unwrap();
    fs::create_dir(home.join("docs")).unwrap();
    fs::write(home.join("docs/mine.txt"), "mine\n").unwrap();
    user.chown(&home.join("docs"));
    let data = w.data.display();
    let outside_rel = out_dir.strip_prefix("/").unwrap().display().to_string();
    for (i, src) in [
        format!("{data}/./{name}/x/"),
        format!("{data}/./{name}/x/{outside_rel}/"),
        format!("{data}/{name}/x/{outside_rel}/"),
        format!("{data}/{name}/x/etc/shadow"),
    ]
    .iter()
    .enumerate()
    {
        let dest = w.dir.join(&format!("pull-{i}"));
        let out = w.pull("localhost", src, &dest, &["-R"]);
        assert!(!out.status.success(), "{src} was served: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("rsyncsend: refused"), "{src}: {}", text(&out.stderr));
        assert_eq!(leaks(&dest, &out), Vec::<String>::new(), "{src}");
        assert!(!snapshot(&[&dest]).iter().any(|(p, _, _)| p.ends_with("shadow")), "{src}: /etc/shadow arrived");
    }
    let dest = w.dir.join("pull-docs");
    let out = w.pull("localhost", &format!("{data}/./{name}/docs/"), &dest, &["-R"]);
    assert!(out.status.success(), "the private home's own files: {}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dest.join(&name).join("docs/mine.txt")).unwrap(), "mine\n");
}

/// A folder inside the share swapped for a symlink to outside and back,
/// in a tight loop, while the server pulls it again and again, with and
/// without rsync's `/./` marker: nothing from outside ever arrives.
#[test]
fn a_swap_loop_racing_the_check_never_leaks() {
    let w = enrolled(Options::default());
    let out_dir = outside(&w);
    let race = w.data.join("race");
    let sub = race.join("sub");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("inside.txt"), "inside\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sub, out_dir) = (stop.clone(), sub.clone(), out_dir.clone());
        let real = race.join("sub.real");
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Mostly the real folder (so checks pass and rsync
                // starts), a symlink to outside for a moment.
                std::thread::sleep(std::time::Duration::from_micros(300));
                let swapped = fs::rename(&sub, &real).and_then(|()| symlink(&out_dir, &sub));
                std::thread::sleep(std::time::Duration::from_micros(100));
                let back = fs::remove_file(&sub).and_then(|()| fs::rename(&real, &sub));
                if swapped.is_err() || back.is_err() {
                    break; // the test folder is going away
                }
                swaps += 1;
            }
            swaps
        })
    };
    let data = w.data.display();
    let mut served = 0;
    for i in 0..40 {
        let (src, extra): (String, &[&str]) = match i % 3 {
            0 => (format!("{data}/race/sub/"), &[]),
            1 => (format!("{data}/./race/sub/"), &["-R"]),
            _ => (format!("{data}/race/sub"), &[]),
        };
        let dest = w.dir.join(&format!("race-{i}"));
        let out = w.pull("localhost", &src, &dest, extra);
        served += usize::from(out.status.success());
        assert_eq!(leaks(&dest, &out), Vec::<String>::new(), "pull {i} of {src}");
        fs::remove_dir_all(&dest).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swap loop ran ({swaps} swaps)");
    assert!(served > 0, "some pulls ran while the swaps went on ({served} of 40)");
    eprintln!("{served} of 40 pulls served during {swaps} swaps");
}

/// Filter rules travel inside the rsync protocol, where the forced command
/// cannot see them. A per-folder merge file planted in the share as a
/// symlink to a file outside would make root rsync read that file (rsync
/// run locally as root shows it does); through the key it is not read.
#[test]
fn filter_rules_cannot_read_outside_the_shares() {
    let w = enrolled(Options::default());
    let out_dir = outside(&w);
    fs::write(out_dir.join("rules"), format!("- excluded-if-read.txt\n- {TOKEN}\n")).unwrap();
    chmod(&out_dir.join("rules"), 0o600);
    let merge = w.data.join("merge");
    fs::create_dir(&merge).unwrap();
    fs::write(merge.join("excluded-if-read.txt"), "arrives when the outside rules are not read\n").unwrap();
    symlink(out_dir.join("rules"), merge.join("rules")).unwrap();
    // The control: root rsync without the key reads the outside file.
    let control = w.dir.join("control");
    run_ok(
        std::process::Command::new("/usr/bin/rsync")
            .args(["-a", "--filter=dir-merge rules"])
            .arg(format!("{}/", merge.display()))
            .arg(&control),
    );
    assert!(!control.join("excluded-if-read.txt").exists(), "root rsync, unconfined, follows the planted merge file");
    let before = snapshot(&[&out_dir]);
    for (i, rule) in
        ["dir-merge rules".to_string(), format!("dir-merge {}", out_dir.join("rules").display())].iter().enumerate()
    {
        let dest = w.dir.join(&format!("merge-{i}"));
        let out = w.pull("localhost", &format!("{}/", merge.display()), &dest, &[&format!("--filter={rule}")]);
        assert!(
            dest.join("excluded-if-read.txt").exists(),
            "{rule}: the outside rules were applied, so root rsync read them: {}",
            text(&out.stderr)
        );
        assert_eq!(leaks(&dest, &out), Vec::<String>::new(), "{rule}");
    }
    assert_eq!(snapshot(&[&out_dir]), before, "nothing outside changed");
}

/// A share the backup account cannot open itself (like /root) is backed
/// up: the folder is opened and pinned by the root helper.
#[test]
fn a_root_only_share_is_backed_up() {
    let w = enrolled(Options::default());
    let root_only = w.dir.mkdir("rootonly");
    fs::create_dir(root_only.join("inner")).unwrap();
    fs::write(root_only.join("inner/file.txt"), "root only\n").unwrap();
    chmod(&root_only, 0o700);
    set_shares(&w, &[&w.data, &root_only]);
    for (src, extra) in
        [(format!("{}/", root_only.display()), &[][..]), (format!("{}/./inner/", root_only.display()), &["-R"][..])]
    {
        let dest = w.dir.join("rootonly-pull");
        let out = w.pull("localhost", &src, &dest, extra);
        assert!(out.status.success(), "{src}: {}", text(&out.stderr));
        assert_eq!(fs::read_to_string(dest.join("inner/file.txt")).unwrap(), "root only\n", "{src}");
        fs::remove_dir_all(&dest).unwrap();
    }
}

/// A shell as the backup account: sudo lets it run nothing but the root
/// helper with the configured config, and the helper checks the words.
#[test]
fn a_shell_as_the_backup_account_gets_nothing_outside() {
    let w = enrolled(Options::default());
    let out_dir = outside(&w);
    let helper = w.bins.rsyncsend.display().to_string();
    let cfg = w.client_toml.display().to_string();
    let evil = w.dir.join("evil.toml");
    fs::write(&evil, "shares = [\"/\"]\nrestore = true\n").unwrap();
    let evil = evil.display().to_string();
    let sender = ["/usr/bin/rsync", "--server", "--sender", "-logDtprce.iLsfxC", "--numeric-ids", "--", "."];
    let with = |head: &[&str], path: &str| -> Vec<String> {
        head.iter().chain(sender.iter()).map(|s| s.to_string()).chain([path.to_string()]).collect()
    };
    let helper_head = ["sudo", "-n", &helper, "--config", &cfg, "exec-rsync", "--"];
    let secret = out_dir.join("secret.txt").display().to_string();
    let rows: Vec<(Vec<String>, &str)> = vec![
        (with(&helper_head, "/etc/"), "the helper, a path outside the shares"),
        (with(&helper_head, &secret), "the helper, the secret file"),
        (with(&helper_head, &format!("{}/./../outside/", w.data.display())), "the helper, dot-dot"),
        (
            with(&["sudo", "-n", &helper, "--config", &evil, "exec-rsync", "--"], "/etc/"),
            "the helper with its own config",
        ),
        (
            with(&["sudo", "-n", &helper, "--config", &format!("{cfg} exec-rsync -- x"), "exec-rsync", "--"], "/etc/"),
            "the config path split differently",
        ),
        (
            ["sudo", "-n", &helper, "--config", &cfg, "exec-rsync", "--", "/bin/sh", "-c", "id"]
                .map(String::from)
                .to_vec(),
            "the helper running a shell",
        ),
        (with(&["sudo", "-n"], &secret).into_iter().filter(|w| w != "--").collect(), "rsync directly"),
        (["sudo", "-n", "/bin/cat", &secret].map(String::from).to_vec(), "anything else"),
    ];
    for (argv, why) in rows {
        let out = std::process::Command::new("runuser")
            .args(["-u", &w.backup_user, "--"])
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{why}: {argv:?} ran: {}", text(&out.stderr));
        assert!(!text(&out.stdout).contains(TOKEN) && !text(&out.stderr).contains(TOKEN), "{why}: the secret leaked");
    }
    // The helper itself, with the right config and a share, works for the
    // account (it is what the forced command runs).
    let out = std::process::Command::new("runuser")
        .args(["-u", &w.backup_user, "--"])
        .args(["sudo", "-n", &helper, "--config", &cfg, "exec-rsync", "--", "/usr/bin/rsync", "--version"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "only --server invocations: {}", text(&out.stdout));
    assert!(text(&out.stderr).starts_with("rsyncsend: refused: "), "{}", text(&out.stderr));
}

/// A restore into a folder that does not exist yet, inside a share: the
/// root helper creates it (root-owned, 0700) under root-only folders and
/// confines rsync to it. Outside the shares, under a folder others can
/// change, or through a symlink leading out: refused, nothing written.
#[test]
fn restore_into_a_new_folder_inside_a_share_only() {
    let w = enrolled(Options { restore: true, ..Options::default() });
    let out_dir = outside(&w);
    let src = w.dir.mkdir("to-restore");
    fs::write(src.join("back.txt"), "restored\n").unwrap();
    w.server.chown(&src);
    w.server.chown(&src.join("back.txt"));
    let open = w.data.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    symlink(&out_dir, w.data.join("to-outside")).unwrap();
    let before = snapshot(&[&out_dir]);
    let data_before = snapshot(&[&w.data]);

    let out = push(&w, &src, &format!("{}/restored/new/deeper/", w.data.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(w.data.join("restored/new/deeper/back.txt")).unwrap(), "restored\n");
    let created = fs::metadata(w.data.join("restored")).unwrap();
    assert_eq!((created.uid(), created.mode() & 0o777), (0, 0o700), "a created folder is root's, 0700");

    for (dest, why, says) in [
        (format!("{}/new/", out_dir.display()), "outside the shares", "outside the shares"),
        (format!("{}/new/", open.display()), "under a folder others can change", "create the destination first"),
        (format!("{}/to-outside/new/", w.data.display()), "through a symlink leading out", "outside the shares"),
        (format!("{}/to-outside/", w.data.display()), "into a symlink leading out", "outside the shares"),
    ] {
        let out = push(&w, &src, &dest);
        assert!(!out.status.success(), "{why}: restored");
        assert!(text(&out.stderr).contains(says), "{why}: {}", text(&out.stderr));
    }
    assert!(!open.join("new").exists(), "nothing created under the open folder");
    assert_eq!(snapshot(&[&out_dir]), before, "nothing outside the shares was written");
    let data_after: Vec<_> =
        snapshot(&[&w.data]).into_iter().filter(|(p, _, _)| !p.starts_with(w.data.join("restored"))).collect();
    assert_eq!(data_after, data_before, "nothing else in the share changed");
}

/// A server that enrolls itself: the state folder is shared with the
/// BackupPC account, which writes the registry there. Backups still work;
/// that account replacing the state with one of its own (shares `/`) or
/// with a symlink gets nothing outside the enrolled shares.
#[test]
fn a_state_folder_shared_with_the_backuppc_account_cannot_widen_the_shares() {
    let w = enrolled(Options::default());
    let secret = outside(&w);
    let state_dir = w.state_file.parent().unwrap().to_path_buf();
    w.server.chown(&state_dir);
    let dest = w.dir.join("shared-state-pull");
    let out = w.pull("localhost", &format!("{}/", w.data.display()), &dest, &[]);
    assert!(out.status.success(), "a shared state folder still serves backups: {}", text(&out.stderr));
    fs::remove_dir_all(&dest).unwrap();

    let genuine = fs::read(&w.state_file).unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    forged["shares"] = serde_json::json!(["/"]);
    let planted = state_dir.join("planted.json");
    fs::write(&planted, serde_json::to_vec(&forged).unwrap()).unwrap();
    w.server.chown(&planted);
    let decoy = w.dir.join("decoy-state.json");
    fs::write(&decoy, serde_json::to_vec(&forged).unwrap()).unwrap();
    let attempts: [&dyn Fn(); 2] = [&|| fs::rename(&planted, &w.state_file).unwrap(), &|| {
        fs::remove_file(&w.state_file).unwrap();
        std::os::unix::fs::symlink(&decoy, &w.state_file).unwrap();
    }];
    for (i, replace) in attempts.iter().enumerate() {
        replace();
        let out = w.pull("localhost", &format!("{}/", secret.display()), &dest, &[]);
        assert!(!out.status.success(), "attempt {i}: the forged state was trusted");
        assert!(leaks(&dest, &out).is_empty(), "attempt {i}: leaked");
        let _ = fs::remove_dir_all(&dest);
    }
}

//! The documentation generated at build time from the clap definitions:
//! man pages that render without warnings, completions that parse and
//! complete, `--help` with examples for every command and subcommand, and
//! `--version` with the git revision.

mod common;

use common::*;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn assets() -> PathBuf {
    Path::new(env!("OUT_DIR")).join("assets")
}

fn require_program(name: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(found.status.success(), "{name} is missing: run scripts/setup.sh (it installs it)");
}

/// The roff source of a page (pages are gzip'd, as Debian installs them).
fn roff_of(page: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(page).unwrap()).read_to_string(&mut text).unwrap();
    text
}

fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(assets().join("man")).unwrap().map(|e| e.unwrap().path()).collect();
    pages.sort();
    pages
}

/// The binary and subcommand words a page documents, from its synopsis
/// (`forced-command token create …`).
fn command_of(page: &Path) -> (PathBuf, Vec<String>) {
    let roff = roff_of(page);
    let synopsis = roff.lines().skip_while(|l| !l.starts_with(".SH SYNOPSIS")).nth(1).unwrap();
    let typed = synopsis.trim_start_matches("\\fB").split("\\fR").next().unwrap().replace("\\-", "-");
    let mut words = typed.split(' ').map(str::to_string);
    let bin = words.next().unwrap();
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    (dir.join(bin), words.collect())
}

#[test]
fn a_man_page_per_command_and_subcommand_rendering_without_warnings() {
    require_program("man");
    let pages = man_pages();
    let names: Vec<String> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "enroll.8.gz",
        "enroll-bundle.8.gz",
        "forced-command.8.gz",
        "forced-command-token-create.8.gz",
        "rsyncsend.8.gz",
        "dropbox.8.gz",
        "dropbox-setup.8.gz",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
            .arg(page)
            .env("MANWIDTH", "80")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", page.display(), String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{}: groff warnings", page.display());
        let roff = roff_of(page);
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO"] {
            let found = roff.lines().any(|l| l.starts_with(".SH") && l[3..].trim().trim_matches('"') == section);
            assert!(found, "{} has no {section}", page.display());
        }
    }
    // Every subcommand listed on a page (the line after each `.TP` of
    // SUBCOMMANDS) has its own page.
    let mut links = 0;
    for page in &pages {
        let roff = roff_of(page);
        let section: Vec<&str> = roff
            .lines()
            .skip_while(|l| *l != ".SH SUBCOMMANDS")
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"))
            .collect();
        for pair in section.windows(2).filter(|w| w[0] == ".TP") {
            let linked = pair[1].replace("\\-", "-").replace("(8)", ".8.gz");
            assert!(names.contains(&linked), "{} links {linked}, which is not generated", page.display());
            links += 1;
        }
    }
    // forced-command's 14 + token's 3 + fleet's 5 + enroll's bundle, dump,
    // dumps and jobs + rsyncsend's exec-rsync, run-dumps, run-job and
    // rotate-key + dropbox's setup, uninstall, push, prune.
    assert_eq!(links, 34, "subcommand links found");
}

#[test]
fn help_of_every_command_has_examples() {
    for page in man_pages() {
        let (bin, words) = command_of(&page);
        let out = Command::new(&bin).args(&words).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{} {words:?} --help", bin.display());
        assert!(help.contains("Example"), "{} {words:?} --help has no example:\n{help}", bin.display());
        let example_line = help.lines().skip_while(|l| !l.starts_with("Example")).nth(1).unwrap_or_default();
        let name = bin.file_name().unwrap().to_str().unwrap();
        assert!(
            example_line.trim_start().starts_with(name) || example_line.trim_start().starts_with('#'),
            "{name} {words:?}: the first example is a command line: {example_line:?}"
        );
    }
}

#[test]
fn version_names_the_git_revision() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let rev = Command::new("git").args(["-C", manifest, "rev-parse", "--short=12", "HEAD"]).output().ok();
    let rev = rev.filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for page in ["enroll.8.gz", "forced-command.8.gz", "rsyncsend.8.gz", "dropbox.8.gz"] {
        let (bin, _) = command_of(&assets().join("man").join(page));
        let out = run_ok(Command::new(&bin).arg("--version"));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let name = bin.file_name().unwrap().to_str().unwrap();
        let expected = match &rev {
            Some(r) => format!("{name} {} (git {r})", env!("CARGO_PKG_VERSION")),
            None => format!("{name} {}", env!("CARGO_PKG_VERSION")),
        };
        assert_eq!(version, expected);
    }
}

#[test]
fn completions_parse_and_complete() {
    let dir = assets().join("completions");
    for (shell, file) in [
        ("bash", "enroll.bash"),
        ("bash", "forced-command.bash"),
        ("zsh", "_enroll"),
        ("zsh", "_forced-command"),
        ("fish", "enroll.fish"),
        ("fish", "forced-command.fish"),
        ("bash", "dropbox.bash"),
        ("zsh", "_dropbox"),
        ("fish", "dropbox.fish"),
    ] {
        require_program(shell);
        let out = Command::new(shell).arg("-n").arg(dir.join(file)).output().unwrap();
        assert!(out.status.success(), "{shell} -n {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // What a user gets on Tab.
    for (file, words, want) in [
        ("enroll.bash", "enroll bun", "bundle"),
        ("enroll.bash", "enroll --dry", "--dry-run"),
        ("forced-command.bash", "forced-command check", "check-config"),
        ("forced-command.bash", "forced-command token cr", "create"),
    ] {
        let program = words.split(' ').next().unwrap();
        // The function bash would call, as the file registers it.
        let script = format!(
            "source '{}'; f=$(complete -p {program} | sed -E 's/.*-F ([^ ]+).*/\\1/'); \
             COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \"$f\" {program}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            dir.join(file).display(),
        );
        let out = run_ok(Command::new("bash").arg("-c").arg(script));
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(got.lines().any(|l| l.trim() == want), "{words}<Tab> offers {want}: {got:?}");
    }
    let fish =
        run_ok(Command::new("fish").arg("-c").arg(format!(
            "source '{}'; complete -C 'forced-command token '",
            dir.join("forced-command.fish").display()
        )));
    assert!(String::from_utf8_lossy(&fish.stdout).contains("revoke"), "{}", String::from_utf8_lossy(&fish.stdout));
}

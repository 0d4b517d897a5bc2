//! Build script: puts the git revision in `--version`, and renders the man
//! pages and shell completions (bash, zsh, fish) from the same clap
//! definitions the binaries parse with, so they cannot drift apart.
//!
//! Output goes to `$OUT_DIR` and is copied to `target/<profile>/assets/`,
//! the stable place the Debian packages (cargo-deb) take it from.

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use roff::{roman, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process;
use std::{env, fs, io};

#[path = "src/paths.rs"]
mod paths;

#[allow(dead_code)]
#[path = "enroll/cli.rs"]
mod enroll_cli;

#[allow(dead_code)]
#[path = "forced-command/cli.rs"]
mod forced_command_cli;

#[allow(dead_code)]
#[path = "rsyncsend/cli.rs"]
mod rsyncsend_cli;

#[allow(dead_code)]
#[path = "dropbox/cli.rs"]
mod dropbox_cli;

fn main() -> io::Result<()> {
    for input in
        ["build.rs", "src/paths.rs", "enroll/cli.rs", "forced-command/cli.rs", "rsyncsend/cli.rs", "dropbox/cli.rs"]
    {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-env-changed=BACKUPPC_ENROLL_GIT_REVISION");
    let version = long_version();
    println!("cargo:rustc-env=BACKUPPC_ENROLL_LONG_VERSION={version}");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = out.join("assets");
    let _ = fs::remove_dir_all(&assets);
    // enroll, forced-command and dropbox are run by root to administer the
    // machine (section 8); rsyncsend is run by sshd, never by a person,
    // likewise. The first three get completions.
    let commands = [
        enroll_cli::Cli::command().version(version.clone()),
        forced_command_cli::Cli::command().version(version.clone()),
        dropbox_cli::Cli::command().version(version.clone()),
        rsyncsend_cli::Cli::command().version(version.clone()),
    ];
    for cmd in &commands {
        man_pages(cmd, &[], &assets.join("man"))?;
    }
    let completions = assets.join("completions");
    fs::create_dir_all(&completions)?;
    for mut cmd in commands.into_iter().take(3) {
        let name = cmd.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let file = clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
            if shell == Shell::Bash && name.contains('-') {
                // clap_complete 4.6 spells a hyphenated binary's name one way
                // in the subcommand table (forced__command) and another in the
                // cases it selects (forced__subcmd__command), so nothing past
                // the first word completes. Make the cases match the table.
                let text = fs::read_to_string(&file)?;
                fs::write(&file, text.replace(&name.replace('-', "__subcmd__"), &name.replace('-', "__")))?;
            }
        }
    }
    // target/<profile>/build/<package>-<hash>/out → target/<profile>/assets,
    // replaced whole by a rename, so that a reader never sees half of it.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let stable = profile_dir.join("assets");
        let staged = profile_dir.join(format!(".assets.{}", process::id()));
        let old = profile_dir.join(format!(".assets.old.{}", process::id()));
        copy_tree(&assets, &staged)?;
        let _ = fs::rename(&stable, &old);
        fs::rename(&staged, &stable)?;
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

/// `0.1.0 (git 1a2b3c4d5e6f)` from a git checkout; the package version
/// alone elsewhere, unless BACKUPPC_ENROLL_GIT_REVISION names the commit
/// (for builds from an exported tree).
fn long_version() -> String {
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let revision = env::var("BACKUPPC_ENROLL_GIT_REVISION").ok().filter(|r| !r.is_empty()).or_else(git_revision);
    match revision {
        Some(r) => format!("{version} (git {r})"),
        None => version,
    }
}

fn git_revision() -> Option<String> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| {
        let out = process::Command::new("git").arg("-C").arg(&manifest).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only this repository's own checkout: not one it was unpacked inside.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if fs::canonicalize(&top).ok()? != fs::canonicalize(&manifest).ok()? {
        return None;
    }
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves (a commit, a checkout, a reset): HEAD and its
    // reflog change then. Only files that exist are named, since cargo
    // reruns the script on every build for a missing one.
    for name in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(revision)
}

/// One page per command and per subcommand (`forced-command-token-create.8.gz`),
/// as git does. clap_mangen renders the usual sections; the texts after the
/// options ("Examples:", "Exit status:", "Files:") become sections of their
/// own, and SEE ALSO links the pages together.
fn man_pages(cmd: &Command, parents: &[&str], dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut names: Vec<&str> = parents.to_vec();
    names.push(cmd.get_name());
    let name = names.join("-");
    // The page's title and synopsis name the command as it is typed.
    let cmd = cmd.clone().name(name.clone()).bin_name(names.join(" "));
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("backuppc-enroll")
        .source(format!("backuppc-enroll {}", env::var("CARGO_PKG_VERSION").unwrap_or_default()));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let mut roff = Roff::default();
    if let Some(text) = cmd.get_after_help() {
        sections(&mut roff, &text.to_string());
    }
    roff.control("SH", ["SEE ALSO"]);
    let see_also: Vec<String> = if parents.is_empty() {
        ["enroll", "forced-command", "rsyncsend", "dropbox"]
            .iter()
            .filter(|n| **n != name)
            .map(|n| format!("{n}(8)"))
            .chain(["sshd(8)", "rsync(1)"].map(String::from))
            .collect()
    } else {
        vec![format!("{}(8)", parents.join("-"))]
    };
    roff.text([roman(see_also.join(", "))]);
    roff.to_writer(&mut page)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    // Compressed as Debian policy asks (gzip -9n: no name, no timestamp).
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(&page)?;
    fs::write(dir.join(format!("{name}.8.gz")), gz.finish()?)?;
    for sub in cmd.get_subcommands() {
        man_pages(sub, &names, dir)?;
    }
    Ok(())
}

/// "Heading:" lines followed by indented lines, as the `after_help` texts
/// are written, into sections whose lines are kept as they are.
fn sections(roff: &mut Roff, text: &str) {
    let mut open = false;
    let mut lines: Vec<&str> = Vec::new();
    let flush = |roff: &mut Roff, lines: &mut Vec<&str>, open: bool| {
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        if open {
            roff.control("nf", []);
            for l in lines.drain(..) {
                roff.text([roman(l.strip_prefix("  ").unwrap_or(l))]);
            }
            roff.control("fi", []);
        }
        lines.clear();
    };
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            flush(roff, &mut lines, open);
            let heading = line.trim_end_matches(':');
            let heading = if heading.starts_with("Example") { "EXAMPLES".to_string() } else { heading.to_uppercase() };
            roff.control("SH", [heading.as_str()]);
            open = true;
        } else {
            lines.push(line);
        }
    }
    flush(roff, &mut lines, open);
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

//! Where `fleet report` sends its report besides standard output: the
//! page of `--html FILE` (`fleet::html`), written atomically, owned by
//! whoever runs the report, mode 0644 as narrowed by the umask (or the
//! owner and mode of the file it replaces); and the mail of `--mail-to`
//! (`fleet::mail`), handed to the local MTA's `sendmail`.

use anyhow::{bail, Context, Result};
use backuppc_enroll::fleet::health::{self, HostHealth};
use backuppc_enroll::fleet::html::{self, Run};
use backuppc_enroll::fleet::mail::{self, Address};
use backuppc_enroll::fleet::report::Outcome;
use backuppc_enroll::store::atomic::{self, Ownership};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The MTA's mail submission program (every Debian MTA provides it).
const SENDMAIL: &str = "/usr/sbin/sendmail";
/// How long sendmail may take to accept the message.
const SENDMAIL_TIMEOUT: Duration = Duration::from_secs(60);

/// `--html` and `--mail-to`, checked before any host is contacted.
pub struct Outputs {
    pub html: Option<PathBuf>,
    pub mail_to: Vec<Address>,
}

impl Outputs {
    pub fn new(html: Option<PathBuf>, mail_to: &[String]) -> Result<Outputs> {
        let mail_to = mail_to.iter().map(|a| Address::parse(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(Outputs { html, mail_to })
    }

    /// Write the page and send the mail that were asked for, saying on
    /// standard error what could not be done; false if anything failed.
    pub fn deliver(&self, hosts: &[HostHealth], run: Run, table: &str) -> bool {
        if self.html.is_none() && self.mail_to.is_empty() {
            return true;
        }
        let page = html::page(hosts, run);
        let mut ok = true;
        if let Some(path) = &self.html {
            if let Err(e) = write_page(path, &page) {
                eprintln!("forced-command: fleet: {e:#}");
                ok = false;
            }
        }
        if !self.mail_to.is_empty() {
            let (healthy, stale) = health::counts(hosts);
            let not_ok = hosts.iter().filter(|h| h.reach.outcome != Outcome::Ok).count();
            let subject = format!(
                "Backup fleet: {healthy} of {} host(s) healthy, {stale} with backups stale or failing, {not_ok} not answering ok",
                hosts.len()
            );
            if let Err(e) = send(&self.mail_to, &mail::message(&self.mail_to, &subject, table, &page)) {
                eprintln!("forced-command: fleet: {e:#}");
                ok = false;
            }
        }
        ok
    }
}

fn write_page(path: &Path, page: &str) -> Result<()> {
    let mine = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        mode: 0o644 & !umask(),
    };
    atomic::write(path, page.as_bytes(), Ownership::of_existing_or(path, mine)).with_context(|| {
        format!(
            "cannot write the report's page {}: check that its folder exists and that you may write there",
            path.display()
        )
    })
}

/// The process's umask, as the kernel reports it (reading it with
/// umask(2) would change it); 022 where /proc does not say.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
        })
        .unwrap_or(0o022)
}

/// Hand `message` to sendmail for `to`; killed (its own pid) if it has
/// not accepted it within [`SENDMAIL_TIMEOUT`]. The message is read from
/// an unnamed file, not a pipe: a sendmail that fails before reading it
/// cannot take this process down with a SIGPIPE (fleet restores its
/// default action, for `| head`).
fn send(to: &[Address], message: &str) -> Result<()> {
    let what =
        || format!("cannot mail the report to {}", to.iter().map(Address::as_str).collect::<Vec<_>>().join(", "));
    let mut file = tempfile::tempfile().with_context(|| format!("{}: cannot make a temporary file", what()))?;
    file.write_all(message.as_bytes())
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .with_context(|| format!("{}: cannot write a temporary file", what()))?;
    // Its messages in a file too: a pipe nobody reads while it runs could fill.
    let mut err_file = tempfile::tempfile().with_context(|| format!("{}: cannot make a temporary file", what()))?;
    let mut child = Command::new(SENDMAIL)
        .arg("-oi")
        .arg("--")
        .args(to.iter().map(Address::as_str))
        .stdin(file)
        .stdout(Stdio::null())
        .stderr(err_file.try_clone().with_context(|| format!("{}: cannot make a temporary file", what()))?)
        .spawn()
        .with_context(|| format!("{}: cannot run {SENDMAIL}: is a mail server (MTA) installed?", what()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > SENDMAIL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{}: {SENDMAIL} did not finish within {} s", what(), SENDMAIL_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut err = String::new();
        let _ = err_file.seek(SeekFrom::Start(0)).and_then(|_| err_file.read_to_string(&mut err));
        bail!("{}: {SENDMAIL} failed ({status}): {}", what(), backuppc_enroll::names::display_text(err.trim()));
    }
    Ok(())
}

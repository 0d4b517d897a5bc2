//! What a fleet run found, host by host, and the report made of it: one
//! line per host as it finishes, outputs folded (identical outputs shown
//! once with the hosts that gave them, as clush's `-b` does), counts by
//! outcome, one JSON object per host and a summary, the exit status and
//! the retry file. Every targeted host is in each of them, reached or not.

use crate::names;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How one host fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The session ran and the command exited 0.
    Ok,
    /// Nothing listens on the host's SSH port.
    Refused,
    /// No connection, no SSH greeting or no answer within the timeouts.
    Timeout,
    /// The name does not resolve, the network is unreachable, or the SSH
    /// key exchange kept failing.
    Unreachable,
    /// The host refused the per-host key(s).
    AuthFailed,
    /// The host proved a key other than the pinned one (or a revoked one).
    HostKeyMismatch,
    /// No host key is pinned for the host's alias.
    NoPinnedKey,
    /// The command ran and failed (non-zero exit, or the session broke).
    Failed,
    /// The server side cannot reach the host the way BackupPC does: no or
    /// an unreadable per-host config, no per-host key.
    NotSetUp,
    /// Named with `--hosts` but not an enrolled host of the registry.
    UnknownHost,
    /// The host's rsyncsend does not offer the operation (an older
    /// install): nothing was changed there.
    Unsupported,
}

/// The three kinds of outcome the exit status tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    /// Connecting failed: the host may be down or off the network.
    Unreachable,
    /// The host answered but something is wrong: keys, trust, the command.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::AuthFailed,
        Outcome::HostKeyMismatch,
        Outcome::NoPinnedKey,
        Outcome::Failed,
        Outcome::NotSetUp,
        Outcome::UnknownHost,
        Outcome::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::AuthFailed => "auth-failed",
            Outcome::HostKeyMismatch => "host-key-mismatch",
            Outcome::NoPinnedKey => "no-pinned-key",
            Outcome::Failed => "failed",
            Outcome::NotSetUp => "not-set-up",
            Outcome::UnknownHost => "unknown-host",
            Outcome::Unsupported => "unsupported",
        }
    }

    pub fn class(self) -> Class {
        match self {
            Outcome::Ok => Class::Success,
            Outcome::Refused | Outcome::Timeout | Outcome::Unreachable => Class::Unreachable,
            _ => Class::Failed,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    pub host: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// The command's exit status, when it ran.
    pub exit_status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// What went wrong, for a person (empty when all went well).
    pub detail: String,
}

impl HostResult {
    pub fn new(host: &str, outcome: Outcome, elapsed: Duration, detail: impl Into<String>) -> HostResult {
        HostResult {
            host: host.to_string(),
            outcome,
            elapsed,
            exit_status: None,
            stdout: String::new(),
            stderr: String::new(),
            detail: detail.into(),
        }
    }

    /// The plain progress line, parallel-ssh style: `[n] 0.12s ok host`,
    /// and what went wrong after a colon.
    pub fn line(&self, n: usize) -> String {
        let mut l =
            format!("[{n}] {:.2}s {} {}", self.elapsed.as_secs_f64(), self.outcome, names::printable(&self.host));
        if !self.detail.is_empty() {
            let _ = write!(l, ": {}", names::printable(&self.detail));
        }
        l
    }

    /// What identical hosts share: the outcome, the detail and the outputs.
    fn body(&self) -> String {
        let mut b = String::new();
        if !self.detail.is_empty() {
            let _ = writeln!(b, "{}", self.detail);
        }
        b.push_str(&self.stdout);
        if !self.stdout.is_empty() && !self.stdout.ends_with('\n') {
            b.push('\n');
        }
        if !self.stderr.is_empty() {
            for l in self.stderr.lines() {
                let _ = writeln!(b, "stderr: {l}");
            }
        }
        b
    }

    pub fn json(&self) -> Value {
        json!({
            "host": self.host,
            "outcome": self.outcome.as_str(),
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "exit_status": self.exit_status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "detail": self.detail,
        })
    }
}

/// Hosts that gave the same outcome and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub outcome: Outcome,
    pub hosts: Vec<String>,
    pub body: String,
}

/// Fold identical results into blocks: successes first, then each
/// problem, so the problems sit just above the counts; hosts in name order.
pub fn fold(results: &[HostResult]) -> Vec<Block> {
    let mut groups: BTreeMap<(Outcome, String), Vec<String>> = BTreeMap::new();
    for r in results {
        groups.entry((r.outcome, r.body())).or_default().push(r.host.clone());
    }
    groups
        .into_iter()
        .map(|((outcome, body), mut hosts)| {
            hosts.sort();
            Block { outcome, hosts, body }
        })
        .collect()
}

/// Hosts by outcome, in [`Outcome::ALL`] order, outcomes with none left out.
pub fn counts(results: &[HostResult]) -> Vec<(Outcome, usize)> {
    Outcome::ALL
        .iter()
        .map(|o| (*o, results.iter().filter(|r| r.outcome == *o).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Exit statuses of a fleet run.
pub const EXIT_OK: u8 = 0;
/// The run could not start (config, registry, arguments).
pub const EXIT_ERROR: u8 = 1;
/// Some hosts could not be reached (refused, timeout, unreachable); every
/// host reached was fine.
pub const EXIT_UNREACHABLE: u8 = 2;
/// Some hosts failed (authentication, host key, the command, set-up,
/// unknown name), whether or not others were unreachable.
pub const EXIT_FAILED: u8 = 3;

pub fn exit_status(results: &[HostResult]) -> u8 {
    if results.iter().any(|r| r.outcome.class() == Class::Failed) {
        EXIT_FAILED
    } else if results.iter().any(|r| r.outcome.class() == Class::Unreachable) {
        EXIT_UNREACHABLE
    } else {
        EXIT_OK
    }
}

/// The report after the run: folded outputs, then counts.
pub fn render(results: &[HostResult]) -> String {
    let mut out = String::new();
    for b in fold(results) {
        let n = b.hosts.len();
        let names: Vec<String> = b.hosts.iter().map(|h| names::printable(h)).collect();
        let _ = writeln!(out, "---------------- {} ({} host{}, {})", names.join(","), n, plural(n), b.outcome);
        if b.body.is_empty() {
            let _ = writeln!(out, "(no output)");
        } else {
            // Indented, so a host's output can never pass for a block
            // header or the counts.
            for line in names::display_text(&b.body).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let _ = writeln!(out, "{}", summary_line(results));
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `8 hosts: 3 ok, 1 refused, …`.
pub fn summary_line(results: &[HostResult]) -> String {
    let parts: Vec<String> = counts(results).iter().map(|(o, n)| format!("{n} {o}")).collect();
    format!(
        "{} host{}: {}",
        results.len(),
        plural(results.len()),
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    )
}

/// The last JSON line of `--json`.
pub fn summary_json(operation: &str, results: &[HostResult], elapsed: Duration, retry_file: Option<&str>) -> Value {
    let counts: serde_json::Map<String, Value> =
        counts(results).into_iter().map(|(o, n)| (o.as_str().to_string(), json!(n))).collect();
    json!({
        "summary": {
            "operation": operation,
            "hosts": results.len(),
            "counts": counts,
            "elapsed_ms": elapsed.as_millis() as u64,
            "exit_status": exit_status(results),
            "retry_file": retry_file,
        }
    })
}

/// The hosts that did not succeed, in name order.
pub fn retry_hosts(results: &[HostResult]) -> Vec<String> {
    let mut v: Vec<String> = results.iter().filter(|r| r.outcome != Outcome::Ok).map(|r| r.host.clone()).collect();
    v.sort();
    v
}

/// The retry file: a comment line, then one host per line, read back by
/// `--hosts @FILE`.
pub fn retry_file(operation: &str, stamp: &str, results: &[HostResult]) -> String {
    let hosts = retry_hosts(results);
    let mut out = format!(
        "# forced-command fleet {operation} at {stamp}: the {} host{} that did not succeed (run again with --hosts @THIS-FILE)\n",
        hosts.len(),
        plural(hosts.len())
    );
    for h in hosts {
        out.push_str(&h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::selection;

    fn r(host: &str, outcome: Outcome, stdout: &str, detail: &str) -> HostResult {
        HostResult { stdout: stdout.into(), ..HostResult::new(host, outcome, Duration::from_millis(120), detail) }
    }

    #[test]
    fn classes_and_exit_status() {
        // (outcomes of a run, exit status, why)
        let rows: &[(&[Outcome], u8, &str)] = &[
            (&[Outcome::Ok, Outcome::Ok], EXIT_OK, "all fine"),
            (&[], EXIT_OK, "no host"),
            (&[Outcome::Ok, Outcome::Refused], EXIT_UNREACHABLE, "sshd down"),
            (&[Outcome::Timeout], EXIT_UNREACHABLE, "no answer"),
            (&[Outcome::Unreachable], EXIT_UNREACHABLE, "no route, no name"),
            (&[Outcome::Ok, Outcome::AuthFailed], EXIT_FAILED, "key refused"),
            (&[Outcome::HostKeyMismatch], EXIT_FAILED, "changed host key"),
            (&[Outcome::NoPinnedKey], EXIT_FAILED, "nothing pinned"),
            (&[Outcome::Failed], EXIT_FAILED, "the command failed"),
            (&[Outcome::NotSetUp], EXIT_FAILED, "no per-host config"),
            (&[Outcome::UnknownHost], EXIT_FAILED, "a misspelt name"),
            (&[Outcome::Timeout, Outcome::AuthFailed], EXIT_FAILED, "failures outweigh unreachable hosts"),
        ];
        for (outcomes, want, why) in rows {
            let results: Vec<HostResult> =
                outcomes.iter().enumerate().map(|(i, o)| r(&format!("h{i}"), *o, "", "")).collect();
            assert_eq!(exit_status(&results), *want, "{why}");
        }
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
    }

    #[test]
    fn identical_outputs_fold_and_every_host_is_counted() {
        let results = vec![
            r("b", Outcome::Ok, "rsyncsend 1\nshares: /home\n", ""),
            r("a", Outcome::Ok, "rsyncsend 1\nshares: /home\n", ""),
            r("c", Outcome::Ok, "rsyncsend 1\nshares: /etc\n", ""),
            r("d", Outcome::Refused, "", "connection refused"),
            r("e", Outcome::UnknownHost, "", "not in the registry"),
        ];
        let blocks = fold(&results);
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0].hosts, ["c"], "{blocks:?}");
        assert_eq!(blocks[1].hosts, ["a", "b"], "identical outputs in one block, names sorted");
        assert_eq!(blocks[2].outcome, Outcome::Refused);
        let text = render(&results);
        assert!(text.contains("---------------- a,b (2 hosts, ok)\n    rsyncsend 1\n    shares: /home\n"), "{text}");
        assert!(text.ends_with("5 hosts: 3 ok, 1 refused, 1 unknown-host\n"), "{text}");
        let s = summary_json("check", &results, Duration::from_secs(1), Some("/r"));
        assert_eq!(s["summary"]["hosts"], 5);
        assert_eq!(s["summary"]["counts"]["ok"], 3);
        assert_eq!(s["summary"]["exit_status"], EXIT_FAILED);
    }

    #[test]
    fn hostile_output_cannot_forge_report_lines() {
        let results = vec![r("a\u{1b}[2J", Outcome::Failed, "x\u{1b}]0;title\u{7}\u{202e}y\n", "bad\nline")];
        let text = render(&results);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text:?}");
        let line = results[0].line(1);
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
        // Output that imitates a block header or the counts stays indented
        // under its own header.
        let forged = vec![r("a", Outcome::Ok, "---------------- b (1 host, ok)\n9 hosts: 9 ok\n", "")];
        let text = render(&forged);
        let starts: Vec<&str> = text.lines().filter(|l| l.starts_with("----") || l.contains(" hosts: ")).collect();
        assert_eq!(starts, ["---------------- a (1 host, ok)", "    9 hosts: 9 ok"], "{text}");
        assert!(text.ends_with("\n1 host: 1 ok\n") || text.ends_with("\n1 hosts: 1 ok\n"), "{text}");
        assert_eq!(line, "[1] 0.12s failed a\\u{1b}[2J: bad\\u{a}line");
    }

    #[test]
    fn retry_file_names_exactly_the_failed_hosts_and_reads_back() {
        let results = vec![
            r("ok1", Outcome::Ok, "", ""),
            r("t", Outcome::Timeout, "", "x"),
            r("m", Outcome::HostKeyMismatch, "", "x"),
            r("ok2", Outcome::Ok, "", ""),
        ];
        let text = retry_file("check", "2026-01-01T00:00:00Z", &results);
        assert_eq!(selection::parse_file(&text), ["m", "t"]);
        assert!(text.starts_with("# forced-command fleet check"), "{text}");
    }
}

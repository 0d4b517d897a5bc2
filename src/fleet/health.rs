//! `fleet report`: what each host answered, joined with BackupPC's own
//! view of it (its `backups` file): the last finished backup, its age
//! against a threshold, its transfer errors. Hosts whose backups are
//! stale or failing, or that could not be reached, come first. Pure: the
//! caller reads the files and runs the sessions.

use super::report::{HostResult, Outcome, EXIT_FAILED};
use crate::backuppc::backups::{self, Backup};
use crate::names;
use serde_json::{json, Value};

/// One host of the report.
#[derive(Debug, Clone)]
pub struct HostHealth {
    pub reach: HostResult,
    pub last: Option<Backup>,
    /// Hours since the last finished backup ended.
    pub age_hours: Option<f64>,
    /// What is wrong with its backups (BackupPC's view).
    pub problems: Vec<String>,
}

impl HostHealth {
    /// `rows`: the host's `backups` file, or why it could not be read.
    pub fn new(reach: HostResult, rows: Result<Vec<Backup>, String>, now: u64, max_age_hours: u64) -> HostHealth {
        let (last, problems) = match rows {
            Ok(rows) => (backups::last_complete(&rows).cloned(), backups::problems(&rows, now, max_age_hours)),
            Err(why) => (None, vec![why]),
        };
        let age_hours = last.as_ref().map(|b| now.saturating_sub(b.end_time.unwrap_or(b.start_time)) as f64 / 3600.0);
        HostHealth { reach, last, age_hours, problems }
    }

    pub fn healthy(&self) -> bool {
        self.reach.outcome == Outcome::Ok && self.problems.is_empty()
    }

    /// Sort key, worst first: backups failing and host not answering,
    /// then either alone, then healthy; within each, the oldest backup
    /// first (none at all is oldest).
    fn rank(&self) -> (u8, i64) {
        let reached = self.reach.outcome == Outcome::Ok;
        let group = match (reached, self.problems.is_empty()) {
            (false, false) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (true, true) => 3,
        };
        let age_ms = self.age_hours.map(|h| (h * 3_600_000.0) as i64).unwrap_or(i64::MAX);
        (group, -age_ms)
    }

    pub fn json(&self) -> Value {
        let mut v = self.reach.json();
        v["healthy"] = json!(self.healthy());
        v["last_backup"] = json!(self.last);
        v["age_hours"] = json!(self.age_hours);
        v["backup_problems"] = json!(self.problems);
        v
    }
}

/// Worst first, then by name.
pub fn sort(hosts: &mut [HostHealth]) {
    hosts.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.reach.host.cmp(&b.reach.host)));
}

/// The report's table (hosts as `sort` left them) and its counts.
pub fn render(hosts: &[HostHealth], max_age_hours: u64) -> String {
    let mut out = format!(
        "{:<32} {:<18} {:<8} {:>6} {:>9} {:>6}  PROBLEMS\n",
        "HOST", "REACHED", "LAST", "NUM", "AGE (h)", "ERRORS"
    );
    for h in hosts {
        let (kind, num, age, errors) = match &h.last {
            Some(b) => (
                b.kind.as_str().to_string(),
                b.num.to_string(),
                format!("{:.1}", h.age_hours.unwrap_or(0.0)),
                b.errors().to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let mut problems: Vec<String> = h.problems.clone();
        if h.reach.outcome != Outcome::Ok && !h.reach.detail.is_empty() {
            problems.insert(0, h.reach.detail.clone());
        }
        let problems = if problems.is_empty() { "-".to_string() } else { problems.join("; ") };
        out.push_str(&format!(
            "{:<32} {:<18} {:<8} {:>6} {:>9} {:>6}  {}\n",
            names::printable(&h.reach.host),
            h.reach.outcome.as_str(),
            kind,
            num,
            age,
            errors,
            names::display_text(&problems).replace('\n', " ")
        ));
    }
    let (healthy, stale) = counts(hosts);
    out.push_str(&format!(
        "{} host(s): {healthy} healthy, {stale} with backups stale or failing (threshold {max_age_hours} h), {} not answering ok\n",
        hosts.len(),
        hosts.iter().filter(|h| h.reach.outcome != Outcome::Ok).count()
    ));
    out
}

/// (healthy, with backup problems).
pub fn counts(hosts: &[HostHealth]) -> (usize, usize) {
    (hosts.iter().filter(|h| h.healthy()).count(), hosts.iter().filter(|h| !h.problems.is_empty()).count())
}

/// The exit status: as for the other operations (reachability), except
/// that backups stale or failing count as failed.
pub fn exit_status(hosts: &[HostHealth]) -> u8 {
    if hosts.iter().any(|h| !h.problems.is_empty()) {
        return EXIT_FAILED;
    }
    let reach: Vec<HostResult> = hosts.iter().map(|h| h.reach.clone()).collect();
    super::report::exit_status(&reach)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backuppc::backups::BackupType;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;

    fn backup(num: u64, kind: BackupType, end_hours_ago: u64, errs: u64) -> Backup {
        let end = NOW - end_hours_ago * 3600;
        let line = format!(
            "{num}\t{}\t{}\t{end}\t10\t100\t0\t0\t10\t100\t{errs}\t0\t0\t0\t3\t0\t0\t0\t\t0\trsync\t0\tutf8\t4.4.0\t0\t0\t",
            kind.as_str(),
            end - 60
        );
        backups::parse(line.as_bytes()).unwrap().remove(0)
    }

    fn reached(host: &str, outcome: Outcome) -> HostResult {
        HostResult::new(host, outcome, Duration::from_millis(5), if outcome == Outcome::Ok { "" } else { "down" })
    }

    #[test]
    fn problems_table() {
        let rows: &[(Vec<Backup>, usize, &str)] = &[
            (vec![backup(0, BackupType::Full, 2, 0)], 0, "fresh full"),
            (vec![backup(0, BackupType::Full, 50, 0)], 1, "older than 36 h"),
            (vec![backup(0, BackupType::Full, 2, 3)], 1, "transfer errors"),
            (vec![backup(0, BackupType::Full, 2, 0), backup(1, BackupType::Partial, 1, 0)], 1, "later partial"),
            (vec![], 1, "never backed up"),
            (vec![backup(0, BackupType::Full, 50, 2)], 2, "stale and errors"),
        ];
        for (backups, n, why) in rows {
            assert_eq!(
                backups::problems(backups, NOW, 36).len(),
                *n,
                "{why}: {:?}",
                backups::problems(backups, NOW, 36)
            );
        }
    }

    #[test]
    fn worst_first_and_every_host_kept() {
        let mut hosts = vec![
            HostHealth::new(reached("fresh", Outcome::Ok), Ok(vec![backup(0, BackupType::Full, 1, 0)]), NOW, 36),
            HostHealth::new(reached("old", Outcome::Ok), Ok(vec![backup(0, BackupType::Full, 100, 0)]), NOW, 36),
            HostHealth::new(reached("older", Outcome::Ok), Ok(vec![backup(0, BackupType::Incr, 200, 0)]), NOW, 36),
            HostHealth::new(
                reached("down-fresh", Outcome::Refused),
                Ok(vec![backup(0, BackupType::Full, 1, 0)]),
                NOW,
                36,
            ),
            HostHealth::new(reached("down-never", Outcome::Timeout), Ok(vec![]), NOW, 36),
            HostHealth::new(reached("unreadable", Outcome::Ok), Err("cannot read".into()), NOW, 36),
        ];
        sort(&mut hosts);
        let order: Vec<&str> = hosts.iter().map(|h| h.reach.host.as_str()).collect();
        assert_eq!(order, ["down-never", "unreadable", "older", "old", "down-fresh", "fresh"]);
        assert_eq!(counts(&hosts), (1, 4));
        let table = render(&hosts, 36);
        for h in &order {
            assert!(table.contains(h), "{h} in:\n{table}");
        }
        assert!(table
            .contains("6 host(s): 1 healthy, 4 with backups stale or failing (threshold 36 h), 2 not answering ok"));
        assert_eq!(exit_status(&hosts), EXIT_FAILED);
        let fresh = [HostHealth::new(reached("a", Outcome::Ok), Ok(vec![backup(0, BackupType::Full, 1, 0)]), NOW, 36)];
        assert_eq!(exit_status(&fresh), 0);
        assert_eq!(fresh[0].json()["healthy"], true);
        assert_eq!(fresh[0].json()["last_backup"]["num"], 0);
    }
}

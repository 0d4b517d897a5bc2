//! Retention: which archives `dropbox prune` keeps. Ordered by the time
//! the drop box received each one (its receipt), never by the date in its
//! name: a vendor's wrong clock or a name dated in the future must not
//! decide what is deleted. Keeps the newest N, then the newest archive of
//! each of the last days, weeks (Monday to Sunday, UTC) and months that
//! have one, and always the newest archive.

use super::config::{DropboxConfig, Retention};
use super::store::Receipt;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// An archive and when it was received (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub received: u64,
}

fn month_of(secs: u64) -> i64 {
    let date = crate::log::rfc3339(secs);
    let y: i64 = date[..4].parse().unwrap_or(0);
    let m: i64 = date[5..7].parse().unwrap_or(0);
    y * 12 + m
}

/// Pure: the names to keep.
pub fn keep(held: &[Held], r: &Retention) -> BTreeSet<String> {
    let mut sorted: Vec<&Held> = held.iter().collect();
    // Newest first; equal times by name, so the choice is stable.
    sorted.sort_by(|a, b| b.received.cmp(&a.received).then(b.name.cmp(&a.name)));
    let mut keep = BTreeSet::new();
    if let Some(newest) = sorted.first() {
        keep.insert(newest.name.clone());
    }
    for h in sorted.iter().take(r.keep_last) {
        keep.insert(h.name.clone());
    }
    let days = |s: u64| (s / 86_400) as i64;
    // Day 0 (1970-01-01) was a Thursday: +3 makes weeks start on Monday.
    let buckets: [(usize, &dyn Fn(u64) -> i64); 3] =
        [(r.daily, &days), (r.weekly, &|s| (days(s) + 3).div_euclid(7)), (r.monthly, &month_of)];
    for (count, bucket) in buckets {
        let mut last = None;
        let mut kept = 0;
        for h in &sorted {
            if kept >= count {
                break;
            }
            let b = bucket(h.received);
            if last != Some(b) {
                last = Some(b);
                kept += 1;
                keep.insert(h.name.clone());
            }
        }
    }
    keep
}

/// What a prune did (or would do, dry).
#[derive(Debug, Default)]
pub struct Pruned {
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
    pub stale_temps: Vec<String>,
    /// Quarantined files (and their `.reason`) older than
    /// `quarantine_days`.
    pub quarantined: Vec<String>,
}

/// The archives in the box with their receive times: from the receipt,
/// or, for an archive without one (a crash between its rename and its
/// receipt), the time its inode last changed (the rename), which the
/// vendor cannot set.
pub fn held(cfg: &DropboxConfig) -> std::io::Result<Vec<Held>> {
    let mut out = Vec::new();
    for e in fs::read_dir(&cfg.folder)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else { continue };
        let m = e.metadata()?;
        if !m.is_file() || !cfg.name_pattern.is_match(&name) {
            continue;
        }
        let receipt: Option<Receipt> =
            fs::read(cfg.receipts().join(format!("{name}.json"))).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let received = match receipt {
            Some(r) if r.name == name => r.received_unix,
            _ => m.ctime().max(0) as u64,
        };
        out.push(Held { name, received });
    }
    Ok(out)
}

/// Delete what the retention does not keep (with its sidecar and
/// receipt), temporary files of uploads whose writer died more than a
/// day ago, and quarantined files older than `quarantine_days`.
pub fn prune(cfg: &DropboxConfig, dry_run: bool) -> std::io::Result<Pruned> {
    let held = held(cfg)?;
    let keep = keep(&held, &cfg.retention);
    let mut p = Pruned::default();
    for h in &held {
        if keep.contains(&h.name) {
            p.kept.push(h.name.clone());
            continue;
        }
        if !dry_run {
            fs::remove_file(cfg.folder.join(&h.name))?;
            let _ = fs::remove_file(cfg.folder.join(format!("{}.sha256", h.name)));
            let _ = fs::remove_file(cfg.receipts().join(format!("{}.json", h.name)));
        }
        p.deleted.push(h.name.clone());
    }
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    if let Ok(entries) = fs::read_dir(cfg.incoming()) {
        for e in entries.flatten() {
            let stale = e.metadata().ok().and_then(|m| m.modified().ok()).is_some_and(|t| t < day_ago);
            if stale {
                if !dry_run {
                    let _ = fs::remove_file(e.path());
                }
                p.stale_temps.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let bound = SystemTime::now() - Duration::from_secs(cfg.quarantine_days.saturating_mul(86_400));
    if let Ok(entries) = fs::read_dir(cfg.quarantine()) {
        for e in entries.flatten() {
            let old =
                e.metadata().ok().filter(|m| m.is_file()).and_then(|m| m.modified().ok()).is_some_and(|t| t < bound);
            if old {
                if !dry_run {
                    let _ = fs::remove_file(e.path());
                }
                p.quarantined.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    if !dry_run {
        let _ = crate::store::atomic::sync_dir(Path::new(&cfg.folder));
        let _ = crate::store::atomic::sync_dir(&cfg.quarantine());
    }
    p.quarantined.sort();
    p.kept.sort();
    p.deleted.sort();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    // 2026-03-02 is a Monday.
    const MON: u64 = 1_772_409_600;

    fn h(name: &str, received: u64) -> Held {
        Held { name: name.into(), received }
    }

    fn r(keep_last: usize, daily: usize, weekly: usize, monthly: usize) -> Retention {
        Retention { keep_last, daily, weekly, monthly }
    }

    #[test]
    fn table() {
        type Row = (Vec<Held>, Retention, Vec<&'static str>, &'static str);
        let rows: Vec<Row> = vec![
            (vec![], r(3, 0, 0, 0), vec![], "nothing held"),
            (vec![h("a", 1), h("b", 2), h("c", 3)], r(0, 0, 0, 0), vec!["c"], "the newest is always kept"),
            (vec![h("a", 1), h("b", 2), h("c", 3)], r(2, 0, 0, 0), vec!["b", "c"], "keep_last"),
            (
                vec![h("a", MON), h("b", MON + 3600), h("c", MON + DAY), h("d", MON + 2 * DAY)],
                r(0, 2, 0, 0),
                vec!["c", "d"],
                "daily: the newest of each of the last two days",
            ),
            (
                vec![h("a", MON), h("b", MON + 3600), h("c", MON + DAY)],
                r(0, 5, 0, 0),
                vec!["b", "c"],
                "daily: one per day, the newest of the day",
            ),
            (
                vec![h("sun", MON - 3600), h("mon", MON + 10), h("tue", MON + DAY)],
                r(0, 0, 2, 0),
                vec!["sun", "tue"],
                "weekly: weeks start on Monday",
            ),
            (
                vec![h("feb", MON - 2 * DAY), h("mar1", MON + 10), h("mar2", MON + 5 * DAY)],
                r(0, 0, 0, 2),
                vec!["feb", "mar2"],
                "monthly",
            ),
            (
                vec![
                    h("jpro_instance-001-2099-01-01_00h-00-00.tar.gz", MON),
                    h("jpro_instance-001-1999-01-01_00h-00-00.tar.gz", MON + 10),
                ],
                r(1, 0, 0, 0),
                vec!["jpro_instance-001-1999-01-01_00h-00-00.tar.gz"],
                "receive time wins over the name's date",
            ),
        ];
        for (held, ret, want, why) in rows {
            let got: Vec<String> = keep(&held, &ret).into_iter().collect();
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn prunes_old_quarantine() {
        let t = tempfile::tempdir().unwrap();
        for d in [".incoming", ".quarantine", ".receipts"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let cfg =
            DropboxConfig::parse(&format!("user = \"jpro\"\nfolder = {:?}\nquarantine_days = 10\n", t.path())).unwrap();
        let q = cfg.quarantine();
        let old = SystemTime::now() - Duration::from_secs(11 * DAY);
        for (name, when) in [("a.1.2", Some(old)), ("a.1.2.reason", Some(old)), ("b.3.4", None), ("b.3.4.reason", None)]
        {
            let f = fs::File::create(q.join(name)).unwrap();
            if let Some(w) = when {
                f.set_modified(w).unwrap();
            }
        }
        let p = prune(&cfg, true).unwrap();
        assert_eq!(p.quarantined, ["a.1.2", "a.1.2.reason"]);
        assert_eq!(fs::read_dir(&q).unwrap().count(), 4, "a dry run deletes nothing");
        let p = prune(&cfg, false).unwrap();
        assert_eq!(p.quarantined, ["a.1.2", "a.1.2.reason"]);
        let mut left: Vec<String> =
            fs::read_dir(&q).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["b.3.4", "b.3.4.reason"], "recent ones stay");
    }
}

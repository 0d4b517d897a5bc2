//! BackupPC's own record of a host's backups, `$TopDir/pc/HOST/backups`:
//! one line per backup, tab-separated fields in the order of BackupPC 4's
//! `BackupFields` (num, type, startTime, endTime, nFiles, size, …,
//! xferErrs, xferBadFile, xferBadShare, tarErrs, …, level, …).
//!
//! The file is written by BackupPC, but a report must not trust it blindly
//! (a torn write, a hand edit, an old version): lines BackupPC itself would
//! skip (not starting `NUM\t(full|incr|partial|active)`) are skipped here
//! too; a line BackupPC would read but whose counters are not numbers is
//! an error naming the line, never silently read as zero errors. Missing
//! trailing fields read as BackupPC reads them (empty: zero / unknown).
//! The file is read up to [`MAX_SIZE`].

use std::path::{Path, PathBuf};

/// The largest `backups` file read (BackupPC's grow by ~200 bytes per
/// backup kept).
pub const MAX_SIZE: u64 = 16 << 20;

/// What kind of run a backup was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Incr,
    /// A backup that failed or was cut off part-way (kept so the next one
    /// can resume).
    Partial,
    /// A backup running now.
    Active,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incr => "incr",
            BackupType::Partial => "partial",
            BackupType::Active => "active",
        }
    }

    /// A backup that finished (full or incremental).
    pub fn is_complete(self) -> bool {
        matches!(self, BackupType::Full | BackupType::Incr)
    }
}

/// One line of the `backups` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    pub num: u64,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Unix seconds.
    pub start_time: u64,
    /// Unix seconds; None while a backup runs (the field is empty).
    pub end_time: Option<u64>,
    pub n_files: u64,
    /// Bytes.
    pub size: u64,
    pub xfer_errs: u64,
    pub xfer_bad_file: u64,
    pub xfer_bad_share: u64,
    pub tar_errs: u64,
    /// Backup level (0 for a full); None when the field is empty.
    pub level: Option<u64>,
}

impl Backup {
    /// The sum of the error counters BackupPC records.
    pub fn errors(&self) -> u64 {
        self.xfer_errs
            .saturating_add(self.xfer_bad_file)
            .saturating_add(self.xfer_bad_share)
            .saturating_add(self.tar_errs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupsError {
    #[error("host name {0:?} cannot name a folder of BackupPC's pc/")]
    BadHost(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is larger than {MAX_SIZE} bytes: not a BackupPC backups file")]
    TooLarge { path: PathBuf },
    #[error("line {line} of the backups file: field {field} is {value:?}, not a number")]
    Field { line: usize, field: &'static str, value: String },
}

/// The backups of `host` from `pc_dir/HOST/backups`, oldest first (the
/// file's order). No file: no backups yet.
pub fn read(pc_dir: &Path, host: &str) -> Result<Vec<Backup>, BackupsError> {
    use std::io::Read;
    if host.is_empty() || host == "." || host == ".." || host.contains(['/', '\0']) {
        return Err(BackupsError::BadHost(host.to_string()));
    }
    let path = pc_dir.join(host).join("backups");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => return Err(BackupsError::Read { path, source }),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BackupsError::Read { path: path.clone(), source })?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(BackupsError::TooLarge { path });
    }
    parse(&bytes)
}

/// Parse the contents of a `backups` file (see the module's paragraph).
pub fn parse(bytes: &[u8]) -> Result<Vec<Backup>, BackupsError> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        // BackupPC strips the first run of CR/LF characters and matches
        // ^(\d+\t(incr|full|partial|active).*) anywhere after.
        let line = line.trim_end_matches(['\r', '\n']);
        let fields: Vec<&str> = line.split('\t').collect();
        let kind = match fields.get(1).copied() {
            Some(k) if k.starts_with("full") => BackupType::Full,
            Some(k) if k.starts_with("incr") => BackupType::Incr,
            Some(k) if k.starts_with("partial") => BackupType::Partial,
            Some(k) if k.starts_with("active") => BackupType::Active,
            _ => continue,
        };
        if fields[0].is_empty() || !fields[0].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !["full", "incr", "partial", "active"].contains(&fields[1]) {
            // `fullx`: BackupPC's regular expression matches, its split
            // then gives a type it knows nothing of.
            return Err(BackupsError::Field { line: i + 1, field: "type", value: fields[1].to_string() });
        }
        let line_no = i + 1;
        let number = |idx: usize, field: &'static str| -> Result<Option<u64>, BackupsError> {
            match fields.get(idx).copied().unwrap_or("") {
                "" => Ok(None),
                v => v.parse::<u64>().map(Some).map_err(|_| BackupsError::Field {
                    line: line_no,
                    field,
                    value: v.chars().take(40).collect(),
                }),
            }
        };
        let zero = |idx, field| number(idx, field).map(|v| v.unwrap_or(0));
        out.push(Backup {
            num: zero(0, "num")?,
            kind,
            start_time: zero(2, "startTime")?,
            end_time: number(3, "endTime")?,
            n_files: zero(4, "nFiles")?,
            size: zero(5, "size")?,
            xfer_errs: zero(10, "xferErrs")?,
            xfer_bad_file: zero(11, "xferBadFile")?,
            xfer_bad_share: zero(12, "xferBadShare")?,
            tar_errs: zero(13, "tarErrs")?,
            level: number(21, "level")?,
        });
    }
    Ok(out)
}

/// The last backup that finished (full or incremental).
pub fn last_complete(backups: &[Backup]) -> Option<&Backup> {
    backups.iter().rev().find(|b| b.kind.is_complete())
}

/// What is wrong with backups `rows` of a host at `now` (Unix seconds):
/// no finished backup, the last one older than `max_age_hours`, transfer
/// errors in it, a later backup that did not finish. Empty: healthy.
pub fn problems(rows: &[Backup], now: u64, max_age_hours: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(last) = last_complete(rows) else {
        problems.push("no finished backup".to_string());
        return problems;
    };
    let age = now.saturating_sub(last.end_time.unwrap_or(last.start_time));
    if age > max_age_hours.saturating_mul(3600) {
        problems.push(format!(
            "the last backup (#{}, {}) is {:.1} h old, more than {max_age_hours} h",
            last.num,
            last.kind.as_str(),
            age as f64 / 3600.0
        ));
    }
    if last.errors() > 0 {
        problems.push(format!(
            "the last backup (#{}) had errors: xferErrs {}, xferBadFile {}, xferBadShare {}, tarErrs {}",
            last.num, last.xfer_errs, last.xfer_bad_file, last.xfer_bad_share, last.tar_errs
        ));
    }
    if let Some(after) = rows.iter().rev().take_while(|b| b.num != last.num).find(|b| b.kind == BackupType::Partial) {
        problems.push(format!("a later backup (#{}) did not finish: see the host's XferLOG", after.num));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as BackupPC 4.4 writes it (28 fields).
    fn line(num: u64, kind: &str, xfer_errs: u64) -> String {
        format!(
            "{num}\t{kind}\t1795365000\t1795365060\t120\t4096000\t100\t4000000\t20\t96000\t{xfer_errs}\t0\t0\t0\t3\t1000\t500\t0\t\t0\trsync\t0\tutf8\t4.4.0\t12\t0\t\t\n"
        )
    }

    #[test]
    fn reads_what_backuppc_writes() {
        let text = format!("{}{}{}", line(0, "full", 0), line(1, "incr", 2), line(2, "partial", 0));
        let b = parse(text.as_bytes()).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[1],
            Backup {
                num: 1,
                kind: BackupType::Incr,
                start_time: 1795365000,
                end_time: Some(1795365060),
                n_files: 120,
                size: 4096000,
                xfer_errs: 2,
                xfer_bad_file: 0,
                xfer_bad_share: 0,
                tar_errs: 0,
                level: Some(0),
            }
        );
        assert_eq!(last_complete(&b).unwrap().num, 1, "a partial is not a finished backup");
        assert_eq!(b[1].errors(), 2);
    }

    #[test]
    fn adversarial_table() {
        // (contents, Ok(number of backups) or Err(part of the message), why)
        let long_digits = format!("0\tfull\t{}\n", "9".repeat(30));
        let rows: &[(&str, Result<usize, &str>, &str)] = &[
            ("", Ok(0), "empty file"),
            ("\n\n\r\n", Ok(0), "blank lines"),
            ("# comment\n", Ok(0), "not a backup line: BackupPC skips it"),
            ("x\tfull\n", Ok(0), "number not numeric: skipped as BackupPC does"),
            ("-1\tfull\n", Ok(0), "negative number: skipped"),
            ("0\tFULL\n", Ok(0), "type case matters to BackupPC"),
            ("0\tfull\n", Ok(1), "trailing fields missing: read as empty"),
            ("0\tfull\r\n", Ok(1), "CRLF"),
            ("0\tfullx\t1\n", Err("field type"), "a type BackupPC's split would not know"),
            ("0\tfull\tyesterday\n", Err("field startTime"), "a time that is not a number"),
            (
                "0\tfull\t1\t2\t3\t4\t5\t6\t7\t8\tmany\n",
                Err("field xferErrs"),
                "errors that are not a number are not zero",
            ),
            ("0\tfull\t1\t2\t3\t4\t5\t6\t7\t8\t-3\n", Err("field xferErrs"), "negative errors"),
            (&long_digits, Err("field startTime"), "overflowing number"),
            ("0\tfull\t\u{0}\n", Err("startTime"), "NUL byte"),
            ("0\tfull\t1\t\t0\n", Ok(1), "empty end time: a running backup"),
            ("\u{feff}0\tfull\n", Ok(0), "BOM before the number: BackupPC's ^\\d skips it"),
        ];
        for (text, want, why) in rows {
            match (parse(text.as_bytes()), want) {
                (Ok(b), Ok(n)) => assert_eq!(b.len(), *n, "{why}"),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{why}: {e}"),
                (got, _) => panic!("{why}: {got:?}"),
            }
        }
        assert_eq!(parse(b"0\tfull\t1\t\t0\n").unwrap()[0].end_time, None);
        assert!(parse(b"\xff\xfe\t\x00\n0\tincr\n").unwrap().len() == 1, "invalid UTF-8 on another line");
    }

    #[test]
    fn read_refuses_host_names_that_leave_pc() {
        let d = tempfile::tempdir().unwrap();
        for host in ["", ".", "..", "a/b", "../etc"] {
            assert!(matches!(read(d.path(), host), Err(BackupsError::BadHost(_))), "{host:?}");
        }
        assert_eq!(read(d.path(), "nobackups").unwrap(), vec![], "no file: no backups");
        std::fs::create_dir(d.path().join("h")).unwrap();
        std::fs::write(d.path().join("h/backups"), line(0, "full", 0)).unwrap();
        assert_eq!(read(d.path(), "h").unwrap().len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}

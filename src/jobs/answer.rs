//! What a workstation sends back for `run-job NAME`: one uncompressed tar
//! stream on stdout, `status.json` first, then `stdout`, `stderr` and
//! each result file under `results/` and its absolute path on the
//! workstation (`results/var/tmp/inventory/out.txt`). Regular files only,
//! owner and times zeroed.
//!
//! The backup server reads it as hostile input: a workstation may be
//! compromised. [`read`] accepts only what [`write`] makes: regular files
//! with plain relative names (no `..`, no absolute path, no control
//! character), no links, devices or FIFOs, no name twice, bounded in
//! count and size, and a status that parses; anything else refuses the
//! whole answer, before anything is written on the server.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Write};

/// The most bytes of one answer the server reads.
pub const MAX_ANSWER: usize = (super::MAX_DECLARED as usize) + (8 << 20);
/// The most entries of one answer: status, stdout, stderr and results.
pub const MAX_ENTRIES: usize = 10_003;
/// The largest status.json accepted.
pub const MAX_STATUS: u64 = 4 << 20;
/// Longest entry name, and most folders deep.
const MAX_NAME: usize = 4096;
const MAX_DEPTH: usize = 64;

/// A result file as the status lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultFile {
    /// Its absolute path on the workstation.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A declared result that was not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

/// `status.json`: how the job ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub ok: bool,
    /// The job's exit code; None: killed, or never started.
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    /// What went wrong, for a person.
    pub error: Option<String>,
    pub results: Vec<ResultFile>,
    pub skipped: Vec<Skipped>,
}

/// A whole answer, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: JobStatus,
    /// status.json as it came (the server keeps it as sent).
    pub status_bytes: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Each result: its relative name (below `results/`, checked plain)
    /// and its bytes.
    pub results: Vec<(String, Vec<u8>)>,
}

/// Why an answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

fn refuse<T>(s: impl Into<String>) -> Result<T, AnswerError> {
    Err(AnswerError(s.into()))
}

/// The tar name a result file at absolute `path` travels under.
pub fn result_name(path: &str) -> String {
    format!("results/{}", path.trim_start_matches('/'))
}

/// What an entry named `name` of `size` bytes adds to an answer beyond
/// its bytes: its header, a GNU long-name entry when the name does not
/// fit the header's 100 bytes, and the padding to 512 bytes.
pub fn entry_overhead(name: &str, size: u64) -> u64 {
    let pad = |n: u64| n.div_ceil(512) * 512;
    let long = if name.len() >= 100 { 512 + pad(name.len() as u64 + 1) } else { 0 };
    512 + long + (pad(size) - size)
}

/// Whether `name` is one [`read`] accepts: relative, plain components,
/// no control or hidden character, bounded.
pub fn plain_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("an empty or overlong name".into());
    }
    if name.starts_with('/') {
        return Err(format!("an absolute name {}", crate::names::quoted(name)));
    }
    if name.chars().any(|c| c.is_control() || crate::names::is_hidden(c)) {
        return Err(format!("a name with control characters {}", crate::names::quoted(name)));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(format!("a name more than {MAX_DEPTH} folders deep"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.len() > 255) {
        return Err(format!("a name that is not a plain relative path {}", crate::names::quoted(name)));
    }
    Ok(())
}

/// Write an answer: `status`, the job's `stdout` and `stderr`, then each
/// result (absolute path, bytes) in order.
pub fn write<W: Write>(
    out: W,
    status: &JobStatus,
    stdout: &[u8],
    stderr: &[u8],
    results: &[(String, Vec<u8>)],
) -> std::io::Result<W> {
    let mut b = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, data)
    };
    add("status.json", &json)?;
    add("stdout", stdout)?;
    add("stderr", stderr)?;
    for (path, data) in results {
        add(&result_name(path), data)?;
    }
    b.into_inner()
}

/// Read an answer from the bytes a workstation sent, as hostile input
/// (see the module's paragraph). `bytes` is already cut to what the
/// server reads at most.
pub fn read(bytes: &[u8]) -> Result<Answer, AnswerError> {
    if bytes.len() > MAX_ANSWER {
        return refuse(format!("the answer is larger than {MAX_ANSWER} bytes"));
    }
    let mut archive = tar::Archive::new(bytes);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return refuse(format!("the answer is not a tar stream: {e}")),
    };
    let mut status_bytes: Option<Vec<u8>> = None;
    let (mut stdout, mut stderr) = (None, None);
    let mut results: Vec<(String, Vec<u8>)> = Vec::new();
    let mut files: BTreeSet<String> = BTreeSet::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| AnswerError(format!("the answer is not a valid tar stream: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return refuse(format!("the answer has more than {MAX_ENTRIES} entries"));
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw_name)
            .map_err(|_| AnswerError("the answer has an entry whose name is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            let what = match kind {
                tar::EntryType::Symlink => "a symlink",
                tar::EntryType::Link => "a hard link",
                tar::EntryType::Char | tar::EntryType::Block => "a device",
                tar::EntryType::Fifo => "a FIFO",
                tar::EntryType::Directory => "a folder",
                _ => "an entry that is not a regular file",
            };
            return refuse(format!("the answer has {what} ({}): only regular files are accepted", shown(&name)));
        }
        plain_name(&name).map_err(|e| AnswerError(format!("the answer has {e}")))?;
        if entry.link_name_bytes().is_some_and(|l| !l.is_empty()) {
            return refuse(format!("the answer's entry {} names a link target", shown(&name)));
        }
        // The size that counts (a PAX header may set it), checked against
        // what was sent before anything is allocated for it.
        let size = entry.size();
        if size > bytes.len() as u64 {
            return refuse(format!("the answer's entry {} claims more bytes than the answer has", shown(&name)));
        }
        if name == "status.json" && size > MAX_STATUS {
            return refuse(format!("the answer's status.json is larger than {MAX_STATUS} bytes"));
        }
        if files.contains(&name) || dirs.contains(&name) {
            return refuse(format!("the answer has {} twice", shown(&name)));
        }
        let mut prefix = String::new();
        for part in name.split('/').collect::<Vec<_>>().split_last().map(|(_, d)| d).unwrap_or(&[]) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if files.contains(&prefix) {
                return refuse(format!("the answer has {} both as a file and a folder", shown(&prefix)));
            }
            dirs.insert(prefix.clone());
        }
        files.insert(name.clone());
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| AnswerError(format!("cannot read {} of the answer: {e}", shown(&name))))?;
        if data.len() as u64 != size {
            return refuse(format!("the answer's entry {} is cut short", shown(&name)));
        }
        match name.as_str() {
            "status.json" => status_bytes = Some(data),
            "stdout" => stdout = Some(data),
            "stderr" => stderr = Some(data),
            _ => match name.strip_prefix("results/") {
                Some(rel) => results.push((rel.to_string(), data)),
                None => return refuse(format!("the answer has an unexpected entry {}", shown(&name))),
            },
        }
    }
    let Some(status_bytes) = status_bytes else { return refuse("the answer has no status.json") };
    let status: JobStatus = serde_json::from_slice(&status_bytes)
        .map_err(|e| AnswerError(format!("the answer's status.json is not a job status: {e}")))?;
    let listed: BTreeSet<String> = status.results.iter().map(|r| result_name(&r.path)).collect();
    for (rel, data) in &results {
        let name = format!("results/{rel}");
        let declared = status.results.iter().find(|r| result_name(&r.path) == name);
        match declared {
            Some(r) if r.size == data.len() as u64 => {}
            Some(_) => return refuse(format!("the answer's {} has another size than its status says", shown(&name))),
            None => return refuse(format!("the answer's {} is not in its status", shown(&name))),
        }
    }
    if listed.len() != results.len() {
        return refuse("the answer's status lists result files it does not carry");
    }
    Ok(Answer { status, status_bytes, stdout: stdout.unwrap_or_default(), stderr: stderr.unwrap_or_default(), results })
}

fn shown(name: &str) -> String {
    crate::names::quoted(&name.chars().take(200).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(results: &[(&str, usize)]) -> JobStatus {
        JobStatus {
            name: "inv".into(),
            ok: true,
            exit_status: Some(0),
            signal: None,
            timed_out: false,
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:00:01Z".into(),
            error: None,
            results: results
                .iter()
                .map(|(p, n)| ResultFile { path: p.to_string(), size: *n as u64, sha256: String::new() })
                .collect(),
            skipped: vec![],
        }
    }

    #[test]
    fn the_overhead_of_an_entry_is_what_write_adds() {
        let st = status(&[]);
        let len = |results: &[(String, Vec<u8>)]| write(Vec::new(), &st, b"", b"", results).unwrap().len() as u64;
        let none = len(&[]);
        for (path_len, size) in [(2, 0), (2, 1), (90, 512), (92, 513), (300, 5), (4000, 100_000)] {
            let path = format!("/{}", "a".repeat(path_len - 1));
            let name = result_name(&path);
            let added = len(&[(path.clone(), vec![7; size])]) - none;
            assert_eq!(
                added,
                size as u64 + entry_overhead(&name, size as u64),
                "a name of {} bytes, {size} bytes",
                name.len()
            );
        }
    }

    #[test]
    fn what_write_makes_reads_back() {
        let files = vec![("/var/tmp/inv/out.txt".to_string(), b"alice\n".to_vec())];
        let st = status(&[("/var/tmp/inv/out.txt", 6)]);
        let bytes = write(Vec::new(), &st, b"hello\n", b"warn\n", &files).unwrap();
        let a = read(&bytes).unwrap();
        assert_eq!(a.status, st);
        assert_eq!((a.stdout.as_slice(), a.stderr.as_slice()), (&b"hello\n"[..], &b"warn\n"[..]));
        assert_eq!(a.results, [("var/tmp/inv/out.txt".to_string(), b"alice\n".to_vec())]);
        // A long path goes through the GNU long-name extension and back.
        let long = format!("/var/tmp/{}/f", "d".repeat(200));
        let st = status(&[(&long, 1)]);
        let bytes = write(Vec::new(), &st, b"", b"", &[(long.clone(), b"x".to_vec())]).unwrap();
        assert_eq!(read(&bytes).unwrap().results[0].0, long.trim_start_matches('/'));
    }

    /// A raw tar entry with any name, type, size and link target, as a
    /// hostile workstation would write it (no checks on the way).
    fn raw(name: &[u8], kind: tar::EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    /// A PAX extension header (ustar, so that readers apply it).
    fn pax(kind: tar::EntryType, records: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path("PaxHeader").unwrap();
        h.set_entry_type(kind);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(records);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn with_status(mut entries: Vec<u8>, results: &[(&str, usize)]) -> Vec<u8> {
        let json = serde_json::to_vec(&status(results)).unwrap();
        let mut out = raw(b"status.json", tar::EntryType::Regular, &json, b"");
        out.append(&mut entries);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn hostile_answers_are_refused() {
        use tar::EntryType as T;
        let file = |name: &[u8]| raw(name, T::Regular, b"x", b"");
        // (archive, part of the refusal, why)
        let rows: Vec<(Vec<u8>, &str, &str)> = vec![
            (with_status(file(b"results/../../etc/cron.d/x"), &[]), "not a plain relative path", "dot-dot"),
            (with_status(file(b"../x"), &[]), "not a plain relative path", "dot-dot first"),
            (with_status(file(b"/etc/passwd"), &[]), "absolute", "an absolute name"),
            (with_status(file(b"results/./x"), &[]), "not a plain relative path", "a dot component"),
            (with_status(file(b"results//x"), &[]), "not a plain relative path", "an empty component"),
            (with_status(file(b"results/a\nb"), &[]), "control characters", "a newline in a name"),
            (with_status(file(b"results/\xff"), &[]), "not UTF-8", "not UTF-8"),
            (with_status(raw(b"results/l", T::Symlink, b"", b"/etc/shadow"), &[]), "a symlink", "a symlink"),
            (with_status(raw(b"results/h", T::Link, b"", b"status.json"), &[]), "a hard link", "a hard link"),
            (with_status(raw(b"results/d", T::Char, b"", b""), &[]), "a device", "a character device"),
            (with_status(raw(b"results/b", T::Block, b"", b""), &[]), "a device", "a block device"),
            (with_status(raw(b"results/f", T::Fifo, b"", b""), &[]), "a FIFO", "a FIFO"),
            (with_status(raw(b"results/d", T::Directory, b"", b""), &[]), "a folder", "a folder entry"),
            (with_status(raw(b"results/x", T::Regular, b"x", b"/etc"), &[]), "link target", "a file with a link"),
            (with_status(file(b"elsewhere"), &[]), "unexpected entry", "outside results/"),
            (
                with_status([pax(T::XHeader, b"21 path=results/../x\n"), file(b"results/ok")].concat(), &[]),
                "not a plain relative path",
                "a PAX header renaming the next entry out",
            ),
            (
                with_status([pax(T::XGlobalHeader, b"21 path=results/../x\n")].concat(), &[]),
                "not a regular file",
                "a global PAX header",
            ),
            (with_status([file(b"stdout"), file(b"stdout")].concat(), &[]), "twice", "a name twice"),
            (
                with_status([file(b"results/a"), file(b"results/a/b")].concat(), &[("/a", 1), ("/a/b", 1)]),
                "both as a file and a folder",
                "a file under a file",
            ),
            (
                with_status([file(b"results/a/b"), file(b"results/a")].concat(), &[("/a", 1), ("/a/b", 1)]),
                "twice",
                "a folder then a file of its name",
            ),
            (with_status(file(b"results/x"), &[]), "not in its status", "a result the status does not list"),
            (with_status(file(b"results/x"), &[("/x", 9)]), "another size", "a size the status does not say"),
            (with_status(vec![], &[("/x", 1)]), "does not carry", "a listed file that is missing"),
            ([file(b"stdout"), vec![0u8; 1024]].concat(), "no status.json", "no status"),
            (
                [raw(b"status.json", T::Regular, b"{\"name\":1}", b""), vec![0u8; 1024]].concat(),
                "not a job status",
                "a bad status",
            ),
        ];
        for (bytes, part, why) in rows {
            match read(&bytes) {
                Ok(a) => panic!("{why}: accepted {a:?}"),
                Err(e) => assert!(e.0.contains(part), "{why}: {e}"),
            }
        }
    }

    #[test]
    fn oversize_and_broken_streams_are_refused() {
        // A header claiming far more bytes than were sent.
        let mut h = tar::Header::new_gnu();
        h.set_path("stdout").unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1 << 40);
        h.set_cksum();
        let lying = with_status(h.as_bytes().to_vec(), &[]);
        assert!(read(&lying).is_err());
        // Too many entries.
        let many: Vec<u8> = (0..MAX_ENTRIES + 1)
            .flat_map(|i| raw(format!("results/{i}").as_bytes(), tar::EntryType::Regular, b"", b""))
            .collect();
        assert!(read(&with_status(many, &[])).unwrap_err().0.contains("more than"));
        // An oversized status.
        let big =
            [raw(b"status.json", tar::EntryType::Regular, &vec![b' '; MAX_STATUS as usize + 1], b""), vec![0; 1024]]
                .concat();
        assert!(read(&big).unwrap_err().0.contains("larger than"));
        for junk in [&b""[..], b"garbage", &[0xffu8; 700][..]] {
            assert!(read(junk).is_err(), "{junk:?}");
        }
        // Cut in the middle of a file.
        let good = write(Vec::new(), &status(&[]), &[7u8; 5000], b"", &[]).unwrap();
        assert!(read(&good[..2048]).is_err());
    }
}

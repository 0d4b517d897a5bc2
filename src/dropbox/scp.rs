//! scp's legacy protocol (`scp -O`), sink side (`scp -t`): the client
//! sends `C` records (`C0644 SIZE NAME`) each followed by the file's
//! bytes, optionally preceded by a `T` record (times, accepted and not
//! applied: the box keeps its own). The sink answers each step with a
//! zero byte, or `\x01` and a line the client prints and counts as an
//! error. Folders (`D`/`E`, which only `scp -r` sends) are refused.

use super::sftp::{target, Target};
use super::store::{DropBox, Session};
use std::io::{self, BufReader, BufWriter, Read, Write};

/// scp's own bound on a record line.
pub const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    File {
        mode: u32,
        size: u64,
        name: String,
    },
    Times {
        mtime: u64,
        atime: u64,
    },
    /// `D…`: a folder (refused).
    Dir,
    /// `E`: end of a folder (refused: no folder was opened).
    EndDir,
    /// `\x01…`: the client reports an error of its own and goes on.
    Warning(String),
    /// `\x02…`: the client gives up.
    Fatal(String),
}

fn digits(s: &str, max_len: usize) -> Result<u64, String> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number"));
    }
    s.parse().map_err(|_| format!("{s:?} is too large"))
}

/// Parse one record line (without its newline).
pub fn parse_record(line: &[u8]) -> Result<Record, String> {
    let Some((&kind, rest)) = line.split_first() else {
        return Err("an empty record".into());
    };
    match kind {
        1 | 2 => {
            let text = String::from_utf8_lossy(rest).into_owned();
            return Ok(if kind == 1 { Record::Warning(text) } else { Record::Fatal(text) });
        }
        b'D' => return Ok(Record::Dir),
        b'E' if rest.is_empty() => return Ok(Record::EndDir),
        _ => {}
    }
    let rest = std::str::from_utf8(rest).map_err(|_| "a record that is not UTF-8".to_string())?;
    match kind {
        b'C' => {
            let mut f = rest.splitn(3, ' ');
            let (mode, size, name) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next());
            if mode.len() != 4 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(format!("file mode {mode:?} is not four octal digits"));
            }
            let mode = u32::from_str_radix(mode, 8).map_err(|e| e.to_string())?;
            let size = digits(size, 20)?;
            let name = name.ok_or("a file record without a name")?;
            if name.is_empty() || name.contains('/') || name == ".." || name == "." || name.contains('\0') {
                return Err(format!("{name:?} is not a file name"));
            }
            Ok(Record::File { mode, size, name: name.to_string() })
        }
        b'T' => {
            let f: Vec<&str> = rest.split(' ').collect();
            if f.len() != 4 {
                return Err("a times record needs four numbers".into());
            }
            let n: Vec<u64> = f.iter().map(|s| digits(s, 20)).collect::<Result<_, _>>()?;
            if n[1] > 999_999 || n[3] > 999_999 {
                return Err("microseconds past a second".into());
            }
            Ok(Record::Times { mtime: n[0], atime: n[2] })
        }
        other => Err(format!("unknown record type {:?}", other as char)),
    }
}

/// Read one line up to `\n` (not kept); `None` at end of input before
/// any byte.
pub fn read_line(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input ended inside a record")),
            Ok(_) if b[0] == b'\n' => return Ok(Some(line)),
            Ok(_) => {
                if line.len() >= MAX_LINE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a record line longer than scp's"));
                }
                line.push(b[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Serve scp's sink mode for `target` until the client closes its end.
pub fn serve(
    input: impl Read,
    output: impl Write,
    bx: &DropBox,
    session: &Session,
    target_arg: &str,
) -> Result<(), String> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::new(output);
    let io_err = |e: io::Error| format!("scp: {e}");
    let fatal = |w: &mut BufWriter<_>, msg: &str| -> Result<(), String> {
        let _ = w.write_all(format!("\x02scp: {}\n", one_line(msg)).as_bytes());
        let _ = w.flush();
        Err(msg.to_string())
    };
    let arg = target_arg.strip_prefix('~').unwrap_or(target_arg);
    let fixed_name = match target(arg.as_bytes()) {
        Ok(Target::Root) => None,
        Ok(Target::Name(n)) => Some(n),
        Err(e) => return fatal(&mut w, &e.message),
    };
    w.write_all(b"\0").and_then(|_| w.flush()).map_err(io_err)?;
    let mut errors = 0;
    while let Some(line) = read_line(&mut r).map_err(io_err)? {
        let (size, name) = match parse_record(&line) {
            Ok(Record::File { size, name, .. }) => (size, fixed_name.clone().unwrap_or(name)),
            Ok(Record::Times { .. }) => {
                w.write_all(b"\0").and_then(|_| w.flush()).map_err(io_err)?;
                continue;
            }
            Ok(Record::Dir) | Ok(Record::EndDir) => {
                return fatal(&mut w, "folders are not allowed: send one archive at a time");
            }
            Ok(Record::Warning(m)) => {
                bx.audit("client-error", serde_json::json!({ "protocol": "scp", "message": m }));
                errors += 1;
                continue;
            }
            Ok(Record::Fatal(m)) => return Err(format!("the client gave up: {m}")),
            Err(e) => return fatal(&mut w, &format!("protocol error: {e}")),
        };
        let mut upload = match bx.begin(&name) {
            Ok(u) => u,
            Err(e) => {
                bx.audit(
                    "refused",
                    serde_json::json!({ "client": session.client.map(|c| c.to_string()), "protocol": "scp", "name": name, "reason": e.message }),
                );
                w.write_all(format!("\x01scp: {}: {}\n", one_line(&name), one_line(&e.message)).as_bytes())
                    .and_then(|_| w.flush())
                    .map_err(io_err)?;
                errors += 1;
                continue;
            }
        };
        // A size over the limits is known now, but scp sends the bytes
        // once told to go on and reads no reply before the end: they are
        // read and dropped, and the refusal comes after them.
        let early = upload.check_size(size);
        w.write_all(b"\0").and_then(|_| w.flush()).map_err(io_err)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut offset = 0u64;
        let mut failure = early.err();
        while offset < size {
            let n = (size - offset).min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n]).map_err(|e| format!("scp: input ended inside {name}: {e}"))?;
            if failure.is_none() {
                failure = upload.write_at(offset, &buf[..n]).err();
            }
            offset += n as u64;
        }
        // The client's word that it sent the file whole.
        let mut ok = [0u8; 1];
        r.read_exact(&mut ok).map_err(|e| format!("scp: input ended after {name}: {e}"))?;
        if ok[0] != 0 {
            let _ = read_line(&mut r);
            drop(upload);
            errors += 1;
            continue;
        }
        let result = match failure {
            Some(f) => {
                drop(upload);
                Err(f)
            }
            None => upload.finish(session, "scp"),
        };
        match result {
            Ok(_) => w.write_all(b"\0"),
            Err(e) => {
                errors += 1;
                w.write_all(format!("\x01scp: {}: {}\n", one_line(&name), one_line(&e.message)).as_bytes())
            }
        }
        .and_then(|_| w.flush())
        .map_err(io_err)?;
    }
    if errors > 0 {
        return Err(format!("{errors} file(s) not received"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dropbox::config::DropboxConfig;
    use crate::dropbox::verify;
    use crate::log::Audit;
    use std::fs;

    const NAME: &str = "jpro_instance-007-2026-03-01_02h-30-00.tar.gz";

    #[test]
    fn records() {
        let file = |size, name: &str| Some(Record::File { mode: 0o644, size, name: name.into() });
        let rows: Vec<(Vec<u8>, Option<Record>, &str)> = vec![
            (b"C0644 10 a.tar.gz".to_vec(), file(10, "a.tar.gz"), "file"),
            (b"C0644 0 a b".to_vec(), file(0, "a b"), "space in name"),
            (b"C0644 18446744073709551615 a".to_vec(), file(u64::MAX, "a"), "largest size"),
            (b"C0644 18446744073709551616 a".to_vec(), None, "size overflows"),
            (b"C0644 -1 a".to_vec(), None, "negative size"),
            (b"C0644 +1 a".to_vec(), None, "signed size"),
            (b"C0644 1".to_vec(), None, "no name"),
            (b"C0644 1 ".to_vec(), None, "empty name"),
            (b"C0644 1 ../a".to_vec(), None, "traversal"),
            (b"C0644 1 /etc/passwd".to_vec(), None, "absolute"),
            (b"C0644 1 ..".to_vec(), None, "dot-dot"),
            (b"C0644 1 a\0b".to_vec(), None, "NUL"),
            (b"C644 1 a".to_vec(), None, "three-digit mode"),
            (b"C0648 1 a".to_vec(), None, "not octal"),
            (b"C0644  1 a".to_vec(), None, "double space"),
            (
                b"T1700000000 0 1700000000 0".to_vec(),
                Some(Record::Times { mtime: 1_700_000_000, atime: 1_700_000_000 }),
                "times",
            ),
            (b"T1 1000000 1 0".to_vec(), None, "a million microseconds"),
            (b"T1 0 1".to_vec(), None, "three numbers"),
            (b"D0755 0 dir".to_vec(), Some(Record::Dir), "folder"),
            (b"E".to_vec(), Some(Record::EndDir), "end of folder"),
            (b"\x01scp: x: No such file".to_vec(), Some(Record::Warning("scp: x: No such file".into())), "warning"),
            (b"\x02boom".to_vec(), Some(Record::Fatal("boom".into())), "fatal"),
            (b"X1".to_vec(), None, "unknown type"),
            (vec![b'C', 0xff], None, "not UTF-8"),
            (vec![], None, "empty"),
        ];
        for (line, want, why) in rows {
            assert_eq!(parse_record(&line).ok(), want, "{why}");
        }
        let long = vec![b'C'; MAX_LINE + 10];
        assert!(read_line(&mut &long[..]).is_err(), "over-long line");
        assert!(read_line(&mut &b"C0644"[..]).is_err(), "end inside a line");
        assert_eq!(read_line(&mut &b""[..]).unwrap(), None);
    }

    fn new_box(dir: &std::path::Path) -> DropBox {
        for d in [".incoming", ".quarantine", ".receipts"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let cfg =
            DropboxConfig::parse(&format!("user = \"j\"\nfolder = {dir:?}\nkeep_free = 0\nmax_file_size = 100000\n"))
                .unwrap();
        DropBox::open(cfg, Audit::new(c"dropbox-test", None)).unwrap()
    }

    #[test]
    fn sink() {
        let t = tempfile::tempdir().unwrap();
        let bx = new_box(t.path());
        let s = Session::default();
        let data = verify::tests::tar_gz(2000);
        let mut input = b"T1700000000 0 1700000000 0\n".to_vec();
        input.extend(format!("C0644 {} {NAME}\n", data.len()).as_bytes());
        input.extend(&data);
        input.push(0);
        let mut out = Vec::new();
        serve(&input[..], &mut out, &bx, &s, ".").unwrap();
        assert_eq!(out, vec![0, 0, 0, 0], "start, T, C, done");
        assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data);
        // Again: refused with a message, the data never asked for.
        let mut out = Vec::new();
        let again = format!("C0644 {} {NAME}\n", data.len());
        assert!(serve(again.as_bytes(), &mut out, &bx, &s, ".").is_err());
        assert!(out.starts_with(b"\0\x01scp: ") && String::from_utf8_lossy(&out).contains("already"));
        // Too large: the bytes are read, then refused.
        let n2 = "jpro_instance-008-2026-03-01_02h-30-00.tar.gz";
        let mut input = format!("C0644 200000 {n2}\n").into_bytes();
        input.extend(vec![0u8; 200_000]);
        input.push(0);
        let mut out = Vec::new();
        assert!(serve(&input[..], &mut out, &bx, &s, ".").is_err());
        assert!(out.starts_with(b"\0\0\x01scp: "), "{out:?}");
        assert!(!t.path().join(n2).exists());
        // Not an archive: quarantined, the client told.
        let mut input = format!("C0644 5 {n2}\nhello").into_bytes();
        input.push(0);
        let mut out = Vec::new();
        assert!(serve(&input[..], &mut out, &bx, &s, ".").is_err());
        assert!(String::from_utf8_lossy(&out).contains("quarantine"));
        // Cut in the middle: nothing under the name, no temporary left.
        let mut input = format!("C0644 {} {n2}\n", data.len()).into_bytes();
        input.extend(&data[..100]);
        assert!(serve(&input[..], &mut Vec::new(), &bx, &s, ".").is_err());
        assert!(!t.path().join(n2).exists());
        assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0);
        // Folders, bad targets, protocol errors: fatal.
        for (input, target) in [("D0755 0 d\n", "."), ("C0644 1 ../x\n", "."), ("", "../.."), ("", "/etc/x")] {
            let mut out = Vec::new();
            assert!(serve(input.as_bytes(), &mut out, &bx, &s, target).is_err(), "{input:?} {target:?}");
            assert!(out.windows(1).any(|b| b == b"\x02"), "fatal reply for {input:?} {target:?}");
        }
        // A target naming the file: the record's name is not used.
        let n3 = "jpro_instance-009-2026-03-01_02h-30-00.tar.gz";
        let mut input = format!("C0644 {} whatever\n", data.len()).into_bytes();
        input.extend(&data);
        input.push(0);
        serve(&input[..], &mut Vec::new(), &bx, &s, n3).unwrap();
        assert!(t.path().join(n3).exists() && !t.path().join("whatever").exists());
    }
}

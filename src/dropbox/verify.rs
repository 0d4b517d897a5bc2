//! What makes an upload an archive worth keeping: its gzip stream and the
//! tar inside read to the end (every header, every member's data, the
//! gzip CRC and length), and, when the vendor sends one, the SHA-256 of
//! its `NAME.sha256` sidecar. Reads from any reader; never trusts a size
//! the archive declares beyond what it actually holds.

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// What a verified archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub sha256: String,
    pub members: u64,
}

/// A reader that hashes and counts every byte read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 and size of everything `r` holds.
pub fn sha256_of(r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Hashing { inner: r, hash: Sha256::new(), size: 0 };
    io::copy(&mut h, &mut io::sink())?;
    Ok((hex(&h.hash.finalize()), h.size))
}

/// Read `r` as a `.tar.gz` to its end. The error says what is wrong, for
/// the vendor and the log.
pub fn archive(r: impl Read) -> Result<Verified, String> {
    // Hashed below the buffer, so every byte of the file counts; the
    // gzip decoder reads from the buffer and takes only its own stream's
    // bytes, so what follows that stream is still there to be seen.
    let mut buffered = io::BufReader::with_capacity(1 << 20, Hashing { inner: r, hash: Sha256::new(), size: 0 });
    let members = {
        let gz = flate2::bufread::GzDecoder::new(&mut buffered);
        let mut tar = tar::Archive::new(gz);
        let mut members = 0u64;
        let entries = tar.entries().map_err(|e| format!("not a tar.gz archive: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("damaged tar.gz archive (after {members} members): {e}"))?;
            let declared = entry.size();
            let read = io::copy(&mut entry, &mut io::sink())
                .map_err(|e| format!("damaged tar.gz archive (member {}): {e}", members + 1))?;
            if read != declared {
                return Err(format!(
                    "truncated tar.gz archive: member {} holds {read} of its {declared} bytes",
                    members + 1
                ));
            }
            members += 1;
        }
        // The tar ends at its zero blocks; what the gzip stream holds
        // after them may only be more zeros (the record padding), and the
        // stream must still end where it says (CRC and length checked by
        // the decoder).
        let mut gz = tar.into_inner();
        let mut after = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = gz.read(&mut buf).map_err(|e| format!("damaged gzip stream: {e}"))?;
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(format!(
                    "data after the end of the tar archive (a non-zero byte {} bytes after its end blocks)",
                    after + i as u64
                ));
            }
            after += n as u64;
        }
        members
    };
    if members == 0 {
        return Err("the archive holds no file".into());
    }
    // Nothing may follow the gzip stream (another member, appended data).
    let trailing = io::copy(&mut buffered, &mut io::sink()).map_err(|e| format!("cannot read the upload: {e}"))?;
    if trailing > 0 {
        return Err(format!("{trailing} bytes after the end of the gzip stream"));
    }
    let hashing = buffered.into_inner();
    Ok(Verified { size: hashing.size, sha256: hex(&hashing.hash.finalize()), members })
}

/// Verification while the upload arrives: bytes written in order are
/// handed to a thread that reads them as [`archive`] reads a file, on the
/// other core, so closing a large upload does not wait for a second pass.
/// The channel is bounded (memory stays a few MiB whatever the size). A
/// client that writes out of order gets its file read back at close
/// instead.
pub struct Streaming {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Result<Verified, String>>>,
    /// The next offset expected in order.
    pub next: u64,
}

struct Chunks {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Streaming {
    pub fn start() -> Option<Streaming> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let thread = std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || archive(Chunks { rx, cur: Vec::new(), pos: 0 }))
            .ok()?;
        Some(Streaming { tx: Some(tx), thread: Some(thread), next: 0 })
    }

    /// Feed bytes at `offset`; `false` when they are not the next ones in
    /// order (or the verifier is gone): the stream is then useless.
    pub fn feed(&mut self, offset: u64, data: &[u8]) -> bool {
        if offset != self.next {
            return false;
        }
        match &self.tx {
            Some(tx) if tx.send(data.to_vec()).is_ok() => {
                self.next += data.len() as u64;
                true
            }
            _ => false,
        }
    }

    /// The verdict on everything fed, once the input has ended.
    pub fn finish(mut self) -> Result<Verified, String> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err("the verifier stopped".into()),
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // Ends the verifier: its reader sees the end of input.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The digest a `NAME.sha256` sidecar states for `archive_name`: the
/// format `sha256sum` writes (`HEX  NAME` or `HEX *NAME`, one line), or
/// the bare 64 hex digits. Lower-cased.
pub fn sidecar_digest(text: &[u8], archive_name: &str) -> Result<String, String> {
    if text.len() > 4096 {
        return Err("the sidecar is longer than one sha256sum line".into());
    }
    let text = std::str::from_utf8(text).map_err(|_| "the sidecar is not text".to_string())?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains(['\n', '\r', '\0']) {
        return Err("the sidecar must hold one line".into());
    }
    let (digest, rest) = match line.split_once(' ') {
        Some((d, r)) => (d, Some(r)),
        None => (line, None),
    };
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the sidecar does not start with a SHA-256 in hex (64 digits)".into());
    }
    if let Some(rest) = rest {
        let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*')).unwrap_or(rest);
        let name = name.strip_prefix(['*', ' ']).unwrap_or(name);
        if name != archive_name && name.rsplit('/').next() != Some(archive_name) {
            return Err(format!("the sidecar is for {name:?}, not {archive_name:?}"));
        }
    }
    Ok(digest.to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A `.tar.gz` holding one member of `len` bytes.
    pub fn tar_gz(len: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(len as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "data/file.bin", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    /// A tar (uncompressed) holding one member with `data`.
    fn tar_of(data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", data).unwrap();
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn archives() {
        let good = tar_gz(100_000);
        let v = archive(&good[..]).unwrap();
        assert_eq!((v.size, v.members), (good.len() as u64, 1));
        assert_eq!(v.sha256, sha256_of(&good[..]).unwrap().0);
        // A tar cut inside its member, then compressed whole: the gzip is
        // fine, the tar is not.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(10_000);
        h.set_cksum();
        b.append_data(&mut h, "f", &vec![1u8; 10_000][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let rows: Vec<(Vec<u8>, &str)> = vec![
            (b"not an archive at all".to_vec(), "not gzip"),
            (Vec::new(), "empty"),
            (good[..good.len() / 2].to_vec(), "truncated in the middle"),
            (good[..good.len() - 4].to_vec(), "gzip length trailer missing"),
            (
                {
                    let mut g = good.clone();
                    let n = g.len();
                    g[n - 6] ^= 0xff;
                    g
                },
                "CRC wrong",
            ),
            (gz(b"plain text, compressed"), "gzip of no tar"),
            ([good.clone(), b"appended".to_vec()].concat(), "bytes after the gzip stream"),
            ([good.clone(), vec![0u8; 512]].concat(), "zeros after the gzip stream"),
            ([good.clone(), good.clone()].concat(), "a second gzip member"),
            (gz(&[tar_of(&[7u8; 100]), b"hidden payload".to_vec()].concat()), "data after the tar's end blocks"),
            (gz(&[tar_of(&[7u8; 100]), vec![0u8; 4096], vec![1]].concat()), "non-zero after zero padding"),
            (gz(&tar[..600]), "tar member cut short"),
            (gz(&[0u8; 1024]), "tar with no member"),
        ];
        for (data, why) in rows {
            assert!(archive(&data[..]).is_err(), "{why} must fail verification");
        }
        // Zero padding after the end blocks (tar's 10 KiB records) is fine.
        let padded = gz(&[tar_of(&[7u8; 100]), vec![0u8; 20_480]].concat());
        assert_eq!(archive(&padded[..]).unwrap().members, 1, "zero padding inside the gzip stream");
    }

    #[test]
    fn gnu_tar_archive() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), vec![3u8; 5000]).unwrap();
        let out = std::process::Command::new("tar").arg("-C").arg(t.path()).args(["-czf", "-", "f"]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(archive(&out.stdout[..]).unwrap().members, 1, "GNU tar's record padding is accepted");
    }

    #[test]
    fn streaming_agrees_with_reading_back() {
        let good = tar_gz(300_000);
        let mut s = Streaming::start().unwrap();
        for (i, c) in good.chunks(7000).enumerate() {
            assert!(s.feed((i * 7000) as u64, c));
        }
        assert_eq!(s.finish(), archive(&good[..]));
        let mut s = Streaming::start().unwrap();
        assert!(s.feed(0, &good[..100]));
        assert!(!s.feed(50, &good[50..100]), "out of order");
        let mut s = Streaming::start().unwrap();
        assert!(s.feed(0, &good[..good.len() / 2]));
        assert!(s.finish().is_err(), "a truncated stream fails");
    }

    #[test]
    fn sidecars() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let n = "jpro_instance-001-2026-01-01_00h-00-00.tar.gz";
        let up = d.to_uppercase();
        let rows: Vec<(String, Option<&str>, &str)> = vec![
            (format!("{d}  {n}\n"), Some(d), "sha256sum text mode"),
            (format!("{d} *{n}\n"), Some(d), "sha256sum binary mode"),
            (format!("{d}\n"), Some(d), "bare digest"),
            (d.to_string(), Some(d), "bare, no newline"),
            (format!("{up}  {n}"), Some(d), "upper-case hex"),
            (format!("{d}  /tmp/build/{n}\n"), Some(d), "path of the vendor's build folder"),
            (format!("{d}  other.tar.gz\n"), None, "another file's digest"),
            (format!("{}  {n}\n", &d[..63]), None, "63 digits"),
            (format!("{}g  {n}\n", &d[..63]), None, "not hex"),
            (format!("{d}  {n}\n{d}  {n}\n"), None, "two lines"),
            (format!("{d}\0  {n}"), None, "NUL"),
            ("x".repeat(5000), None, "huge"),
            (String::new(), None, "empty"),
        ];
        for (text, want, why) in rows {
            assert_eq!(sidecar_digest(text.as_bytes(), n).ok().as_deref(), want, "{why}");
        }
        assert!(sidecar_digest(&[0xff, 0xfe], n).is_err(), "not UTF-8");
    }
}

//! The SFTP subset, driven packet by packet as a client would, and the
//! parser against hostile packets.

use super::*;
use crate::dropbox::config::DropboxConfig;
use crate::dropbox::verify;
use crate::log::Audit;
use std::fs;

const NAME: &str = "jpro_instance-007-2026-03-01_02h-30-00.tar.gz";

/// A client-side packet builder.
struct P(Vec<u8>);
impl P {
    fn new(kind: u8, id: u32) -> P {
        let mut p = P(vec![kind]);
        p.0.extend_from_slice(&id.to_be_bytes());
        p
    }
    fn u32(mut self, n: u32) -> P {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn u64(mut self, n: u64) -> P {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn s(self, b: &[u8]) -> P {
        let mut p = self.u32(b.len() as u32);
        p.0.extend_from_slice(b);
        p
    }
}

fn open(id: u32, path: &[u8], flags: u32) -> Vec<u8> {
    P::new(fxp::OPEN, id).s(path).u32(flags).u32(0).0
}

/// (type, id, status code if STATUS, rest)
fn decode(reply: &[u8]) -> (u8, u32, Option<u32>, Vec<u8>) {
    let n = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(n, reply.len() - 4, "length prefix");
    let kind = reply[4];
    let id = u32::from_be_bytes(reply[5..9].try_into().unwrap());
    let code = (kind == fxp::STATUS).then(|| u32::from_be_bytes(reply[9..13].try_into().unwrap()));
    (kind, id, code, reply[9..].to_vec())
}

fn new_box(dir: &std::path::Path, extra: &str) -> DropBox {
    for d in [".incoming", ".quarantine", ".receipts"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let cfg = DropboxConfig::parse(&format!("user = \"jpro\"\nfolder = {dir:?}\nkeep_free = 0\n{extra}")).unwrap();
    DropBox::open(cfg, Audit::new(c"dropbox-test", None)).unwrap()
}

fn started<'b>(bx: &'b DropBox, s: &'b Session) -> Server<'b> {
    let mut srv = Server::new(bx, s);
    let v = srv.reply(parse(&[fxp::INIT, 0, 0, 0, 3]).unwrap()).unwrap();
    assert_eq!(v[4], fxp::VERSION);
    srv
}

fn ask(srv: &mut Server<'_>, pkt: &[u8]) -> (u8, u32, Option<u32>, Vec<u8>) {
    decode(&srv.reply(parse(pkt).unwrap()).unwrap())
}

fn handle_of(r: &(u8, u32, Option<u32>, Vec<u8>)) -> Vec<u8> {
    assert_eq!(r.0, fxp::HANDLE, "expected a handle, got {r:?}");
    r.3[4..8].to_vec()
}

#[test]
fn openssh_scp_upload_sequence() {
    let t = tempfile::tempdir().unwrap();
    let bx = new_box(t.path(), "");
    let s = Session::default();
    let mut srv = started(&bx, &s);
    let data = verify::tests::tar_gz(300_000);
    // scp: stat "." must be a folder.
    let st = ask(&mut srv, &P::new(fxp::STAT, 1).s(b".").0);
    assert_eq!(st.0, fxp::ATTRS);
    let perms = u32::from_be_bytes(st.3[12..16].try_into().unwrap());
    assert_eq!(perms & 0o170000, 0o040000, "a folder");
    // open ./NAME WRITE|CREAT, no TRUNC: a new file is fine.
    let h = handle_of(&ask(&mut srv, &open(2, format!("./{NAME}").as_bytes(), pflag::WRITE | pflag::CREAT)));
    // Pipelined writes, answered in order; the last chunk first.
    let chunk = 100_000;
    for (id, off) in (10..).zip((0..data.len()).step_by(chunk).rev()) {
        let end = (off + chunk).min(data.len());
        let r = ask(&mut srv, &P::new(fxp::WRITE, id).s(&h).u64(off as u64).s(&data[off..end]).0);
        assert_eq!((r.1, r.2), (id, Some(fx::OK)));
    }
    // fsetstat with the size, then close.
    let r = ask(&mut srv, &P::new(fxp::FSETSTAT, 50).s(&h).u32(ATTR_SIZE).u64(data.len() as u64).0);
    assert_eq!(r.2, Some(fx::OK));
    assert_eq!(ask(&mut srv, &P::new(fxp::CLOSE, 51).s(&h).0).2, Some(fx::OK));
    assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data);
    // paramiko's stat after close sees the size.
    let st = ask(&mut srv, &P::new(fxp::STAT, 52).s(format!("/{NAME}").as_bytes()).0);
    assert_eq!(u64::from_be_bytes(st.3[4..12].try_into().unwrap()), data.len() as u64);
    // Again under the same name: refused, the stored file unchanged.
    let r = ask(&mut srv, &open(53, NAME.as_bytes(), pflag::WRITE | pflag::CREAT | pflag::TRUNC));
    assert_eq!(r.2, Some(fx::FAILURE));
    assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data);
}

#[test]
fn refusals() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("secret.tar.gz"), b"other customer's").unwrap();
    let bx = new_box(t.path(), "");
    let s = Session::default();
    let mut srv = started(&bx, &s);
    let w = pflag::WRITE | pflag::CREAT | pflag::TRUNC;
    let rows: Vec<(Vec<u8>, u32, &str)> = vec![
        (open(1, NAME.as_bytes(), pflag::READ), fx::PERMISSION_DENIED, "open for reading"),
        (open(1, b"secret.tar.gz", pflag::READ), fx::PERMISSION_DENIED, "read another file"),
        (open(1, NAME.as_bytes(), pflag::WRITE | pflag::APPEND), fx::PERMISSION_DENIED, "append"),
        (open(1, b"../etc/passwd", w), fx::PERMISSION_DENIED, "traversal"),
        (open(1, format!("../{NAME}").as_bytes(), w), fx::PERMISSION_DENIED, "traversal with a good name"),
        (open(1, format!("/etc/{NAME}").as_bytes(), w), fx::NO_SUCH_FILE, "absolute path elsewhere"),
        (open(1, format!("{NAME}\0x").as_bytes(), w), fx::PERMISSION_DENIED, "NUL in name"),
        (open(1, format!("{NAME}\n").as_bytes(), w), fx::PERMISSION_DENIED, "newline in name"),
        (open(1, b"evil.sh", w), fx::PERMISSION_DENIED, "name outside the pattern"),
        (open(1, &[0xff, 0xfe], w), fx::PERMISSION_DENIED, "not UTF-8"),
        (open(1, b".", w), fx::FAILURE, "the box itself"),
        (open(1, NAME.as_bytes(), pflag::CREAT), fx::PERMISSION_DENIED, "no WRITE flag"),
        (open(1, NAME.as_bytes(), pflag::WRITE), fx::NO_SUCH_FILE, "no CREAT for a new file"),
        (P::new(fxp::STAT, 1).s(b"secret.tar.gz").0, fx::NO_SUCH_FILE, "stat another file"),
        (P::new(fxp::OPENDIR, 1).s(b"/etc").0, fx::NO_SUCH_FILE, "list elsewhere"),
        (P::new(fxp::OPENDIR, 1).s(b"..").0, fx::PERMISSION_DENIED, "list the parent"),
        (P::new(fxp::REMOVE, 1).s(b"secret.tar.gz").0, fx::PERMISSION_DENIED, "remove"),
        (P::new(fxp::RENAME, 1).s(b"a").s(b"b").0, fx::PERMISSION_DENIED, "rename"),
        (P::new(fxp::MKDIR, 1).s(b"d").u32(0).0, fx::PERMISSION_DENIED, "mkdir"),
        (P::new(fxp::RMDIR, 1).s(b"d").0, fx::PERMISSION_DENIED, "rmdir"),
        (P::new(fxp::SYMLINK, 1).s(b"/etc/passwd").s(NAME.as_bytes()).0, fx::PERMISSION_DENIED, "symlink"),
        (P::new(fxp::READLINK, 1).s(b"x").0, fx::PERMISSION_DENIED, "readlink"),
        (P::new(fxp::READ, 1).s(&[0, 0, 0, 1]).u64(0).u32(10).0, fx::PERMISSION_DENIED, "read"),
        (
            P::new(fxp::SETSTAT, 1).s(b"secret.tar.gz").u32(ATTR_PERMISSIONS).u32(0o777).0,
            fx::NO_SUCH_FILE,
            "chmod another",
        ),
        (P::new(fxp::WRITE, 1).s(&[9, 9, 9, 9]).u64(0).s(b"x").0, fx::FAILURE, "write to no handle"),
        (P::new(fxp::CLOSE, 1).s(b"toolonghandle").0, fx::FAILURE, "close no handle"),
        (P::new(fxp::EXTENDED, 1).s(b"posix-rename@openssh.com").s(b"a").s(b"b").0, fx::OP_UNSUPPORTED, "posix-rename"),
        (P::new(fxp::EXTENDED, 1).s(b"hardlink@openssh.com").s(b"a").s(b"b").0, fx::OP_UNSUPPORTED, "hardlink"),
        (P::new(99, 1).0, fx::OP_UNSUPPORTED, "unknown type"),
    ];
    for (pkt, code, why) in rows {
        let r = ask(&mut srv, &pkt);
        assert_eq!(r.2, Some(code), "{why}: {r:?}");
    }
    assert_eq!(fs::read(t.path().join("secret.tar.gz")).unwrap(), b"other customer's");
    let names: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 4, "nothing new in the box: {names:?}");
    // The listing of the box is empty, and ends.
    let h = handle_of(&ask(&mut srv, &P::new(fxp::OPENDIR, 2).s(b"/").0));
    assert_eq!(ask(&mut srv, &P::new(fxp::READDIR, 3).s(&h).0).2, Some(fx::EOF));
    // realpath "." is a fixed path; of a name, beside it.
    let r = ask(&mut srv, &P::new(fxp::REALPATH, 4).s(b".").0);
    assert_eq!((r.0, &r.3[8..9]), (fxp::NAME, &b"/"[..]));
    let r = ask(&mut srv, &P::new(fxp::REALPATH, 5).s(b"/../..").0);
    assert_eq!(r.2, Some(fx::PERMISSION_DENIED));
    // statvfs answers the room left.
    let r = ask(&mut srv, &P::new(fxp::EXTENDED, 6).s(b"statvfs@openssh.com").s(b".").0);
    assert_eq!((r.0, r.3.len()), (fxp::EXTENDED_REPLY, 88));
    let r = ask(&mut srv, &P::new(fxp::EXTENDED, 7).s(b"limits@openssh.com").0);
    assert_eq!(u64::from_be_bytes(r.3[0..8].try_into().unwrap()), MAX_PACKET as u64);
}

#[test]
fn session_rules() {
    let t = tempfile::tempdir().unwrap();
    let bx = new_box(t.path(), "max_file_size = 1000\n");
    let s = Session::default();
    let mut srv = Server::new(&bx, &s);
    assert!(srv.reply(parse(&open(1, NAME.as_bytes(), 0x1a)).unwrap()).is_err(), "no INIT first");
    let mut srv = started(&bx, &s);
    assert!(srv.reply(parse(&[fxp::INIT, 0, 0, 0, 3]).unwrap()).is_err(), "second INIT");
    let mut srv = started(&bx, &s);
    let w = pflag::WRITE | pflag::CREAT;
    let h = handle_of(&ask(&mut srv, &open(1, NAME.as_bytes(), w)));
    let rows: Vec<(Vec<u8>, u32, &str)> = vec![
        (P::new(fxp::WRITE, 2).s(&h).u64(u64::MAX).s(b"xx").0, fx::FAILURE, "offset overflows"),
        (P::new(fxp::WRITE, 3).s(&h).u64(1 << 63).s(b"x").0, fx::FAILURE, "offset negative as i64"),
        (P::new(fxp::WRITE, 4).s(&h).u64(0).s(b"x").0, fx::FAILURE, "upload stays failed"),
    ];
    for (pkt, code, why) in rows {
        assert_eq!(ask(&mut srv, &pkt).2, Some(code), "{why}");
    }
    assert_eq!(ask(&mut srv, &P::new(fxp::CLOSE, 5).s(&h).0).2, Some(fx::FAILURE), "close reports it");
    assert!(!t.path().join(NAME).exists());
    // At most MAX_HANDLES open; a dropped session removes them all.
    for i in 0..MAX_HANDLES as u32 {
        assert_eq!(ask(&mut srv, &P::new(fxp::OPENDIR, 10 + i).s(b".").0).0, fxp::HANDLE);
    }
    assert_eq!(ask(&mut srv, &open(40, NAME.as_bytes(), w)).2, Some(fx::FAILURE), "too many handles");
    drop(srv);
    let mut srv = started(&bx, &s);
    let _h = handle_of(&ask(&mut srv, &open(1, NAME.as_bytes(), w)));
    assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 1);
    drop(srv);
    assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0, "dropped: temp removed");
    assert!(!t.path().join(NAME).exists());
}

#[test]
fn parser_on_hostile_packets() {
    let rows: Vec<(Vec<u8>, bool, &str)> = vec![
        (vec![], false, "empty"),
        (vec![fxp::INIT], false, "INIT without version"),
        (vec![fxp::OPEN, 0, 0], false, "short id"),
        (P::new(fxp::OPEN, 1).u32(0xffff_ffff).0, false, "path length past the end"),
        (P::new(fxp::OPEN, 1).u32(5).0, false, "path length with no bytes"),
        (P::new(fxp::OPEN, 1).s(b"a").0, false, "no pflags"),
        (P::new(fxp::OPEN, 1).s(b"a").u32(2).0, false, "no attrs"),
        (P::new(fxp::OPEN, 1).s(b"a").u32(2).u32(ATTR_SIZE).u32(1).0, false, "attr size cut"),
        (P::new(fxp::OPEN, 1).s(b"a").u32(2).u32(ATTR_EXTENDED).u32(0xffff_ffff).0, false, "huge extended count"),
        (P::new(fxp::OPEN, 1).s(b"a").u32(2).u32(ATTR_EXTENDED).u32(1).s(b"k").s(b"v").0, true, "one extended pair"),
        (P::new(fxp::WRITE, 1).s(b"hhhh").u64(0).u32(1_000_000).0, false, "data length past the end"),
        (P::new(fxp::WRITE, 1).s(b"hhhh").u64(0).0, false, "no data"),
        (P::new(fxp::READ, 1).s(b"hhhh").u64(0).0, false, "read without length"),
        (P::new(fxp::FSETSTAT, 1).s(b"hhhh").u32(0xffff_ffff).0, false, "all attr flags, no values"),
        (P::new(fxp::EXTENDED, 1).0, false, "extended without name"),
        (P::new(fxp::EXTENDED, 1).s(b"x").0, true, "extended with name"),
        (P::new(250, 1).0, true, "unknown type with id"),
        (vec![250, 0], false, "unknown type, no id"),
        (P::new(fxp::STAT, 1).s(b".").s(b"trailing").0, true, "trailing bytes ignored"),
    ];
    for (pkt, ok, why) in rows {
        assert_eq!(parse(&pkt).is_ok(), ok, "{why}: {:?}", parse(&pkt));
    }
}

#[test]
fn framing() {
    let mut buf = Vec::new();
    let rows: Vec<(Vec<u8>, Option<bool>, &str)> = vec![
        (vec![], Some(false), "clean end"),
        (vec![0, 0], None, "end inside the length"),
        (vec![0, 0, 0, 0], None, "zero length"),
        (vec![0xff, 0xff, 0xff, 0xff], None, "4 GiB"),
        (((MAX_PACKET + 1) as u32).to_be_bytes().to_vec(), None, "one over the limit"),
        (vec![0, 0, 0, 5, 1, 0], None, "end inside the packet"),
        (vec![0, 0, 0, 5, 1, 0, 0, 0, 3], Some(true), "INIT"),
    ];
    for (input, want, why) in rows {
        assert_eq!(read_packet(&mut &input[..], &mut buf).ok(), want, "{why}");
    }
}

#[test]
fn targets() {
    let rows: &[(&[u8], Option<Target>, &str)] = &[
        (b".", Some(Target::Root), "dot"),
        (b"", Some(Target::Root), "empty"),
        (b"/", Some(Target::Root), "slash"),
        (b"/./", Some(Target::Root), "slash dot"),
        (b"a", Some(Target::Name("a".into())), "plain"),
        (b"./a", Some(Target::Name("a".into())), "dot slash"),
        (b"//a/", Some(Target::Name("a".into())), "slashes"),
        (b"../a", None, "parent"),
        (b"a/..", None, "parent after"),
        (b"a/b", None, "deeper"),
        (b"/etc/passwd", None, "absolute elsewhere"),
        (b"a\0b", None, "NUL"),
        (&[0xc3, 0x28], None, "bad UTF-8"),
    ];
    for (path, want, why) in rows {
        assert_eq!(target(path).ok(), *want, "{why}");
    }
}

#[test]
fn serve_end_to_end_and_dropped() {
    let t = tempfile::tempdir().unwrap();
    let bx = new_box(t.path(), "");
    let s = Session::default();
    let data = verify::tests::tar_gz(5000);
    let frame = |p: Vec<u8>| {
        let mut v = (p.len() as u32).to_be_bytes().to_vec();
        v.extend(p);
        v
    };
    let mut input = frame(vec![fxp::INIT, 0, 0, 0, 3]);
    input.extend(frame(open(1, NAME.as_bytes(), pflag::WRITE | pflag::CREAT | pflag::TRUNC)));
    input.extend(frame(P::new(fxp::WRITE, 2).s(&1u32.to_be_bytes()).u64(0).s(&data).0));
    input.extend(frame(P::new(fxp::CLOSE, 3).s(&1u32.to_be_bytes()).0));
    let mut out = Vec::new();
    serve(&input[..], &mut out, &bx, &s).unwrap();
    assert_eq!(fs::read(t.path().join(NAME)).unwrap(), data);
    // The same without the close, cut in the middle of the write.
    let n2 = "jpro_instance-008-2026-03-01_02h-30-00.tar.gz";
    let mut input = frame(vec![fxp::INIT, 0, 0, 0, 3]);
    input.extend(frame(open(1, n2.as_bytes(), pflag::WRITE | pflag::CREAT)));
    let w = frame(P::new(fxp::WRITE, 2).s(&1u32.to_be_bytes()).u64(0).s(&data).0);
    input.extend(&w[..w.len() / 2]);
    assert!(serve(&input[..], &mut Vec::new(), &bx, &s).is_err());
    assert!(!t.path().join(n2).exists());
    assert_eq!(fs::read_dir(t.path().join(".incoming")).unwrap().count(), 0);
}

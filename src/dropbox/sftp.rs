//! The SFTP version 3 subset the drop box serves (draft-ietf-secsh-
//! filexfer-02, as OpenSSH's `sftp-server` speaks it): enough for
//! OpenSSH's `scp` and `sftp`, paramiko and JSch to upload a new file, and
//! nothing more. Every packet is parsed into a typed [`Request`] with its
//! lengths checked against what the packet holds; every client path is
//! reduced to the box itself or one file name ([`Target`]) before it
//! reaches [`DropBox`]. What is not an upload (read, remove, rename,
//! mkdir, symlink, listing other files) is answered with the status
//! OpenSSH's server would give a file it may not touch.

use super::store::{DropBox, Refusal, RefusalKind, Session, Upload};
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};

/// The largest packet accepted, as OpenSSH's `sftp-server`.
pub const MAX_PACKET: usize = 256 * 1024;
/// The largest write the `limits@openssh.com` answer invites.
pub const MAX_WRITE: u64 = (MAX_PACKET - 1024) as u64;
const MAX_HANDLES: usize = 16;

mod fxp {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

/// SFTP status codes.
pub mod fx {
    pub const OK: u32 = 0;
    pub const EOF: u32 = 1;
    pub const NO_SUCH_FILE: u32 = 2;
    pub const PERMISSION_DENIED: u32 = 3;
    pub const FAILURE: u32 = 4;
    pub const BAD_MESSAGE: u32 = 5;
    pub const OP_UNSUPPORTED: u32 = 8;
}

/// Open flags.
pub mod pflag {
    pub const READ: u32 = 0x01;
    pub const WRITE: u32 = 0x02;
    pub const APPEND: u32 = 0x04;
    pub const CREAT: u32 = 0x08;
    pub const TRUNC: u32 = 0x10;
    pub const EXCL: u32 = 0x20;
}

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// File attributes as a client sends them (only `size` is acted on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    pub times: Option<(u32, u32)>,
}

/// One client packet, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: &'a [u8],
        pflags: u32,
        attrs: Attrs,
    },
    Close {
        id: u32,
        handle: &'a [u8],
    },
    Read {
        id: u32,
        handle: &'a [u8],
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        handle: &'a [u8],
        offset: u64,
        data: &'a [u8],
    },
    Lstat {
        id: u32,
        path: &'a [u8],
    },
    Stat {
        id: u32,
        path: &'a [u8],
    },
    Fstat {
        id: u32,
        handle: &'a [u8],
    },
    Setstat {
        id: u32,
        path: &'a [u8],
        attrs: Attrs,
    },
    Fsetstat {
        id: u32,
        handle: &'a [u8],
        attrs: Attrs,
    },
    Opendir {
        id: u32,
        path: &'a [u8],
    },
    Readdir {
        id: u32,
        handle: &'a [u8],
    },
    Realpath {
        id: u32,
        path: &'a [u8],
    },
    /// Remove, mkdir, rmdir, rename, readlink, symlink: always refused;
    /// their arguments are not needed to say so.
    Forbidden {
        id: u32,
        what: &'static str,
    },
    Extended {
        id: u32,
        name: &'a [u8],
        data: &'a [u8],
    },
    /// A type this server does not know (answered "unsupported").
    Unknown {
        id: u32,
        kind: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SFTP packet: {0}")]
pub struct ParseError(pub &'static str);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError("length overflows"))?;
        let s = self.buf.get(self.pos..end).ok_or(ParseError("field runs past the packet's end"))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<&'a [u8], ParseError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn attrs(&mut self) -> Result<Attrs, ParseError> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let count = self.u32()?;
            // Each pair is at least 8 bytes: a count past that is a lie,
            // refused before looping on it.
            if count as usize > (self.buf.len() - self.pos) / 8 {
                return Err(ParseError("more extended attributes than the packet holds"));
            }
            for _ in 0..count {
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

/// Parse one packet's payload (after its length): type, then fields.
pub fn parse(payload: &[u8]) -> Result<Request<'_>, ParseError> {
    let mut c = Cursor { buf: payload, pos: 0 };
    let kind = c.u8()?;
    if kind == fxp::INIT {
        // Extension pairs may follow; none is used.
        return Ok(Request::Init { version: c.u32()? });
    }
    let id = c.u32()?;
    let req = match kind {
        fxp::OPEN => Request::Open { id, path: c.string()?, pflags: c.u32()?, attrs: c.attrs()? },
        fxp::CLOSE => Request::Close { id, handle: c.string()? },
        fxp::READ => Request::Read { id, handle: c.string()?, offset: c.u64()?, len: c.u32()? },
        fxp::WRITE => Request::Write { id, handle: c.string()?, offset: c.u64()?, data: c.string()? },
        fxp::LSTAT => Request::Lstat { id, path: c.string()? },
        fxp::STAT => Request::Stat { id, path: c.string()? },
        fxp::FSTAT => Request::Fstat { id, handle: c.string()? },
        fxp::SETSTAT => Request::Setstat { id, path: c.string()?, attrs: c.attrs()? },
        fxp::FSETSTAT => Request::Fsetstat { id, handle: c.string()?, attrs: c.attrs()? },
        fxp::OPENDIR => Request::Opendir { id, path: c.string()? },
        fxp::READDIR => Request::Readdir { id, handle: c.string()? },
        fxp::REALPATH => Request::Realpath { id, path: c.string()? },
        fxp::REMOVE => Request::Forbidden { id, what: "remove" },
        fxp::MKDIR => Request::Forbidden { id, what: "mkdir" },
        fxp::RMDIR => Request::Forbidden { id, what: "rmdir" },
        fxp::RENAME => Request::Forbidden { id, what: "rename" },
        fxp::READLINK => Request::Forbidden { id, what: "readlink" },
        fxp::SYMLINK => Request::Forbidden { id, what: "symlink" },
        fxp::EXTENDED => Request::Extended { id, name: c.string()?, data: c.rest() },
        other => Request::Unknown { id, kind: other },
    };
    Ok(req)
}

/// What a client path names: the box, or one file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Root,
    Name(String),
}

/// Reduce a client path to a [`Target`]: `.`, `/`, `./` and empty are the
/// box; `NAME`, `./NAME`, `/NAME` a file in it. `..`, deeper paths,
/// NUL and invalid UTF-8 are refused.
pub fn target(path: &[u8]) -> Result<Target, Refusal> {
    let text = std::str::from_utf8(path).map_err(|_| Refusal::denied("the path is not UTF-8"))?;
    if text.contains('\0') {
        return Err(Refusal::denied("the path holds a NUL byte"));
    }
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(Refusal::denied(format!("{text:?}: `..` leads out of the drop box")));
    }
    match parts.as_slice() {
        [] => Ok(Target::Root),
        [name] => Ok(Target::Name(name.to_string())),
        _ => Err(Refusal::no_such_file(format!("{text:?}: the drop box has no folders"))),
    }
}

/// Builds one reply packet.
struct Reply(Vec<u8>);

impl Reply {
    fn new(kind: u8) -> Reply {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0, 0, 0, 0, kind]);
        Reply(v)
    }
    fn u32(mut self, n: u32) -> Reply {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn u64(mut self, n: u64) -> Reply {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn string(mut self, s: &[u8]) -> Reply {
        self = self.u32(s.len() as u32);
        self.0.extend_from_slice(s);
        self
    }
    fn attrs(self, size: u64, permissions: u32, mtime: u32) -> Reply {
        self.u32(ATTR_SIZE | ATTR_PERMISSIONS | ATTR_ACMODTIME).u64(size).u32(permissions).u32(mtime).u32(mtime)
    }
    fn done(mut self) -> Vec<u8> {
        let n = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&n.to_be_bytes());
        self.0
    }
}

pub fn status(id: u32, code: u32, message: &str) -> Vec<u8> {
    Reply::new(fxp::STATUS).u32(id).u32(code).string(message.as_bytes()).string(b"en").done()
}

fn refusal_status(id: u32, r: &Refusal) -> Vec<u8> {
    let code = match r.kind {
        RefusalKind::Denied => fx::PERMISSION_DENIED,
        RefusalKind::NoSuchFile => fx::NO_SUCH_FILE,
        RefusalKind::Failure => fx::FAILURE,
    };
    status(id, code, &r.message)
}

fn now32() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

enum Handle<'b> {
    Upload(Box<Upload<'b>>),
    Dir,
}

/// One SFTP session over a [`DropBox`].
pub struct Server<'b> {
    bx: &'b DropBox,
    session: &'b Session,
    handles: HashMap<u32, Handle<'b>>,
    next_handle: u32,
    /// Files this session uploaded, with their sizes: what `stat` shows
    /// (paramiko checks the size after `close`).
    mine: HashMap<String, u64>,
    started: bool,
}

impl<'b> Server<'b> {
    pub fn new(bx: &'b DropBox, session: &'b Session) -> Server<'b> {
        Server { bx, session, handles: HashMap::new(), next_handle: 1, mine: HashMap::new(), started: false }
    }

    fn handle_id(handle: &[u8]) -> Option<u32> {
        <[u8; 4]>::try_from(handle).ok().map(u32::from_be_bytes)
    }

    fn refused(&self, id: u32, what: &str, r: &Refusal) -> Vec<u8> {
        self.bx.audit(
            "refused",
            serde_json::json!({ "client": self.session.client.map(|c| c.to_string()), "protocol": "sftp", "request": what, "reason": r.message }),
        );
        refusal_status(id, r)
    }

    fn root_attrs(id: u32) -> Vec<u8> {
        Reply::new(fxp::ATTRS).u32(id).attrs(0, 0o040_755, now32()).done()
    }

    fn file_attrs(id: u32, size: u64) -> Vec<u8> {
        Reply::new(fxp::ATTRS).u32(id).attrs(size, 0o100_440, now32()).done()
    }

    fn stat(&self, id: u32, path: &[u8]) -> Vec<u8> {
        match target(path) {
            Ok(Target::Root) => Self::root_attrs(id),
            Ok(Target::Name(n)) => match self.mine.get(&n) {
                Some(size) => Self::file_attrs(id, *size),
                None => status(id, fx::NO_SUCH_FILE, "No such file"),
            },
            Err(r) => refusal_status(id, &r),
        }
    }

    fn statvfs(&self, id: u32) -> Vec<u8> {
        let space = match self.bx.space() {
            Ok(s) => s,
            Err(e) => return status(id, fx::FAILURE, &format!("cannot measure the free space: {e}")),
        };
        let block = 4096u64;
        let accepts = space.accepts.min(self.bx.cfg.max_file_size);
        let mut r = Reply::new(fxp::EXTENDED_REPLY).u32(id).u64(block).u64(block);
        r = r.u64((space.used + accepts) / block).u64(accepts / block).u64(accepts / block);
        r.u64(0).u64(0).u64(0).u64(0).u64(0).u64(255).done()
    }

    /// The reply to one request; `Err` ends the session.
    pub fn reply(&mut self, req: Request<'_>) -> Result<Vec<u8>, String> {
        if !self.started {
            return match req {
                Request::Init { .. } => {
                    self.started = true;
                    Ok(Reply::new(fxp::VERSION)
                        .u32(3)
                        .string(b"statvfs@openssh.com")
                        .string(b"2")
                        .string(b"fstatvfs@openssh.com")
                        .string(b"2")
                        .string(b"limits@openssh.com")
                        .string(b"1")
                        .done())
                }
                _ => Err("the client did not start with SFTP's INIT".into()),
            };
        }
        let out = match req {
            Request::Init { .. } => return Err("a second INIT".into()),
            Request::Open { id, path, pflags, .. } => self.open(id, path, pflags),
            Request::Close { id, handle } => match Self::handle_id(handle).and_then(|h| self.handles.remove(&h)) {
                Some(Handle::Upload(u)) => {
                    let name = u.name.clone();
                    match u.finish(self.session, "sftp") {
                        Ok(r) => {
                            self.mine.insert(name, r.size);
                            status(id, fx::OK, "")
                        }
                        Err(r) => refusal_status(id, &r),
                    }
                }
                Some(Handle::Dir) => status(id, fx::OK, ""),
                None => status(id, fx::FAILURE, "no such handle"),
            },
            Request::Write { id, handle, offset, data } => {
                match Self::handle_id(handle).and_then(|h| self.handles.get_mut(&h)) {
                    Some(Handle::Upload(u)) => match u.write_at(offset, data) {
                        Ok(()) => status(id, fx::OK, ""),
                        Err(r) => refusal_status(id, &r),
                    },
                    _ => status(id, fx::FAILURE, "no such file handle"),
                }
            }
            Request::Read { id, .. } => {
                self.refused(id, "read", &Refusal::denied("this drop box only receives files: it never sends one"))
            }
            Request::Stat { id, path } | Request::Lstat { id, path } => self.stat(id, path),
            Request::Fstat { id, handle } => match Self::handle_id(handle).and_then(|h| self.handles.get(&h)) {
                Some(Handle::Upload(u)) => Self::file_attrs(id, u.size()),
                Some(Handle::Dir) => Self::root_attrs(id),
                None => status(id, fx::FAILURE, "no such handle"),
            },
            // Modes, owners and times are the box's own; only the size
            // of an upload in progress is the client's to set.
            Request::Setstat { id, path, .. } => match target(path) {
                Ok(Target::Root) => status(id, fx::OK, ""),
                Ok(Target::Name(n)) if self.mine.contains_key(&n) => status(id, fx::OK, ""),
                Ok(_) => status(id, fx::NO_SUCH_FILE, "No such file"),
                Err(r) => refusal_status(id, &r),
            },
            Request::Fsetstat { id, handle, attrs } => {
                match Self::handle_id(handle).and_then(|h| self.handles.get_mut(&h)) {
                    Some(Handle::Upload(u)) => match attrs.size.map(|s| u.set_size(s)) {
                        Some(Err(r)) => refusal_status(id, &r),
                        _ => status(id, fx::OK, ""),
                    },
                    Some(Handle::Dir) => status(id, fx::OK, ""),
                    None => status(id, fx::FAILURE, "no such handle"),
                }
            }
            Request::Opendir { id, path } => match target(path) {
                Ok(Target::Root) => match self.new_handle(Handle::Dir) {
                    Ok(h) => Reply::new(fxp::HANDLE).u32(id).string(&h.to_be_bytes()).done(),
                    Err(r) => refusal_status(id, &r),
                },
                Ok(Target::Name(_)) => status(id, fx::NO_SUCH_FILE, "No such file"),
                Err(r) => refusal_status(id, &r),
            },
            // The listing is empty: the vendor never learns what else is
            // here.
            Request::Readdir { id, handle } => match Self::handle_id(handle).and_then(|h| self.handles.get(&h)) {
                Some(Handle::Dir) => status(id, fx::EOF, "End of file"),
                _ => status(id, fx::FAILURE, "no such folder handle"),
            },
            Request::Realpath { id, path } => match target(path) {
                Ok(t) => {
                    let p = match t {
                        Target::Root => "/".to_string(),
                        Target::Name(n) => format!("/{n}"),
                    };
                    let long = p.as_bytes();
                    Reply::new(fxp::NAME).u32(id).u32(1).string(long).string(long).u32(0).done()
                }
                Err(r) => refusal_status(id, &r),
            },
            Request::Forbidden { id, what } => self.refused(
                id,
                what,
                &Refusal::denied(format!("{what} is not allowed: this drop box only receives new files")),
            ),
            Request::Extended { id, name, data } => match name {
                b"statvfs@openssh.com" => self.statvfs(id),
                b"fstatvfs@openssh.com" => {
                    let _ = data;
                    self.statvfs(id)
                }
                b"limits@openssh.com" => Reply::new(fxp::EXTENDED_REPLY)
                    .u32(id)
                    .u64(MAX_PACKET as u64)
                    .u64(MAX_WRITE)
                    .u64(MAX_WRITE)
                    .u64(MAX_HANDLES as u64)
                    .done(),
                _ => status(id, fx::OP_UNSUPPORTED, "Operation unsupported"),
            },
            Request::Unknown { id, .. } => status(id, fx::OP_UNSUPPORTED, "Operation unsupported"),
        };
        Ok(out)
    }

    fn new_handle(&mut self, h: Handle<'b>) -> Result<u32, Refusal> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Refusal::failure("too many files open at once"));
        }
        let id = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.handles.insert(id, h);
        Ok(id)
    }

    fn open(&mut self, id: u32, path: &[u8], pflags: u32) -> Vec<u8> {
        if pflags & pflag::READ != 0 {
            return self.refused(
                id,
                "open-read",
                &Refusal::denied("this drop box only receives files: it never sends one"),
            );
        }
        if pflags & pflag::WRITE == 0 || pflags & pflag::APPEND != 0 {
            return self.refused(id, "open", &Refusal::denied("only a new file may be opened, for writing"));
        }
        let name = match target(path) {
            Ok(Target::Name(n)) => n,
            Ok(Target::Root) => return status(id, fx::FAILURE, "the drop box itself is a folder"),
            Err(r) => return self.refused(id, "open", &r),
        };
        if pflags & pflag::CREAT == 0 && !self.bx.exists(&name) {
            return status(id, fx::NO_SUCH_FILE, "No such file");
        }
        if self.handles.len() >= MAX_HANDLES {
            return status(id, fx::FAILURE, "too many files open at once");
        }
        match self.bx.begin(&name) {
            Ok(u) => match self.new_handle(Handle::Upload(Box::new(u))) {
                Ok(h) => Reply::new(fxp::HANDLE).u32(id).string(&h.to_be_bytes()).done(),
                Err(r) => refusal_status(id, &r),
            },
            Err(r) => self.refused(id, "open", &r),
        }
    }
}

/// Read one packet's payload into `buf`; `Ok(false)` at a clean end of
/// input (between packets).
pub fn read_packet(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input ended inside a packet length")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a packet of {n} bytes (at most {MAX_PACKET})"),
        ));
    }
    buf.resize(n, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Serve SFTP on `input`/`output` until the client closes its end. An
/// upload left open at the end (a dropped connection) is removed.
pub fn serve(input: impl Read, output: impl Write, bx: &DropBox, session: &Session) -> Result<(), String> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::with_capacity(64 << 10, output);
    let mut server = Server::new(bx, session);
    let mut buf = Vec::with_capacity(MAX_PACKET);
    loop {
        match read_packet(&mut r, &mut buf) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("SFTP input: {e}")),
        }
        let out = match parse(&buf) {
            Ok(req) => server.reply(req)?,
            Err(e) => {
                // Answer what can be answered (the id is there), then stop:
                // a client that sends a broken packet is not trusted on.
                let id = buf.get(1..5).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
                let _ = w.write_all(&status(id, fx::BAD_MESSAGE, &e.to_string()));
                let _ = w.flush();
                return Err(e.to_string());
            }
        };
        w.write_all(&out).map_err(|e| format!("SFTP output: {e}"))?;
        // Flush when no request is waiting: pipelined writes get their
        // answers in batches, a lone request at once.
        if r.buffer().is_empty() {
            w.flush().map_err(|e| format!("SFTP output: {e}"))?;
        }
    }
    w.flush().map_err(|e| format!("SFTP output: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests;

//! Group commit of enrollments. Enrollments of a burst would otherwise
//! write and flush the registry, known_hosts and BackupPC's hosts file one
//! after another under the registry lock, each waiting for the disk
//! several times. Instead, each enrollment leaves what it settled before
//! the lock (its request, hello block and host name) as a
//! proposal beside the registry, then waits for the lock. Whoever gets the
//! lock and finds no answer to its own proposal leads: it checks every
//! proposal waiting at that moment against the files, one after another
//! as if each had the lock alone, writes all their files in one batch,
//! and leaves each proposal's answer beside it. An enrollment answers its
//! client only from an answer written after its files were on disk.
//!
//! The files are `.REGISTRY.ID.req` in the registry's folder: a line
//! of JSON with the proposal, to which the leader appends the answer.
//! They are messages between live processes, not state: never flushed,
//! and gone when their enrollment ends. A proposal is live while its
//! writer holds an `flock` on it (the kernel drops the lock of a killed
//! process); a leader removes the proposals nobody holds, answered or
//! not. A leader takes only proposals of its own user, so no
//! account can have another's enrollment done for it; root's enrollments
//! (an admin's tests) are never grouped.
//!
//! A leader killed midway leaves files that are each whole, as a single
//! enrollment killed midway does; the next leader checks the waiting
//! proposals against the files as they are, so each enrollment is done
//! once in the end, or refused as it would have been alone.

use crate::serve::Outcome;
use backuppc_enroll::protocol::answer::Success;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// At most this many proposals are led at once, the leader's own
/// included; the rest wait for the next leader.
pub(crate) const MAX_GROUP: usize = 256;

/// Proposals and answers are small: anything larger is not one.
const MAX_MESSAGE: u64 = 256 * 1024;

/// What an enrollment settled before the lock: enough for a leader to do
/// the rest exactly as the enrollment would have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proposal {
    /// `SSH_ORIGINAL_COMMAND`, already checked.
    pub command: String,
    pub ip: std::net::IpAddr,
    /// The hello block, rendered, without the token.
    pub hello: String,
    /// The token's hash: a token itself is never written to disk.
    pub token_hash: Option<String>,
    pub host: String,
    pub from: String,
    pub shares: Vec<String>,
    /// Which server config the proposal was checked under: a leader
    /// reading another (an admin changed it meanwhile) does not lead it.
    pub config: String,
    /// The host's own files, staged before the lock.
    pub prestaged: Option<HostFiles>,
}

/// A host's own files (its keys, pc/HOST.pl) staged by its
/// enrollment before the lock, each temporary file held locked by that
/// enrollment until it has its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostFiles {
    /// What they were made from: the leader uses them only when the
    /// host's files are still the same.
    pub basis: Basis,
    /// `(temporary file, where it goes)`, renamed before the files the
    /// group shares (the previous key kept, pc/HOST.pl).
    pub early: Vec<(PathBuf, PathBuf)>,
    /// Renamed after them (the new key and its `.pub`).
    pub late: Vec<(PathBuf, PathBuf)>,
    pub public: String,
    pub fingerprint: String,
    pub keep_previous: bool,
}

/// The host's files that staged files were made from, as read then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Basis {
    /// Fingerprints of `HOST.key` and `HOST.key.prev`.
    pub current: Option<String>,
    pub previous: Option<String>,
    /// `sha256:HEX` of pc/HOST.pl, `absent`, or why it is unreadable.
    pub per_host: String,
}

/// An enrollment's answer, as a leader leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Success { key: String, url: String, host: Option<String>, from: Option<String>, shares: Vec<String> },
    Refused(String),
    Failed(String),
    Pending(String, Option<String>),
}

impl Answer {
    pub fn of(result: &Result<Success, Outcome>) -> Answer {
        match result {
            Ok(s) => Answer::Success {
                key: s.key.clone(),
                url: s.url.clone(),
                host: s.host.clone(),
                from: s.from.clone(),
                shares: s.shares.clone(),
            },
            Err(Outcome::Refused(w)) => Answer::Refused(w.clone()),
            Err(Outcome::Failed(w)) => Answer::Failed(w.clone()),
            Err(Outcome::Pending(h, n)) => Answer::Pending(h.clone(), n.clone()),
        }
    }

    pub fn into_result(self) -> Result<Success, Outcome> {
        match self {
            Answer::Success { key, url, host, from, shares } => Ok(Success { key, url, host, from, shares }),
            Answer::Refused(w) => Err(Outcome::Refused(w)),
            Answer::Failed(w) => Err(Outcome::Failed(w)),
            Answer::Pending(h, n) => Err(Outcome::Pending(h, n)),
        }
    }
}

/// The proposals beside one registry file.
pub(crate) struct Queue {
    dir: PathBuf,
    /// `.registry.json.`
    prefix: String,
}

/// One's own proposal, live while this is held.
pub(crate) struct Ticket {
    req: PathBuf,
    _held: File,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Another enrollment's proposal, taken by the leader.
pub(crate) struct Waiter {
    req: PathBuf,
}

const ID_LEN: usize = 12;

impl Queue {
    /// The queue of `registry`; `None` for root, whose enrollments are
    /// not grouped.
    pub fn of(registry: &Path) -> Option<Queue> {
        if nix::unistd::geteuid().is_root() {
            return None;
        }
        let dir = match registry.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = registry.file_name()?.to_string_lossy().into_owned();
        Some(Queue { dir, prefix: format!(".{name}.") })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}{id}.req", self.prefix))
    }

    /// Where a proposal is written before it is locked and complete.
    fn part_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}{id}.part", self.prefix))
    }

    /// The id in `file_name`, if it is one of this queue's proposals, and
    /// whether it is one still being written (`.part`).
    fn id_of<'a>(&self, file_name: &'a str) -> Option<(&'a str, bool)> {
        let rest = file_name.strip_prefix(&self.prefix)?;
        let (id, part) = match rest.strip_suffix(".req") {
            Some(id) => (id, false),
            None => (rest.strip_suffix(".part")?, true),
        };
        (id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((id, part))
    }

    /// Leave `p` for a leader, locked until the ticket is dropped: one
    /// line of JSON, to which the leader appends the answer.
    pub fn enqueue(&self, p: &Proposal) -> io::Result<Ticket> {
        let text = serde_json::to_vec(p).map_err(io::Error::other)?;
        loop {
            let id = random_id();
            let (part, req) = (self.part_path(&id), self.path(&id));
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&part)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            // Locked and whole before it has its queue name: a leader that
            // finds a proposal unlocked knows its writer is gone.
            let written = file.lock().and_then(|()| (&file).write_all(&text));
            if let Err(e) = written.and_then(|()| fs::rename(&part, &req)) {
                let _ = fs::remove_file(&part);
                return Err(e);
            }
            return Ok(Ticket { req, _held: file });
        }
    }

    /// Under the registry lock: the live proposals of this user besides
    /// `mine` that have no answer yet, oldest first, at most `max`. What
    /// dead enrollments left is removed on the way.
    pub fn waiting(&self, mine: &Ticket, max: usize) -> Vec<(Waiter, Proposal)> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let me = nix::unistd::geteuid().as_raw();
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((id, part)) = name.to_str().and_then(|n| self.id_of(n)) else { continue };
            if part {
                // One whose writer died before it was whole.
                let p = self.part_path(id);
                if let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&p)
                {
                    if f.metadata().is_ok_and(|m| m.is_file() && m.uid() == me)
                        && f.try_lock().is_ok()
                        && same_file(&p, &f)
                    {
                        let _ = fs::remove_file(&p);
                    }
                }
                continue;
            }
            let req = self.path(id);
            if req == mine.req {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&req)
            else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() || meta.uid() != me || meta.len() > MAX_MESSAGE {
                continue;
            }
            if file.try_lock().is_ok() {
                // Its writer is gone: nobody waits for it.
                if same_file(&req, &file) {
                    let _ = fs::remove_file(&req);
                }
                continue;
            }
            let Some((proposal, answer)) = read_message(file) else { continue };
            if answer.is_some() {
                // Answered by an earlier leader; its writer reads it next.
                continue;
            }
            // One that does not parse is left to its writer, which leads
            // for itself when its turn comes.
            let Ok(p) = serde_json::from_slice::<Proposal>(&proposal) else { continue };
            found.push((meta.mtime_nsec() as i128 + meta.mtime() as i128 * 1_000_000_000, Waiter { req }, p));
        }
        found.sort_by_key(|(t, _, _)| *t);
        found.into_iter().take(max).map(|(_, w, p)| (w, p)).collect()
    }
}

/// A proposal file: the proposal's line, and what follows it (the answer)
/// if a leader has begun to append one.
fn read_message(file: File) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut text = Vec::new();
    file.take(MAX_MESSAGE).read_to_end(&mut text).ok()?;
    Some(match text.iter().position(|b| *b == b'\n') {
        Some(end) => (text[..end].to_vec(), Some(text[end + 1..].to_vec())),
        None => (text, None),
    })
}

impl Ticket {
    /// Under the registry lock: the answer a leader left, if any.
    pub fn answer(&self) -> Option<Answer> {
        let file =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&self.req).ok()?;
        let (_, answer) = read_message(file)?;
        // A leader killed while writing it leaves one that does not parse:
        // then there is no answer, and this enrollment leads.
        serde_json::from_slice(&answer?).ok()
    }

    /// The proposal and its answer are done with.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.req);
    }
}

impl Waiter {
    /// Append `answer` to the proposal's file, for its writer. Not
    /// flushed: it is read by a live process, and a crash ends that
    /// process too.
    pub fn answer(&self, answer: &Answer) {
        let Ok(text) = serde_json::to_vec(answer) else { return };
        let Ok(mut f) =
            OpenOptions::new().append(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&self.req)
        else {
            return;
        };
        if f.metadata().is_ok_and(|m| m.is_file() && m.uid() == nix::unistd::geteuid().as_raw()) {
            let mut message = b"\n".to_vec();
            message.extend_from_slice(&text);
            let _ = f.write_all(&message);
        }
    }
}

fn same_file(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn random_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; ID_LEN];
    getrandom_fill(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn getrandom_fill(buf: &mut [u8]) {
    use ssh_key::rand_core::RngCore;
    ssh_key::rand_core::OsRng.fill_bytes(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(host: &str) -> Proposal {
        Proposal {
            command: "linux:cmartin".into(),
            ip: "127.0.0.1".parse().unwrap(),
            hello: "protocol: 2\n".into(),
            token_hash: None,
            host: host.into(),
            from: "192.0.2.1".into(),
            shares: vec!["/".into()],
            config: "c".into(),
            prestaged: None,
        }
    }

    fn queue(dir: &Path) -> Queue {
        Queue { dir: dir.to_path_buf(), prefix: ".registry.json.".into() }
    }

    #[test]
    fn a_leader_sees_live_proposals_and_clears_dead_ones() {
        let d = tempfile::tempdir().unwrap();
        let q = queue(d.path());
        let mine = q.enqueue(&proposal("a")).unwrap();
        let other = q.enqueue(&proposal("b")).unwrap();
        // What a killed writer leaves: its proposal, with no lock on it.
        let dead_req = d.path().join(".registry.json.DeadWriter01.req");
        fs::write(&dead_req, serde_json::to_vec(&proposal("c")).unwrap()).unwrap();
        let waiting = q.waiting(&mine, MAX_GROUP);
        assert_eq!(
            waiting.iter().map(|(_, p)| p.host.as_str()).collect::<Vec<_>>(),
            ["b"],
            "own and dead ones left out"
        );
        assert!(!dead_req.exists(), "a dead proposal is removed");

        assert_eq!(other.answer(), None, "no answer yet");
        waiting[0].0.answer(&Answer::Refused("no".into()));
        assert_eq!(other.answer(), Some(Answer::Refused("no".into())));
        assert!(q.waiting(&mine, MAX_GROUP).is_empty(), "an answered proposal is not led again");
        drop(other);
        drop(mine);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0, "nothing left");
    }

    #[test]
    fn what_is_not_a_whole_proposal_or_answer_is_not_taken() {
        let d = tempfile::tempdir().unwrap();
        let q = queue(d.path());
        let mine = q.enqueue(&proposal("a")).unwrap();
        let torn = q.enqueue(&proposal("b")).unwrap();
        fs::write(&torn.req, b"{\"command\":").unwrap();
        assert!(q.waiting(&mine, MAX_GROUP).is_empty(), "a torn proposal is left to its writer");
        fs::write(&torn.req, [serde_json::to_vec(&proposal("b")).unwrap(), b"\n{\"Refused\":".to_vec()].concat())
            .unwrap();
        assert_eq!(torn.answer(), None, "a torn answer is no answer");
        // A writer that died before its proposal was whole leaves a
        // `.part` nobody holds: removed.
        let part = d.path().join(".registry.json.DiedWriting1.part");
        fs::write(&part, b"{").unwrap();
        assert!(q.waiting(&mine, MAX_GROUP).is_empty());
        assert!(!part.exists());
        // Not one of the queue's names: ignored.
        fs::write(d.path().join(".registry.json.short.req"), b"{}").unwrap();
        assert!(q.waiting(&mine, MAX_GROUP).is_empty());
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Success {
                key: "ssh-ed25519 AAAA".into(),
                url: "http://x/".into(),
                host: Some("h".into()),
                from: None,
                shares: vec!["/home".into()],
            },
            Answer::Refused("why".into()),
            Answer::Failed("disk".into()),
            Answer::Pending("h".into(), Some("note".into())),
        ] {
            assert_eq!(Answer::of(&a.clone().into_result()), a);
        }
    }
}

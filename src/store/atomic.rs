//! Crash-safe file replacement and locks. A file is never written in
//! place: the new contents go to a temporary file in the same folder, are
//! flushed to disk, get the owner and mode the file must have, and are
//! renamed over the old one; then the folder is flushed. Readers see the
//! old file or the new one, never a torn one, even after `kill -9`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who owns the file written, and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Ownership {
    /// The owner and mode of `path` if it exists, else `default`.
    pub fn of_existing_or(path: &Path, default: Ownership) -> Ownership {
        match fs::metadata(path) {
            Ok(m) => Ownership { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777 },
            Err(_) => default,
        }
    }
}

/// Replace `path` with `contents` atomically, with the given ownership.
/// Ownership is only changed when the process may (root); otherwise the
/// file keeps the writer's ids, which is what a non-root writer can do.
///
/// The temporary file is `.NAME.XXXXXX.tmp`, held under an `flock` while it
/// is written. A writer killed half-way leaves its temporary file behind,
/// unlocked: the next writer of the same file removes it (see
/// [`remove_stale_temps`]), as BackupPC's own writer cleans up after itself.
pub fn write(path: &Path, contents: &[u8], own: Ownership) -> io::Result<()> {
    let tmp = stage(path, contents, own)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&parent(path)?)
}

/// `contents` in a new locked temporary file beside `path`, with its
/// ownership, not flushed yet; stale temporary files of `path` removed.
fn stage(path: &Path, contents: &[u8], own: Ownership) -> io::Result<tempfile::NamedTempFile> {
    remove_stale_temps(&parent(path)?, &file_name(path));
    stage_swept(path, contents, own)
}

/// [`stage`] in a folder whose stale temporary files were just removed.
fn stage_swept(path: &Path, contents: &[u8], own: Ownership) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent(path)?;
    let name = file_name(path);
    let tmp = locked_temp(&dir, &name)?;
    let mut f = tmp.as_file();
    f.write_all(contents)?;
    chown_if_needed(f, own)?;
    f.set_permissions(fs::Permissions::from_mode(own.mode))?;
    Ok(tmp)
}

/// A new temporary file for `name` in `dir`, locked. Between its creation
/// and the lock another writer's clean-up may have taken it for a stale
/// one and removed it: then its name no longer leads to it, and a fresh
/// one is made.
fn locked_temp(dir: &Path, name: &str) -> io::Result<tempfile::NamedTempFile> {
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .rand_bytes(TEMP_RANDOM)
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        // Shared: a batch that takes over a prestaged file locks it too
        // (see [`Batch::add_prestaged`]), and clean-up takes only files
        // nobody has locked.
        tmp.as_file().lock_shared()?;
        if same_file(tmp.path(), tmp.as_file()) {
            return Ok(tmp);
        }
        // Removed under us: keep the (now unrelated) name untouched.
        let (_file, path) = tmp.into_parts();
        let _ = path.keep();
    }
}

/// Length of the random part of a temporary file's name.
const TEMP_RANDOM: usize = 6;

/// Whether `file_name` is one of [`write`]'s temporary files for `name`.
fn is_temp_of(file_name: &str, name: &str) -> bool {
    temp_target(file_name) == Some(name)
}

/// The name of the file that `file_name`, one of [`write`]'s temporary
/// files (`.NAME.XXXXXX.tmp`), was made for.
fn temp_target(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, random) = rest.rsplit_once('.')?;
    (!name.is_empty() && random.len() == TEMP_RANDOM && random.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(name)
}

/// Remove the temporary files of `name` in `dir` that a killed writer left:
/// those whose lock nobody holds (the kernel drops a dead process's
/// locks). One a live writer holds is left alone. Only regular files are
/// considered, opened without following a symlink, and a file is removed
/// only while its name still leads to the file that was checked. Clean-up
/// is best effort: a failure here never fails the write.
pub fn remove_stale_temps(dir: &Path, name: &str) {
    remove_stale_temps_of(dir, |n| n == name)
}

/// [`remove_stale_temps`] for every file of `dir` whose name `ours`
/// accepts, in one pass over the folder (a folder of thousands of hosts'
/// files is read once, not once per file).
pub fn remove_stale_temps_of(dir: &Path, ours: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_str().and_then(temp_target).is_some_and(&ours) {
            continue;
        }
        let p = entry.path();
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&p) else {
            continue;
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) || file.try_lock().is_err() {
            continue;
        }
        if same_file(&p, &file) {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Whether `path` (not followed if a symlink) is the file `file` has open.
fn same_file(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Write `contents` to a new file `path` that must not exist yet
/// (`O_EXCL`), flushed, with the given ownership. Used for `hosts.new`
/// style staging files that are then renamed.
pub fn write_new(path: &Path, contents: &[u8], own: Ownership) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let written = f
        .write_all(contents)
        .and_then(|()| chown_if_needed(&f, own))
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(own.mode)))
        .and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Give the file its owner. A non-root writer may not be allowed to (the
/// BackupPC account is not in the `www-data` group of Debian's config
/// folder); then the file keeps the writer's ids, as BackupPC's own
/// writes do, and its mode still applies.
fn chown_if_needed(f: &File, own: Ownership) -> io::Result<()> {
    let m = f.metadata()?;
    if m.uid() != own.uid || m.gid() != own.gid {
        match std::os::unix::fs::fchown(f, Some(own.uid), Some(own.gid)) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() => {}
            other => other?,
        }
    }
    Ok(())
}

/// Flush a folder so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Several files replaced in one step, for writes made together under one
/// lock. Each file goes through its own temporary file, as [`write`] does,
/// flushed before it is renamed over the old one: each file is old or new,
/// never torn. What a batch saves is waiting: the flushes of all contents
/// are waited for at once, then the renames are made in the order the files
/// were added, then the flushes of all their folders are waited for at
/// once: two waits for the disk instead of two per file. (Concurrent
/// `fsync`s of changes already made share the file system journal's
/// commits.) A rename made by a crashed run is durable no later than the
/// renames before it on journaling file systems (ext4, XFS), which commit
/// a folder's changes in order. Dropped uncommitted, a batch removes its
/// temporary files and changes nothing.
#[derive(Default)]
pub struct Batch {
    staged: Vec<Staged>,
}

enum Staged {
    /// Staged by this batch, not flushed yet.
    Temp(tempfile::NamedTempFile, PathBuf),
    /// A temporary file another batch staged (see [`Batch::prestage`]),
    /// held locked, and where it goes.
    Prestaged(File, PathBuf, PathBuf),
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stage `contents` for `path`, with the given ownership (see [`write`]).
    pub fn add(&mut self, path: &Path, contents: &[u8], own: Ownership) -> io::Result<()> {
        self.staged.push(Staged::Temp(stage(path, contents, own)?, path.to_path_buf()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// [`Batch::add`] in a folder whose stale temporary files the caller
    /// has just removed ([`remove_stale_temps_of`]).
    pub fn add_swept(&mut self, path: &Path, contents: &[u8], own: Ownership) -> io::Result<()> {
        self.staged.push(Staged::Temp(stage_swept(path, contents, own)?, path.to_path_buf()));
        Ok(())
    }

    /// Add what `other` staged, after what this batch staged.
    pub fn append(&mut self, other: Batch) {
        self.staged.extend(other.staged);
    }

    /// Hand the staged files over: their temporary files stay (locked,
    /// so no writer's clean-up takes them for stale) for as long as the
    /// [`Prestaged`] is kept, for another batch, even in another process,
    /// to flush and rename into place with [`Batch::add_prestaged`]. The
    /// flush is left to that batch, so that the flushes of many files
    /// staged apart are still waited for at once.
    pub fn prestage(self) -> io::Result<Prestaged> {
        let mut files = Vec::new();
        for s in self.staged {
            match s {
                Staged::Temp(tmp, path) => {
                    let (file, tmp_path) = tmp.into_parts();
                    files.push((file, tmp_path.keep().map_err(|e| e.error)?, path));
                }
                Staged::Prestaged(..) => return Err(io::Error::other("a prestaged file cannot be prestaged again")),
            }
        }
        Ok(Prestaged { files })
    }

    /// Flush `tmp`, staged by [`Batch::prestage`], and rename it to `path`
    /// when this batch commits. Only a regular file of this process's
    /// user with one name, in `path`'s folder and named as a temporary
    /// file of it, is taken.
    pub fn add_prestaged(&mut self, tmp: &Path, path: &Path) -> io::Result<()> {
        let refuse = || io::Error::other(format!("{} is not a staged file for {}", tmp.display(), path.display()));
        let named = tmp.file_name().and_then(|n| n.to_str()).is_some_and(|n| is_temp_of(n, &file_name(path)));
        if !named || parent(tmp)? != parent(path)? {
            return Err(refuse());
        }
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(tmp)?;
        let m = file.metadata()?;
        if !m.is_file() || m.nlink() != 1 || m.uid() != nix::unistd::geteuid().as_raw() {
            return Err(refuse());
        }
        // Held from now on: no writer's clean-up removes it before it is
        // renamed, even if the process that staged it is gone.
        file.try_lock_shared().map_err(|_| refuse())?;
        if !same_file(tmp, &file) {
            return Err(refuse());
        }
        self.staged.push(Staged::Prestaged(file, tmp.to_path_buf(), path.to_path_buf()));
        Ok(())
    }

    /// Flush every staged file, rename each into place in order, flush
    /// their folders.
    pub fn commit(self) -> io::Result<()> {
        sync_all_at_once(self.staged.iter().map(|s| match s {
            Staged::Temp(tmp, _) => tmp.as_file(),
            Staged::Prestaged(file, _, _) => file,
        }))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for s in self.staged {
            let dir = match s {
                Staged::Temp(tmp, path) => {
                    tmp.persist(&path).map_err(|e| e.error)?;
                    parent(&path)?
                }
                Staged::Prestaged(file, tmp, path) => {
                    if !same_file(&tmp, &file) {
                        return Err(io::Error::other(format!("{} was replaced before it was renamed", tmp.display())));
                    }
                    fs::rename(&tmp, &path)?;
                    parent(&path)?
                }
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let opened = dirs.iter().map(File::open).collect::<io::Result<Vec<File>>>()?;
        sync_all_at_once(opened.iter())
    }
}

/// Files a batch staged, waiting to be flushed and renamed into place by
/// another batch ([`Batch::add_prestaged`]). Dropped, it removes those of
/// its temporary files that are still where they were made (not renamed)
/// and that no other batch holds.
pub struct Prestaged {
    files: Vec<(File, PathBuf, PathBuf)>,
}

impl Prestaged {
    /// `(temporary file, where it goes)`, in the order staged.
    pub fn paths(&self) -> Vec<(PathBuf, PathBuf)> {
        self.files.iter().map(|(_, tmp, path)| (tmp.clone(), path.clone())).collect()
    }
}

impl Drop for Prestaged {
    fn drop(&mut self) {
        for (file, tmp, _) in &self.files {
            // Exclusive only if the batch that took it over (its shared
            // lock) is gone.
            if file.try_lock().is_ok() && same_file(tmp, file) {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// `sync_all` of every file, concurrently, so the waits overlap.
fn sync_all_at_once<'a>(files: impl Iterator<Item = &'a File>) -> io::Result<()> {
    let files: Vec<&File> = files.collect();
    if let [one] = files[..] {
        return one.sync_all();
    }
    std::thread::scope(|s| {
        let waits: Vec<_> = files.iter().map(|f| s.spawn(move || f.sync_all())).collect();
        waits
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(io::Error::other("a flush thread panicked"))))
            .collect::<io::Result<Vec<()>>>()
    })
    .map(|_| ())
}

fn parent(path: &Path) -> io::Result<PathBuf> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => Ok(PathBuf::from(".")),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// An exclusive `flock` held until dropped, on a lock file that is created
/// if missing (as BackupPC does with `$ConfDir/LOCK`).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// A lock file created by root gets the owner of its folder, so the
    /// service account (forced-command, BackupPC) can still open it; a
    /// lock file we may only read is locked through a read-only handle.
    ///
    /// Never through a symlink, and only a regular file with one name: a
    /// link planted where the lock goes must not make root create or
    /// hand over a file elsewhere.
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        let existed = path.symlink_metadata().is_ok();
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?
            }
            Err(e) => return Err(e),
        };
        let m = file.metadata()?;
        if !m.is_file() || m.nlink() != 1 {
            return Err(io::Error::other(format!(
                "the lock file {} is not a plain file with one name: remove it",
                path.display()
            )));
        }
        if !existed && nix::unistd::geteuid().is_root() {
            if let Ok(m) = fs::metadata(parent(path)?) {
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))?;
            }
        }
        file.lock()?;
        Ok(Lock { _file: file })
    }
}

/// Read a file, treating a missing file as empty.
pub fn read_or_empty(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(mode: u32) -> Ownership {
        Ownership { uid: nix::unistd::getuid().as_raw(), gid: nix::unistd::getgid().as_raw(), mode }
    }

    #[test]
    fn replaces_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write(&p, b"one", me(0o640)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        let own = Ownership::of_existing_or(&p, me(0o600));
        write(&p, b"two", own).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        let leftovers: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn a_killed_writers_temporary_file_is_removed_by_the_next_writer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        // What a writer killed before its rename leaves: unlocked.
        let stale = d.path().join(".hosts.Ab3dE9.tmp");
        fs::write(&stale, b"half").unwrap();
        // A live writer's file: locked through its own open file.
        let live = d.path().join(".hosts.LiVe01.tmp");
        fs::write(&live, b"in progress").unwrap();
        let held = File::open(&live).unwrap();
        held.lock().unwrap();
        // Not ours: other names, other shapes, a symlink.
        let others =
            [".hosts.old.tmp", ".hostsx.Ab3dE9.tmp", ".hosts.Ab3dE9.tmp.bak", "hosts.new", ".other.Ab3dE9.tmp"];
        for o in others {
            fs::write(d.path().join(o), b"keep").unwrap();
        }
        std::os::unix::fs::symlink(d.path().join("hosts.new"), d.path().join(".hosts.SyMl1k.tmp")).unwrap();
        write(&p, b"new", me(0o644)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(!stale.exists(), "the unlocked leftover is removed");
        assert_eq!(fs::read(&live).unwrap(), b"in progress", "a live writer's file stays");
        for o in others {
            assert_eq!(fs::read(d.path().join(o)).unwrap(), b"keep", "{o} is not a temporary file of hosts");
        }
        assert!(
            d.path().join(".hosts.SyMl1k.tmp").symlink_metadata().is_ok(),
            "a symlink is never followed nor removed"
        );
        drop(held);
    }

    #[test]
    fn temporary_names_are_recognised_exactly() {
        // (file name, name written, is its temporary file)
        let rows = [
            (".hosts.Ab3dE9.tmp", "hosts", true),
            (".HOST.key.new.x1Y2z3.tmp", "HOST.key.new", true),
            (".HOST.key.new.x1Y2z3.tmp", "HOST", false),
            (".hosts.Ab3dE.tmp", "hosts", false),
            (".hosts.Ab3dE9a.tmp", "hosts", false),
            (".hosts.Ab-dE9.tmp", "hosts", false),
            ("hosts.Ab3dE9.tmp", "hosts", false),
            (".hosts.Ab3dE9.tmpx", "hosts", false),
            ("..Ab3dE9.tmp", "", false),
        ];
        for (file, name, want) in rows {
            assert_eq!(is_temp_of(file, name), want, "{file} for {name}");
        }
    }

    #[test]
    fn one_pass_removes_the_stale_temporary_files_of_the_names_chosen() {
        let d = tempfile::tempdir().unwrap();
        for f in [".a.pl.Ab3dE9.tmp", ".b.pl.Xy12Zw.tmp", ".c.key.Qr5tU7.tmp", "a.pl", ".a.pl.short.tmp"] {
            fs::write(d.path().join(f), b"x").unwrap();
        }
        // A live writer's file of a chosen name stays.
        let live = d.path().join(".d.pl.LiVe01.tmp");
        fs::write(&live, b"x").unwrap();
        let held = File::open(&live).unwrap();
        held.lock_shared().unwrap();
        remove_stale_temps_of(d.path(), |name| name.ends_with(".pl"));
        let mut left: Vec<String> =
            fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".a.pl.short.tmp", ".c.key.Qr5tU7.tmp", ".d.pl.LiVe01.tmp", "a.pl"]);
        drop(held);
    }

    #[test]
    fn a_prestaged_file_is_flushed_and_renamed_by_another_batch_and_held_meanwhile() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("HOST.key");
        fs::write(&target, b"old").unwrap();
        let mut staging = Batch::new();
        staging.add(&target, b"new", me(0o600)).unwrap();
        let handed = staging.prestage().unwrap();
        let (tmp, path) = handed.paths().remove(0);
        assert_eq!(path, target);
        // Nobody's clean-up takes it while it is handed over.
        remove_stale_temps(d.path(), "HOST.key");
        assert!(tmp.exists());
        // Only a temporary file of the target, in its folder, is taken.
        let mut other = Batch::new();
        assert!(other.add_prestaged(&target, &target).is_err(), "not a temporary file");
        assert!(other.add_prestaged(&tmp, &d.path().join("OTHER.key")).is_err(), "not this target's");
        let mut taking = Batch::new();
        taking.add_prestaged(&tmp, &target).unwrap();
        drop(handed);
        assert!(tmp.exists(), "held by the batch that took it over, it outlives its stager");
        remove_stale_temps(d.path(), "HOST.key");
        assert!(tmp.exists(), "and no clean-up takes it");
        taking.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "nothing else left");
    }

    #[test]
    fn a_batch_replaces_in_order_and_a_dropped_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("sub/b"));
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(&a, b"old a").unwrap();
        let mut batch = Batch::new();
        batch.add(&a, b"new a", me(0o640)).unwrap();
        batch.add(&b, b"new b", me(0o600)).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old a", "nothing visible before the commit");
        assert!(!b.exists());
        batch.commit().unwrap();
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"new a".to_vec(), b"new b".to_vec()));
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o600);

        let mut dropped = Batch::new();
        dropped.add(&a, b"never", me(0o640)).unwrap();
        drop(dropped);
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    #[test]
    fn write_new_refuses_existing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts.new");
        write_new(&p, b"a", me(0o644)).unwrap();
        assert!(write_new(&p, b"b", me(0o644)).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"a");
    }

    #[test]
    fn a_lock_is_never_taken_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("registry.json.lock");
        let elsewhere = d.path().join("ld.so.preload");
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        assert!(Lock::exclusive(&lock).is_err(), "a dangling symlink");
        assert!(!elsewhere.exists(), "nothing created where the link points");
        fs::write(&elsewhere, b"x").unwrap();
        assert!(Lock::exclusive(&lock).is_err(), "a symlink to a file");
        fs::remove_file(&lock).unwrap();
        fs::hard_link(&elsewhere, &lock).unwrap();
        let e = Lock::exclusive(&lock).unwrap_err();
        assert!(e.to_string().contains("one name"), "{e}");
        fs::remove_file(&lock).unwrap();
        let held = Lock::exclusive(&lock).unwrap();
        assert!(lock.is_file());
        drop(held);
    }
}

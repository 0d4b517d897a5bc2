//! Application dumps taken on the workstation before BackupPC copies it.
//!
//! The workstation's root declares them in drop-in files
//! (`dumps.d/*.toml`); a backup starting triggers all of them through one
//! fixed verb of the restricted key (`run-dumps`), so the server can choose
//! neither which dump runs nor how. This module parses and checks the
//! declarations (pure, table-tested) and reads/writes their status files;
//! [`run`] takes the dumps. It never runs anything that a declaration file,
//! folder or binary writable by someone other than root could have named.

pub mod run;

use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Default `timeout` of a dump, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 3600;
/// Default `max_size` of a dump's output, in bytes (100 GiB).
pub const DEFAULT_MAX_SIZE: u64 = 100 << 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DumpError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, DumpError> {
    Err(DumpError(s.into()))
}

/// What a failed dump does to the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The backup fails (BackupPC's DumpPreUserCmd exits non-zero).
    Fail,
    /// The backup goes on; the failure is in the status file and the log.
    Continue,
}

/// The tool a dump runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `pg_dump --format=custom` of one database and `pg_dumpall
    /// --globals-only` of its cluster, as the database's OS user.
    Postgresql {
        os_user: String,
        database: String,
        /// Socket folder or host name (`--host`); unset: libpq's default.
        host: Option<String>,
        port: Option<u16>,
        /// Folder of `pg_dump` and `pg_dumpall`.
        bin_dir: PathBuf,
        globals: bool,
    },
    /// An absolute argv whose stdout is the dump, run as `user`.
    Command { argv: Vec<String>, user: String },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Postgresql { .. } => "postgresql",
            Kind::Command { .. } => "command",
        }
    }
}

/// One checked declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub name: String,
    pub kind: Kind,
    /// The canonical output folder, inside a share.
    pub output: PathBuf,
    pub timeout: u64,
    pub max_size: u64,
    pub on_failure: OnFailure,
    /// The file that declared it.
    pub source: PathBuf,
}

impl Dump {
    /// The file the dump's main output is renamed to.
    pub fn file(&self) -> PathBuf {
        let ext = match self.kind {
            Kind::Postgresql { .. } => "pgdump",
            Kind::Command { .. } => "out",
        };
        self.output.join(format!("{}.{ext}", self.name))
    }

    /// The cluster's roles and tablespaces (postgresql with `globals`).
    pub fn globals_file(&self) -> Option<PathBuf> {
        match self.kind {
            Kind::Postgresql { globals: true, .. } => Some(self.output.join(format!("{}.globals.sql", self.name))),
            _ => None,
        }
    }

    pub fn status_file(&self) -> PathBuf {
        status_file(&self.output, &self.name)
    }

    /// The programs the dump runs, as declared.
    pub fn programs(&self) -> Vec<PathBuf> {
        match &self.kind {
            Kind::Postgresql { bin_dir, globals, .. } => {
                let mut p = vec![bin_dir.join("pg_dump")];
                if *globals {
                    p.push(bin_dir.join("pg_dumpall"));
                }
                p
            }
            Kind::Command { argv, .. } => vec![PathBuf::from(&argv[0])],
        }
    }
}

/// Where the status of dump `name` with output folder `output` is.
pub fn status_file(output: &Path, name: &str) -> PathBuf {
    output.join(format!("{name}.status.json"))
}

/// A `[[dump]]` table as written, before its kind is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    kind: String,
    output: String,
    timeout: Option<u64>,
    max_size: Option<u64>,
    on_failure: Option<OnFailure>,
    // postgresql
    os_user: Option<String>,
    database: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    bin_dir: Option<String>,
    globals: Option<bool>,
    // command
    argv: Option<Vec<String>>,
    user: Option<String>,
}

/// A dump name: it becomes file names and the one word BackupPC's log
/// shows, so lowercase letters, digits, `.`, `_`, `-`, not starting with
/// `.` or `-`.
pub fn check_name(name: &str) -> Result<(), DumpError> {
    check_word("dump", name)
}

/// A declared name (`what`: dump, job): 1 to 64 lowercase letters,
/// digits, `.`, `_`, `-`, not starting with `.` or `-`.
pub fn check_word(what: &str, name: &str) -> Result<(), DumpError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !name.starts_with(['.', '-']);
    if !ok {
        return err(format!(
            "{what} name {} is not valid: use 1 to 64 lowercase letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            crate::names::quoted(name)
        ));
    }
    Ok(())
}

/// Whether `p` is absolute and plain (no `..`); `what` names it.
pub fn plain_absolute(what: &str, p: &str) -> Result<(), DumpError> {
    crate::names::absolute_path(p).map_err(|e| DumpError(format!("{what}: {e}")))?;
    if p.split('/').any(|c| c == "..") {
        return err(format!("{what} {p:?} has '..': use a plain absolute path"));
    }
    Ok(())
}

/// Parse one declaration file's text (`source` names it in messages).
/// The output folder is checked to be absolute here; that it lies inside
/// a share is [`inside_shares`]'s decision, on the canonical path.
pub fn parse(text: &str, source: &Path) -> Result<Vec<Dump>, DumpError> {
    let at = |m: String| DumpError(format!("{}: {m}", source.display()));
    let raws: Vec<Raw> = tables(text, source, "dump")?;
    raws.into_iter().map(|r| from_raw(r, source).map_err(|e| at(e.0))).collect()
}

/// The `[KEY]` table or `[[KEY]]` tables of a declaration file, each
/// turned into `T` (unknown fields refused by `T`); any other top-level
/// key, or none at all, is an error naming `source`.
pub fn tables<T: serde::de::DeserializeOwned>(text: &str, source: &Path, key: &str) -> Result<Vec<T>, DumpError> {
    let at = |m: String| DumpError(format!("{}: {m}", source.display()));
    let mut file: toml::Table = toml::from_str(text).map_err(|e| at(e.to_string()))?;
    if let Some(other) = file.keys().find(|k| *k != key) {
        return Err(at(format!("unknown key {other:?}: a declaration file holds [{key}] or [[{key}]] tables only")));
    }
    let tables = match file.remove(key) {
        None => return Err(at(format!("missing field `{key}`: declare a [{key}] table"))),
        Some(toml::Value::Array(a)) => a,
        Some(t @ toml::Value::Table(_)) => vec![t],
        Some(_) => return Err(at(format!("`{key}` must be a [{key}] table or [[{key}]] tables"))),
    };
    let raws = tables
        .into_iter()
        .map(|t| t.try_into::<T>().map_err(|e| at(e.to_string())))
        .collect::<Result<Vec<T>, DumpError>>()?;
    if raws.is_empty() {
        return Err(at(format!("declares no {key}")));
    }
    Ok(raws)
}

fn from_raw(r: Raw, source: &Path) -> Result<Dump, DumpError> {
    check_name(&r.name)?;
    let n = &r.name;
    plain_absolute(&format!("dump {n}: output"), &r.output)?;
    let user_ok = |what: &str, u: &str| {
        crate::names::user_name(u).map(|_| ()).map_err(|e| DumpError(format!("dump {n}: {what}: {e}")))
    };
    let only = |field: &str, set: bool, kind: &str| -> Result<(), DumpError> {
        if set {
            return err(format!("dump {n}: {field} is a field of kind {kind:?} only"));
        }
        Ok(())
    };
    let kind = match r.kind.as_str() {
        "postgresql" => {
            only("argv", r.argv.is_some(), "command")?;
            only("user", r.user.is_some(), "command")?;
            let os_user = r.os_user.unwrap_or_else(|| "postgres".into());
            user_ok("os_user", &os_user)?;
            let Some(database) = r.database else {
                return err(format!("dump {n}: kind \"postgresql\" needs database = \"NAME\""));
            };
            if database.is_empty() || database.starts_with('-') || database.contains(['=', '\0', '\n']) {
                return err(format!("dump {n}: database {database:?} is not a plain database name"));
            }
            if let Some(h) = &r.host {
                if h.is_empty() || h.starts_with('-') || h.contains(['\0', '\n', ' ']) {
                    return err(format!("dump {n}: host {h:?} is not a host name or socket folder"));
                }
            }
            let bin_dir = r.bin_dir.unwrap_or_else(|| "/usr/bin".into());
            plain_absolute(&format!("dump {n}: bin_dir"), &bin_dir)?;
            Kind::Postgresql {
                os_user,
                database,
                host: r.host,
                port: r.port,
                bin_dir: bin_dir.into(),
                globals: r.globals.unwrap_or(true),
            }
        }
        "command" => {
            for (f, set) in [
                ("os_user", r.os_user.is_some()),
                ("database", r.database.is_some()),
                ("host", r.host.is_some()),
                ("port", r.port.is_some()),
                ("bin_dir", r.bin_dir.is_some()),
                ("globals", r.globals.is_some()),
            ] {
                only(f, set, "postgresql")?;
            }
            let argv = r.argv.unwrap_or_default();
            let Some(program) = argv.first() else {
                return err(format!("dump {n}: kind \"command\" needs argv = [\"/absolute/program\", …]"));
            };
            plain_absolute(&format!("dump {n}: argv[0]"), program)?;
            if argv.iter().any(|a| a.contains('\0')) {
                return err(format!("dump {n}: argv has a NUL byte"));
            }
            let Some(user) = r.user else {
                return err(format!("dump {n}: kind \"command\" needs user = \"ACCOUNT\" to run it as"));
            };
            user_ok("user", &user)?;
            Kind::Command { argv, user }
        }
        "mysql" | "mariadb" => {
            return err(format!(
                "dump {n}: kind {:?} is not supported yet: use kind = \"command\" with mysqldump --single-transaction",
                r.kind
            ))
        }
        other => return err(format!("dump {n}: unknown kind {other:?}: use \"postgresql\" or \"command\"")),
    };
    let timeout = r.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max_size = r.max_size.unwrap_or(DEFAULT_MAX_SIZE);
    if timeout == 0 || max_size == 0 {
        return err(format!("dump {n}: timeout and max_size must be at least 1"));
    }
    Ok(Dump {
        name: r.name,
        kind,
        output: r.output.into(),
        timeout,
        max_size,
        on_failure: r.on_failure.unwrap_or(OnFailure::Fail),
        source: source.to_path_buf(),
    })
}

/// The one word the backup server sends to have the dumps taken.
pub const TRIGGER: &str = "run-dumps";

/// Whether the SSH command `cmd` asks for the dumps: None when it is no
/// dump command at all, else Ok only for exactly [`TRIGGER`]; anything
/// more (an argument, a dump name, shell syntax, other spacing) is refused,
/// since the server may choose neither which dump runs nor how.
pub fn trigger(cmd: &str) -> Option<Result<(), DumpError>> {
    if cmd == TRIGGER {
        return Some(Ok(()));
    }
    let first = cmd.trim_start().split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).next()?;
    if first == TRIGGER || first.eq_ignore_ascii_case("run-dumps") || first.eq_ignore_ascii_case("run_dumps") {
        return Some(err(format!(
            "{TRIGGER} takes no arguments and nothing else on its line (got {}): the dumps are declared on this workstation",
            crate::names::quoted(cmd)
        )));
    }
    None
}

/// Whether the canonical `output` lies inside one of the canonical
/// `shares` (a share itself counts), so BackupPC copies the dump.
pub fn inside_shares(output: &Path, shares: &[PathBuf]) -> Result<(), DumpError> {
    if shares.iter().any(|s| output.starts_with(s)) {
        return Ok(());
    }
    let list: Vec<String> = shares.iter().map(|s| s.display().to_string()).collect();
    err(format!(
        "output folder {} is outside the shares ({}): BackupPC would not copy the dump; put it inside a share",
        output.display(),
        if list.is_empty() { "none".into() } else { list.join(", ") }
    ))
}

/// The shares the dumps' output folders must lie in, canonical: the
/// client config's `shares`, else those of the last enrollment.
pub fn shares(cfg: &crate::config::ClientConfig) -> Vec<PathBuf> {
    let shares = cfg
        .shares
        .clone()
        .unwrap_or_else(|| crate::config::ClientState::load(&cfg.state_file).map(|s| s.shares).unwrap_or_default());
    shares.iter().filter_map(|s| std::fs::canonicalize(s).ok()).collect()
}

/// Owner and mode as read from a file's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub mode: u32,
}

/// Whether something owned and moded like `o` is root's alone: owned by
/// root and writable by neither its group nor others.
pub fn root_only(what: &str, path: &Path, o: Owner) -> Result<(), DumpError> {
    if o.uid != 0 || o.mode & 0o022 != 0 {
        return err(format!(
            "{what} {} must be owned by root and writable by root only (it is uid {}, mode {:o}): fix its owner and mode",
            path.display(),
            o.uid,
            o.mode & 0o7777
        ));
    }
    Ok(())
}

/// The canonical path of `path` after checking that it and every folder
/// above it (of a symlink: above its target) are root's alone, so that
/// nobody but root can change what the path names between this check
/// and its use. A folder with the sticky bit (`/tmp`) may be writable by
/// all when root owns it: nobody else can rename or replace root's
/// entries in it.
pub fn check_root_owned(what: &str, path: &Path) -> Result<PathBuf, DumpError> {
    let real =
        std::fs::canonicalize(path).map_err(|e| DumpError(format!("cannot resolve {what} {}: {e}", path.display())))?;
    let owner = |w: &str, p: &Path| -> Result<Owner, DumpError> {
        let m = std::fs::metadata(p).map_err(|e| DumpError(format!("cannot read {w} {}: {e}", p.display())))?;
        Ok(Owner { uid: m.uid(), mode: m.mode() })
    };
    let shown = if real != path {
        format!("{} (the target of {})", real.display(), path.display())
    } else {
        real.display().to_string()
    };
    root_only(what, Path::new(&shown), owner(what, &real)?)?;
    for dir in real.ancestors().skip(1) {
        let w = format!("the folder above {what}");
        let o = owner(&w, dir)?;
        if o.uid == 0 && o.mode & libc::S_ISVTX != 0 {
            continue;
        }
        root_only("the folder", Path::new(&format!("{} above {what} {shown}", dir.display())), o)?;
    }
    Ok(real)
}

/// The declarations of folder `dir` (`*.toml`, in name order), every file,
/// the folder and every program checked to be root's alone, names
/// unique, output folders canonical and inside `shares`: one bad
/// declaration refuses them all, before anything runs. A missing folder declares
/// nothing.
pub fn load(dir: &Path, shares: &[PathBuf]) -> Result<Vec<Dump>, DumpError> {
    let mut dumps: Vec<Dump> = Vec::new();
    for (f, text) in declaration_files(dir, "dump")? {
        for mut d in parse(&text, &f)? {
            if let Some(other) = dumps.iter().find(|o| o.name == d.name) {
                return err(format!(
                    "dump {} is declared twice ({} and {}): rename one",
                    d.name,
                    other.source.display(),
                    f.display()
                ));
            }
            // The folder itself must be root's; its parent may be the
            // application's (/opt/mattermost): the dump is written through
            // a descriptor of the folder, checked again once opened
            // (run::open_output), so a rename above it changes nothing.
            let what = format!("the output folder of dump {}", d.name);
            d.output = std::fs::canonicalize(&d.output)
                .map_err(|e| DumpError(format!("cannot resolve {what} {}: {e}", d.output.display())))?;
            let m = std::fs::metadata(&d.output)
                .map_err(|e| DumpError(format!("cannot read {what} {}: {e}", d.output.display())))?;
            if !m.is_dir() {
                return err(format!("{what} {} is not a folder", d.output.display()));
            }
            root_only(&what, &d.output, Owner { uid: m.uid(), mode: m.mode() })?;
            inside_shares(&d.output, shares).map_err(|e| DumpError(format!("dump {}: {}", d.name, e.0)))?;
            for program in d.programs() {
                check_root_owned(&format!("the program of dump {}", d.name), &program)?;
            }
            dumps.push(d);
        }
    }
    Ok(dumps)
}

/// The declaration files of folder `dir` (`*.toml`, not hidden, in name
/// order) and their text, the folder and every file checked to be root's
/// alone (`what`: dump, job). A missing folder declares nothing.
pub fn declaration_files(dir: &Path, what: &str) -> Result<Vec<(PathBuf, String)>, DumpError> {
    let m = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return err(format!("cannot read the {what}s folder {}: {e}", dir.display())),
    };
    if !m.is_dir() {
        return err(format!("the {what}s folder {} is not a folder", dir.display()));
    }
    let real_dir = check_root_owned(&format!("the {what}s folder"), dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&real_dir)
        .map_err(|e| DumpError(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let real = check_root_owned(&format!("{what} declaration"), &f)?;
            let text =
                std::fs::read_to_string(&real).map_err(|e| DumpError(format!("cannot read {}: {e}", f.display())))?;
            Ok((f, text))
        })
        .collect()
}

/// One output file of a dump, as its status records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// The status file written beside a dump after each run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub kind: String,
    pub ok: bool,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    /// The tool's exit code (None: killed, or never started).
    pub exit_status: Option<i32>,
    /// Size and sha256 of the main output (of the last good dump when
    /// this run failed: that file is the one left in place).
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub tool_version: Option<String>,
    /// Every file of the dump in place (main output first).
    pub files: Vec<FileStatus>,
    pub error: Option<String>,
    /// End of the last run that succeeded (this one when ok).
    pub last_success: Option<String>,
}

impl Status {
    pub fn parse(bytes: &[u8]) -> Result<Status, DumpError> {
        serde_json::from_slice(bytes).map_err(|e| DumpError(format!("not a dump status file: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Dump, DumpError> {
        parse(text, Path::new("/d/x.toml")).map(|mut v| v.remove(0))
    }

    #[test]
    fn declarations_table() {
        // (file, Ok(kind) or Err(part of the message), why)
        let rows: &[(&str, Result<&str, &str>, &str)] = &[
            (
                "[dump]\nname = \"mm\"\nkind = \"postgresql\"\noutput = \"/srv/d\"\ndatabase = \"mattermost\"\n",
                Ok("postgresql"),
                "the minimal postgresql dump",
            ),
            (
                "[[dump]]\nname = \"x\"\nkind = \"command\"\noutput = \"/srv/d\"\nargv = [\"/usr/bin/true\"]\nuser = \"nobody\"\n",
                Ok("command"),
                "an array of one",
            ),
            ("[dump]\nname = \"mm\"\nkind = \"postgresql\"\noutput = \"/srv/d\"\n", Err("needs database"), "no database"),
            ("[dump]\nname = \"X\"\nkind = \"command\"\noutput = \"/s\"\n", Err("not valid"), "uppercase name"),
            ("[dump]\nname = \"../x\"\nkind = \"command\"\noutput = \"/s\"\n", Err("not valid"), "slash in name"),
            ("[dump]\nname = \"-x\"\nkind = \"command\"\noutput = \"/s\"\n", Err("not valid"), "option-like name"),
            (
                "[dump]\nname = \"x\"\nkind = \"command\"\noutput = \"/s\"\nargv = [\"true\"]\nuser = \"root\"\n",
                Err("argv[0]"),
                "relative program: PATH would choose it",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"command\"\noutput = \"/s\"\nargv = [\"/bin/sh\", \"-c\", \"x\"]\n",
                Err("needs user"),
                "a command says who runs it",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"command\"\noutput = \"s\"\nargv = [\"/bin/true\"]\nuser = \"root\"\n",
                Err("output"),
                "relative output folder",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"command\"\noutput = \"/srv/../etc\"\nargv = [\"/bin/true\"]\nuser = \"root\"\n",
                Err("'..'"),
                "dot-dot output folder",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"command\"\noutput = \"/s\"\nargv = [\"/bin/true\"]\nuser = \"root\"\ndatabase = \"d\"\n",
                Err("of kind \"postgresql\" only"),
                "a field of the other kind",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"mysql\"\noutput = \"/s\"\n",
                Err("not supported yet"),
                "mysql is left out",
            ),
            ("[dump]\nname = \"x\"\nkind = \"shell\"\noutput = \"/s\"\n", Err("unknown kind"), "unknown kind"),
            (
                "[dump]\nname = \"x\"\nkind = \"postgresql\"\noutput = \"/s\"\ndatabase = \"d\"\ncolour = 1\n",
                Err("unknown field"),
                "a typo is an error, not a default",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"postgresql\"\noutput = \"/s\"\ndatabase = \"-c foo\"\n",
                Err("plain database name"),
                "database taken for an option",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"postgresql\"\noutput = \"/s\"\ndatabase = \"d\"\nos_user = \"a b\"\n",
                Err("os_user"),
                "bad account name",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"postgresql\"\noutput = \"/s\"\ndatabase = \"d\"\ntimeout = 0\n",
                Err("at least 1"),
                "zero timeout",
            ),
            (
                "[dump]\nname = \"x\"\nkind = \"postgresql\"\noutput = \"/s\"\ndatabase = \"d\"\non_failure = \"ignore\"\n",
                Err("unknown variant"),
                "on_failure is fail or continue",
            ),
            ("dump = []\n", Err("declares no dump"), "empty list"),
            ("", Err("missing field"), "empty file"),
        ];
        for (text, want, why) in rows {
            match (one(text), want) {
                (Ok(d), Ok(kind)) => assert_eq!(d.kind.name(), *kind, "{why}"),
                (Err(e), Err(part)) => assert!(e.0.contains(part), "{why}: {e}"),
                (got, _) => panic!("{why}: {got:?}"),
            }
        }
    }

    #[test]
    fn defaults_and_file_names() {
        let d = one("[dump]\nname = \"mm\"\nkind = \"postgresql\"\noutput = \"/srv/d\"\ndatabase = \"mattermost\"\n")
            .unwrap();
        assert_eq!(d.on_failure, OnFailure::Fail, "a failed dump fails the backup unless told otherwise");
        assert_eq!((d.timeout, d.max_size), (DEFAULT_TIMEOUT, DEFAULT_MAX_SIZE));
        assert!(matches!(&d.kind, Kind::Postgresql { os_user, globals: true, .. } if os_user == "postgres"));
        assert_eq!(d.file(), Path::new("/srv/d/mm.pgdump"));
        assert_eq!(d.globals_file().unwrap(), Path::new("/srv/d/mm.globals.sql"));
        assert_eq!(d.status_file(), Path::new("/srv/d/mm.status.json"));
    }

    #[test]
    fn trigger_table() {
        // (SSH command, None: not ours / Some(accepted), why)
        let rows: &[(&str, Option<bool>, &str)] = &[
            ("run-dumps", Some(true), "the one trigger"),
            ("run-dumps mm", Some(false), "a dump name: the server may not choose"),
            ("run-dumps --all", Some(false), "an option"),
            ("run-dumps;id", Some(false), "shell syntax"),
            ("run-dumps && id", Some(false), "shell syntax with spaces"),
            ("run-dumps\n", Some(false), "a trailing newline"),
            (" run-dumps", Some(false), "other spacing"),
            ("RUN-DUMPS", Some(false), "other case"),
            ("run_dumps", Some(false), "underscore spelling"),
            ("run-dumps$(id)", Some(false), "command substitution"),
            ("rsync --server --sender . /home", None, "an rsync invocation goes to the rsync checks"),
            ("status", None, "another verb"),
            ("run-dumpsx", None, "another word: the rsync checks refuse it"),
            ("", None, "empty"),
        ];
        for (cmd, want, why) in rows {
            assert_eq!(trigger(cmd).map(|r| r.is_ok()), *want, "{why}: {cmd:?}");
        }
    }

    #[test]
    fn inside_shares_table() {
        let shares = [PathBuf::from("/home"), PathBuf::from("/srv/app")];
        let rows: &[(&str, bool, &str)] = &[
            ("/home", true, "a share itself"),
            ("/srv/app/dumps", true, "below a share"),
            ("/srv/application", false, "a sibling sharing a prefix"),
            ("/var/dumps", false, "outside"),
            ("/", false, "the root above every share"),
        ];
        for (out, ok, why) in rows {
            assert_eq!(inside_shares(Path::new(out), &shares).is_ok(), *ok, "{why}");
        }
        assert!(inside_shares(Path::new("/home"), &[]).unwrap_err().0.contains("none"));
    }

    #[test]
    fn root_only_table() {
        let rows: &[(u32, u32, bool, &str)] = &[
            (0, 0o100644, true, "root's file"),
            (0, 0o40755, true, "root's folder"),
            (0, 0o100664, false, "group-writable"),
            (0, 0o100646, false, "other-writable"),
            (1000, 0o100644, false, "someone else's"),
            (0, 0o41777, false, "sticky world-writable folder"),
        ];
        for (uid, mode, ok, why) in rows {
            assert_eq!(root_only("f", Path::new("/f"), Owner { uid: *uid, mode: *mode }).is_ok(), *ok, "{why}");
        }
    }

    #[test]
    fn a_folder_above_a_program_that_someone_else_may_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("bin")).unwrap();
        let prog = app.join("bin/dump.sh");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_root_owned("the program", &prog).is_ok(), "root's all the way up (/tmp is sticky)");
        // Whoever may write `app` can rename `bin` away and put their own
        // program in its place after the check.
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_root_owned("the program", &prog).unwrap_err().0;
        assert!(e.contains(&format!("the folder {} above the program {}", app.display(), prog.display())), "{e}");
        assert!(e.contains("mode 777"), "{e}");
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&app, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = check_root_owned("the program", &prog).unwrap_err().0;
        assert!(e.contains("uid 65534"), "{e}");
        // The same through a symlink: the target's folders are checked.
        nix::unistd::chown(&app, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&prog, &link).unwrap();
        assert_eq!(check_root_owned("the program", &link).unwrap(), std::fs::canonicalize(&prog).unwrap());
        std::fs::set_permissions(app.join("bin"), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check_root_owned("the program", &link).unwrap_err().0.contains("mode 775"));
    }

    #[test]
    fn status_round_trips_and_rejects_garbage() {
        let s = Status {
            name: "mm".into(),
            kind: "postgresql".into(),
            ok: false,
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:00:01Z".into(),
            exit_status: Some(1),
            size: None,
            sha256: None,
            tool_version: None,
            files: vec![],
            error: Some("pg_dump exited with status 1".into()),
            last_success: None,
        };
        assert_eq!(Status::parse(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
        for bad in [&b""[..], b"{}", b"[1]", b"{\"name\":1}", b"\xff"] {
            assert!(Status::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! The option table: which short letters and long options rsync's client
//! may send to the server, with their argument rules and what each needs
//! (a restore, deletes enabled). Refused options carry their reason.

/// Short options rsync's client puts in the server's cluster, and whether
/// they are allowed. Refused letters carry their reason.
pub(super) fn short_rule(c: char) -> Result<(), &'static str> {
    match c {
        'l' | 'H' | 'o' | 'g' | 'D' | 't' | 'p' | 'r' | 'c' | 'x' | 'R' | 'v' | 'z' | 'n' | 'I' | 'u' | 'W' | 'S'
        | 'O' | 'J' | 'A' | 'X' | 'd' | 'U' | 'N' | 'm' | 'y' | 'C' | 'E' | 'q' | 'h' | '8' | 'i' => Ok(()),
        'L' | 'k' | 'K' => Err("link-following options are not enabled on this client (follow_links = false)"),
        'e' => Err("-e is only allowed as the protocol tail e<ver>.<caps>"),
        'b' => Err("--backup is not allowed"),
        'B' => Err("-B is only allowed as its own word -B<size>"),
        _ => Err("option is not on the allow-list"),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Arg {
    None,
    Number,
    /// A number that may be negative (`--max-delete=-1` is how the client
    /// says `--max-delete=0`).
    Signed,
    /// Printable text without control characters.
    Text,
    /// A name like `xxh128,md5`.
    Word,
    /// A relative folder name without `/` or `..`.
    RelDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    Nothing,
    Receiver,
    Delete,
}

/// The long-option allow-list: name, argument, and what it needs.
pub(super) const LONG: &[(&str, Arg, Needs)] = &[
    ("numeric-ids", Arg::None, Needs::Nothing),
    ("super", Arg::None, Needs::Nothing),
    ("fake-super", Arg::None, Needs::Nothing),
    ("partial", Arg::None, Needs::Nothing),
    ("partial-dir", Arg::RelDir, Needs::Receiver),
    ("log-format", Arg::Text, Needs::Nothing),
    ("out-format", Arg::Text, Needs::Nothing),
    ("stats", Arg::None, Needs::Nothing),
    ("timeout", Arg::Number, Needs::Nothing),
    ("bwlimit", Arg::Word, Needs::Nothing),
    ("max-size", Arg::Word, Needs::Nothing),
    ("min-size", Arg::Word, Needs::Nothing),
    ("modify-window", Arg::Number, Needs::Nothing),
    ("checksum-seed", Arg::Number, Needs::Nothing),
    ("compress-level", Arg::Number, Needs::Nothing),
    ("checksum-choice", Arg::Word, Needs::Nothing),
    ("compress-choice", Arg::Word, Needs::Nothing),
    ("protocol", Arg::Number, Needs::Nothing),
    // On a backup these only change how the sender computes the delta
    // (it writes nothing); the client sends --append-verify as
    // `--append --append`, so the repeat is kept.
    ("inplace", Arg::None, Needs::Nothing),
    ("append", Arg::None, Needs::Nothing),
    ("append-verify", Arg::None, Needs::Nothing),
    // The client sends --block-size as `-B<size>`; kept as this name.
    ("block-size", Arg::Number, Needs::Nothing),
    ("no-W", Arg::None, Needs::Nothing),
    ("no-whole-file", Arg::None, Needs::Nothing),
    // Parts of -D (already allowed); the client sends --specials or
    // --no-specials when only one half is wanted.
    ("devices", Arg::None, Needs::Nothing),
    ("no-devices", Arg::None, Needs::Nothing),
    ("specials", Arg::None, Needs::Nothing),
    ("no-specials", Arg::None, Needs::Nothing),
    ("no-D", Arg::None, Needs::Nothing),
    // How the client sends -zz and --compress-choice=zlib.
    ("new-compress", Arg::None, Needs::Nothing),
    ("old-compress", Arg::None, Needs::Nothing),
    ("msgs2stderr", Arg::None, Needs::Nothing),
    ("no-msgs2stderr", Arg::None, Needs::Nothing),
    ("max-alloc", Arg::Word, Needs::Nothing),
    // Sent with -d --delete without -r.
    ("no-r", Arg::None, Needs::Nothing),
    ("fsync", Arg::None, Needs::Receiver),
    ("delay-updates", Arg::None, Needs::Receiver),
    ("existing", Arg::None, Needs::Nothing),
    ("ignore-existing", Arg::None, Needs::Nothing),
    ("size-only", Arg::None, Needs::Nothing),
    ("ignore-times", Arg::None, Needs::Nothing),
    ("safe-links", Arg::None, Needs::Nothing),
    ("munge-links", Arg::None, Needs::Nothing),
    ("sparse", Arg::None, Needs::Nothing),
    ("preallocate", Arg::None, Needs::Receiver),
    ("no-implied-dirs", Arg::None, Needs::Nothing),
    ("omit-dir-times", Arg::None, Needs::Nothing),
    ("omit-link-times", Arg::None, Needs::Nothing),
    ("one-file-system", Arg::None, Needs::Nothing),
    ("open-noatime", Arg::None, Needs::Nothing),
    ("from0", Arg::None, Needs::Nothing),
    ("ignore-missing-args", Arg::None, Needs::Nothing),
    ("ignore-errors", Arg::None, Needs::Nothing),
    ("force", Arg::None, Needs::Receiver),
    ("delete", Arg::None, Needs::Delete),
    ("delete-before", Arg::None, Needs::Delete),
    ("delete-during", Arg::None, Needs::Delete),
    ("delete-delay", Arg::None, Needs::Delete),
    ("delete-after", Arg::None, Needs::Delete),
    ("delete-excluded", Arg::None, Needs::Delete),
    ("delete-missing-args", Arg::None, Needs::Delete),
    ("max-delete", Arg::Signed, Needs::Delete),
];

/// Options refused with a specific reason (the rest of the unknown ones
/// get the generic "not on the allow-list").
pub(super) const DENIED: &[(&str, &str)] = &[
    ("rsh", "a remote shell option would run a command"),
    ("rsync-path", "a program path would run a command"),
    ("daemon", "daemon mode is not allowed"),
    ("config", "daemon config files are not allowed"),
    ("dparam", "daemon parameters are not allowed"),
    ("log-file", "log files would write outside the shares"),
    ("log-file-format", "log files would write outside the shares"),
    ("write-batch", "batch files would write outside the shares"),
    ("only-write-batch", "batch files would write outside the shares"),
    ("read-batch", "batch files would read outside the shares"),
    ("copy-devices", "reading devices is not allowed"),
    ("write-devices", "writing devices is not allowed"),
    ("remove-source-files", "removing source files is not allowed"),
    ("remove-sent-files", "removing source files is not allowed"),
    ("debug", "debug output is not allowed"),
    ("files-from", "file lists are not allowed: their entries would be opened past the share check"),
    ("iconv", "--iconv is not enabled on this client (iconv = false)"),
    ("copy-links", "link-following options are not enabled on this client (follow_links = false)"),
    ("copy-dirlinks", "link-following options are not enabled on this client (follow_links = false)"),
    ("keep-dirlinks", "link-following options are not enabled on this client (follow_links = false)"),
    ("copy-unsafe-links", "link-following options are not enabled on this client (follow_links = false)"),
    ("backup", "--backup is not allowed"),
    ("backup-dir", "--backup-dir is not allowed"),
    ("temp-dir", "--temp-dir is not allowed"),
    ("compare-dest", "reference folders are not allowed"),
    ("copy-dest", "reference folders are not allowed"),
    ("link-dest", "reference folders are not allowed"),
];

//! Host names BackupPC gives a meaning of its own, which no enrolled host
//! may have: the toolkit writes `$ConfDir/pc/HOST.pl` and a `HOST` row in
//! `$ConfDir/hosts`, and on Debian `pc` is a symlink to the config folder
//! itself (`/etc/backuppc/pc -> /etc/backuppc`), so `pc/HOST.pl` is
//! `/etc/backuppc/HOST.pl`, beside BackupPC's own files.
//!
//! Each name below comes from BackupPC 4's own code (Debian's package):
//!
//! | name | why |
//! |---|---|
//! | `config` | `pc/config.pl` is the main `config.pl` on Debian; BackupPC's `ConfigPath` (Storage/Text.pm) itself never takes `$ConfDir/config.pl` for a host (`$host ne "config"`) |
//! | `localconfig` | Debian's `ConfigDataRead` (Storage/Text.pm) loads `/etc/backuppc/localconfig.pl` before every config, the main one and each host's: `pc/localconfig.pl` would be site-wide config |
//! | `host` | the first field of the hosts file's header row (`host dhcp user moreUsers`); `HostInfoRead` takes the first row as the header, so a `host` row reads as one |
//!
//! Names considered and not reserved here, and why:
//! - `.`, `..`, names with `/` or blanks: no DNS name has them ([`crate::names::host_name`]).
//! - `hosts`, `htpasswd`, `apache`, `LOCK`, `config.pl`, `hosts.old`…: the
//!   toolkit only ever writes `HOST.pl` there, and `hosts.pl`, `apache.pl`,
//!   `LOCK.pl`, `config.pl.pl` are files BackupPC never reads.
//! - BackupPC's admin jobs (`" admin "`, `" admin1 "`, `BackupPC::Lib`'s
//!   `adminJob`) carry blanks, which no host name has.
//! - `localhost`: Debian's stock host (`localhost 0 backuppc` and
//!   `localhost.pl`) is a real host; what guards it is that the toolkit
//!   never rewrites a host it did not write (the registry says which).

/// Names refused whatever their case (BackupPC lower-cases host names).
pub const RESERVED: &[&str] = &["config", "localconfig", "host"];

/// `host` (already a valid, lower-cased DNS name) if BackupPC gives it no
/// meaning of its own; else why not, for the person asking.
pub fn check_host(host: &str) -> Result<(), String> {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(host)) {
        return Err(format!(
            "host name {host:?} is reserved by BackupPC (its $ConfDir/pc/{host}.pl or hosts row has another meaning): give this machine another name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names() {
        let table: &[(&str, bool, &str)] = &[
            ("config", false, "pc/config.pl is the main config.pl on Debian"),
            ("CONFIG", false, "any case: BackupPC lower-cases host names"),
            ("localconfig", false, "Debian loads /etc/backuppc/localconfig.pl for every host"),
            ("host", false, "the hosts file's header field"),
            ("config.example.org", true, "a FQDN starting with config is its own file"),
            ("configs", true, "not config"),
            ("hosts", true, "hosts.pl is read by nobody"),
            ("localhost", true, "a real host, guarded by ownership instead"),
            ("dormeur", true, "ordinary"),
        ];
        for (name, ok, why) in table {
            assert_eq!(check_host(name).is_ok(), *ok, "{why}: {name:?}");
        }
    }
}

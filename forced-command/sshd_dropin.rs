//! The `ForceCommand` deployment: an sshd_config.d drop-in whose
//! `Match User` block makes sshd run `forced-command` for every key of the
//! enrollment account, whatever that key's authorized_keys line says (a
//! line with no options at all included), with no tty, agent, X11, port,
//! socket or tunnel forwarding, and public keys only. The drop-in is
//! checked with sshd's own parser (`sshd -t`, then `sshd -T` for that
//! account must show this very `ForceCommand`) before it is moved into
//! place.

use anyhow::{bail, Context, Result};
use backuppc_enroll::names;
use backuppc_enroll::store::atomic::{self, Ownership};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first line of every drop-in this tool writes: how it recognises its
/// own file (and the package's purge does too).
pub const HEADER: &str = "# Written by forced-command install-sshd-dropin (backuppc-enroll).";

/// The drop-in for `user`: `forced-command --config CONFIG` forced.
pub fn render(user: &str, program: &Path, config: &Path) -> String {
    format!(
        "{HEADER}\n\
         # Every key of {user} runs only forced-command, whatever its authorized_keys line says.\n\
         # Remove with: forced-command install-sshd-dropin --remove\n\
         Match User {user}\n\
         \tForceCommand {program} --config {config}\n\
         \tAuthenticationMethods publickey\n\
         \tPasswordAuthentication no\n\
         \tKbdInteractiveAuthentication no\n\
         \tPermitTTY no\n\
         \tPermitUserRC no\n\
         \tAllowAgentForwarding no\n\
         \tAllowTcpForwarding no\n\
         \tAllowStreamLocalForwarding no\n\
         \tX11Forwarding no\n\
         \tPermitTunnel no\n\
         \tPermitOpen none\n\
         \tPermitListen none\n",
        program = program.display(),
        config = config.display()
    )
}

/// A path as one sshd_config word: absolute, and nothing sshd would split
/// or take for a comment or a quote.
fn config_word(p: &Path) -> Result<PathBuf> {
    let p = std::path::absolute(p)?;
    let s = p.to_string_lossy();
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '#' | '%')) {
        bail!(
            "{} has a space, quote, backslash, # or %: sshd_config cannot name it as it is; install it elsewhere",
            p.display()
        );
    }
    Ok(p)
}

pub struct Dropin<'a> {
    pub user: &'a str,
    pub dropin: &'a Path,
    pub sshd_config: &'a Path,
    pub sshd: &'a Path,
    pub config: &'a Path,
}

impl Dropin<'_> {
    fn ours(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(self.dropin) {
            Ok(text) if text.starts_with(HEADER) => Ok(Some(text)),
            Ok(_) => bail!(
                "{} exists and was not written by backuppc-enroll: it is left alone; move it away or pass --dropin",
                self.dropin.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.dropin.display())),
        }
    }

    pub fn install(&self) -> Result<()> {
        let user = names::user_name(self.user).map_err(anyhow::Error::msg)?;
        let program = config_word(&std::env::current_exe()?)?;
        let config = config_word(self.config)?;
        let dropin = config_word(self.dropin)?;
        let text = render(&user, &program, &config);
        if self.ours()?.as_deref() == Some(text.as_str()) {
            println!("{} is already in place", dropin.display());
            return Ok(());
        }
        let dir = dropin.parent().context("the drop-in needs a folder")?;
        if !dir.is_dir() {
            bail!("{} is not a folder: is openssh-server installed?", dir.display());
        }
        // Staged under a name no `Include …/*.conf` matches, checked, then
        // renamed into place.
        let name = dropin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staged = dir.join(format!(".{name}.staged"));
        atomic::write(&staged, text.as_bytes(), Ownership { uid: 0, gid: 0, mode: 0o644 })?;
        let checked = self.check(&staged, &user, &program, &config);
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
        std::fs::rename(&staged, &dropin)?;
        atomic::sync_dir(dir)?;
        println!(
            "installed {}: every key of {user} now runs only {} (sshd -t passed)",
            dropin.display(),
            program.display()
        );
        println!("next: reload sshd to apply it (systemctl reload ssh)");
        Ok(())
    }

    /// sshd's own verdict on the main config with the staged drop-in
    /// included first (where Debian's `Include /etc/ssh/sshd_config.d/*.conf`
    /// puts it, and where the first value of a keyword wins).
    fn check(&self, staged: &Path, user: &str, program: &Path, config: &Path) -> Result<()> {
        let wrapper = tempfile::Builder::new().prefix("backuppc-enroll-sshd-check").tempfile()?;
        std::fs::write(
            wrapper.path(),
            format!("Include {}\nInclude {}\n", staged.display(), config_word(self.sshd_config)?.display()),
        )?;
        let out = Command::new(self.sshd)
            .arg("-t")
            .arg("-f")
            .arg(wrapper.path())
            .output()
            .with_context(|| format!("cannot run {}", self.sshd.display()))?;
        if !out.status.success() {
            bail!(
                "sshd -t rejected the drop-in with {}: {}",
                self.sshd_config.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let out = Command::new(self.sshd)
            .arg("-T")
            .arg("-f")
            .arg(wrapper.path())
            .arg("-C")
            .arg(format!("user={user},host=localhost,addr=127.0.0.1"))
            .output()
            .with_context(|| format!("cannot run {}", self.sshd.display()))?;
        let effective = String::from_utf8_lossy(&out.stdout);
        let want = format!("forcecommand {} --config {}", program.display(), config.display());
        if !out.status.success() || !effective.lines().any(|l| l == want) {
            bail!(
                "with this drop-in sshd would still not run forced-command for {user} (another ForceCommand or Match in {} wins): {}",
                self.sshd_config.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub fn remove(&self) -> Result<()> {
        if self.ours()?.is_none() {
            println!("{} is not there: nothing to remove", self.dropin.display());
            return Ok(());
        }
        std::fs::remove_file(self.dropin)?;
        if let Some(dir) = self.dropin.parent() {
            atomic::sync_dir(dir)?;
        }
        println!("removed {}; next: reload sshd (systemctl reload ssh)", self.dropin.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot() {
        let text =
            render("backuppc", Path::new("/usr/bin/forced-command"), Path::new("/etc/backuppc-enroll/server.toml"));
        assert!(text.starts_with(HEADER));
        assert!(text.contains(
            "\nMatch User backuppc\n\tForceCommand /usr/bin/forced-command --config /etc/backuppc-enroll/server.toml\n"
        ));
        for line in [
            "PermitTTY no",
            "AllowTcpForwarding no",
            "AllowStreamLocalForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "AuthenticationMethods publickey",
        ] {
            assert!(text.contains(&format!("\t{line}\n")), "{line}");
        }
    }

    #[test]
    fn words_sshd_would_split_are_refused() {
        for bad in ["/a b/x", "/a\"b", "/a#b", "/a%h", "/a\\b", "/a\tb"] {
            assert!(config_word(Path::new(bad)).is_err(), "{bad:?}");
        }
        assert!(config_word(Path::new("/usr/bin/forced-command")).is_ok());
    }
}

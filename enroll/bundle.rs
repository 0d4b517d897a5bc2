//! `enroll bundle`: build the site bundle from the administrator's files
//! (see `backuppc_enroll::bundle` for what goes in it and why).

use crate::cli::BundleArgs;
use anyhow::{bail, Context, Result};
use backuppc_enroll::bundle::{self, Site};
use backuppc_enroll::names;
use backuppc_enroll::store::atomic::{self, Ownership};
use std::fs;

pub fn run(args: &BundleArgs) -> Result<()> {
    let site = Site { server: args.server.clone(), port: args.port, server_user: args.server_user.clone() };
    let template = match &args.client_config {
        Some(p) => fs::read_to_string(p).with_context(|| format!("reading the client config {}", p.display()))?,
        None => bundle::CLIENT_TOML_TEMPLATE.to_string(),
    };
    let client_toml = bundle::client_toml(&template, &site).map_err(anyhow::Error::msg)?;
    let mut keys = Vec::new();
    for path in &args.host_key {
        let text = fs::read_to_string(path).with_context(|| format!("reading the host key file {}", path.display()))?;
        keys.extend(bundle::host_keys(&text).map_err(|e| anyhow::anyhow!("host key file {}: {e}", path.display()))?);
    }
    let known_hosts = bundle::known_hosts(&site, &keys);
    let secret = fs::read(&args.register_key)
        .with_context(|| format!("reading the register key {}", args.register_key.display()))?;
    let register_pub = bundle::register_key(&secret)
        .map_err(|e| anyhow::anyhow!("register key {}: {e}", args.register_key.display()))?;

    if args.output.exists() && !args.force {
        bail!("{} exists: choose another --output, or add --force to replace it", args.output.display());
    }
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let bytes = bundle::tar_gz(&bundle::entries(client_toml, known_hosts, secret), mtime)?;
    // It holds a private key: readable by its writer only.
    let own = Ownership { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw(), mode: 0o600 };
    atomic::write(&args.output, &bytes, own).with_context(|| format!("writing {}", args.output.display()))?;

    let out = args.output.display();
    let target = if site.port == 22 { site.server.clone() } else { format!("{}:{}", site.server, site.port) };
    println!("wrote {out} (mode 0600: it holds the register key)");
    println!("  server      {target}, account {}", site.server_user.as_deref().unwrap_or("backuppc (default)"));
    println!("  register key {} {}", register_pub.algorithm(), names::fingerprint(&register_pub));
    let mut seen = Vec::new();
    for k in &keys {
        let fp = names::fingerprint(k);
        if !seen.contains(&fp) {
            println!("  host key    {} {fp}", k.algorithm());
            seen.push(fp);
        }
    }
    println!(
        "Check the host key fingerprints against `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server,"
    );
    println!("and that the register key is installed there (forced-command install-register-key KEY.pub).");
    println!("On each workstation, as root, with the backuppc-enroll-client package installed:");
    println!("  tar -xpzf {out} -C / && enroll");
    Ok(())
}

//! `logon_check = "ldap"`: a direct search of the directory for the logon,
//! with the logon escaped into the filter (RFC 4515), an optional simple
//! bind, LDAPS or StartTLS with a CA file, and a timeout. A directory that
//! cannot be asked is an error, never an acceptance.

use crate::config::LdapConfig;
use crate::server::policy::Directory;
use ldap3::{LdapConn, LdapConnSettings, Scope};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct Ldap(pub LdapConfig);

/// A TLS client config that trusts the certificates of `ca_file` and
/// nothing else, as OpenLDAP's `TLS_CACERT` does: a certificate from any
/// other authority, publicly trusted or not, is refused.
pub fn trusted_only(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect())
        .map_err(|e| format!("cannot read the LDAP CA file {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| format!("LDAP CA file {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("the LDAP CA file {} holds no PEM certificate", ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("LDAP TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The search filter for `logon`: the template with `{logon}` replaced by
/// the logon escaped, so `*`, `(`, `)`, `\` and NUL match literally.
pub fn filter_for(template: &str, logon: &str) -> String {
    template.replace("{logon}", &ldap3::ldap_escape(logon))
}

impl Directory for Ldap {
    fn exists(&self, logon: &str) -> Result<bool, String> {
        let c = &self.0;
        let timeout = Duration::from_secs(c.timeout.max(1));
        let mut settings = LdapConnSettings::new().set_conn_timeout(timeout).set_starttls(c.starttls);
        if let Some(ca) = &c.ca_file {
            settings = settings.set_config(trusted_only(ca)?);
        }
        let mut ldap = LdapConn::with_settings(settings, &c.url).map_err(|e| format!("LDAP {}: {e}", c.url))?;
        if let (Some(dn), Some(file)) = (&c.bind_dn, &c.bind_password_file) {
            let password = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the LDAP bind password file {}: {e}", file.display()))?;
            ldap.with_timeout(timeout)
                .simple_bind(dn, password.trim_end_matches(['\n', '\r']))
                .and_then(|r| r.success())
                .map_err(|e| format!("LDAP bind as {dn}: {e}"))?;
        }
        let filter = filter_for(&c.filter, logon);
        let found = ldap
            .with_timeout(timeout)
            .search(&c.base, Scope::Subtree, &filter, vec!["1.1"])
            .and_then(|r| r.success())
            .map_err(|e| format!("LDAP search {}: {e}", c.url))?;
        let _ = ldap.unbind();
        Ok(!found.0.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_that_trust_nothing_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let rows: &[(&str, Option<&[u8]>, &str)] = &[
            ("missing.pem", None, "cannot read"),
            ("empty.pem", Some(b""), "no PEM certificate"),
            ("text.pem", Some(b"not a certificate\n"), "no PEM certificate"),
        ];
        for (name, contents, want) in rows {
            let p = d.path().join(name);
            if let Some(c) = contents {
                std::fs::write(&p, c).unwrap();
            }
            let err = trusted_only(&p).err().unwrap_or_default();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn filters_escape_the_logon() {
        let t = "(&(objectClass=posixAccount)(uid={logon}))";
        let rows: &[(&str, &str, &str)] = &[
            ("cmartin", "(&(objectClass=posixAccount)(uid=cmartin))", "plain"),
            ("*", "(&(objectClass=posixAccount)(uid=\\2a))", "wildcard matches literally"),
            ("x)(uid=*", "(&(objectClass=posixAccount)(uid=x\\29\\28uid=\\2a))", "filter injection"),
            ("a\\b", "(&(objectClass=posixAccount)(uid=a\\5cb))", "backslash"),
            ("a\0b", "(&(objectClass=posixAccount)(uid=a\\00b))", "NUL"),
        ];
        for (logon, want, why) in rows {
            assert_eq!(filter_for(t, logon), *want, "{why}");
        }
    }
}

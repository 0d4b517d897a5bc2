//! Which hosts a fleet run targets: every enrolled host of the registry,
//! or the names given with `--hosts a,b` or `--hosts @FILE` (one name a
//! line, `#` comments; a retry file reads back). A name that is not an
//! enrolled host is kept as such, to be reported, never dropped.

/// One targeted name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// A host the toolkit has enrolled (or was handed).
    Host(String),
    /// A name that is not one; the reason says why.
    Unknown { name: String, why: String },
}

impl Selected {
    pub fn name(&self) -> &str {
        match self {
            Selected::Host(h) => h,
            Selected::Unknown { name, .. } => name,
        }
    }
}

/// `a,b, c` → the names, empty ones skipped.
pub fn parse_list(spec: &str) -> Vec<String> {
    spec.split([',', ' ', '\t']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// A host file: names separated by lines, commas or spaces, `#` starting a
/// comment to the end of its line.
pub fn parse_file(text: &str) -> Vec<String> {
    text.lines().flat_map(|l| parse_list(l.split('#').next().unwrap_or(""))).collect()
}

/// The targets: `names` (or, when `None`, every host `state_of` knows from
/// `all`), each once, in the order given. `state_of` says a host's
/// registry state; only `enrolling`, `enrolled` and `adopted` hosts are
/// reached.
pub fn select<'a>(
    names: Option<Vec<String>>,
    all: impl Iterator<Item = &'a str>,
    state_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<Selected> {
    let live = |s: &str| crate::store::registry::OWNING_STATES.contains(&s);
    let Some(names) = names else {
        return all.filter(|h| state_of(h).is_some_and(live)).map(|h| Selected::Host(h.to_string())).collect();
    };
    let mut out: Vec<Selected> = Vec::new();
    for raw in names {
        let name = crate::names::host_name(&raw).unwrap_or_else(|_| raw.clone());
        if out.iter().any(|s| s.name() == name) {
            continue;
        }
        out.push(match state_of(&name) {
            Some(s) if live(s) => Selected::Host(name),
            Some(s) => Selected::Unknown { why: format!("{name} is {s} in the registry, not enrolled"), name },
            None => Selected::Unknown {
                why: format!(
                    "{} is not in the registry: check the name (forced-command list)",
                    crate::names::printable(&name)
                ),
                name,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_list("a,b, c,,"), ["a", "b", "c"]);
        assert_eq!(parse_file("# retry\na\n\n  b  # why\nc,d\n#e\n"), ["a", "b", "c", "d"]);
        assert!(parse_file("").is_empty());
    }

    #[test]
    fn selection_table() {
        let reg = [("a", "enrolled"), ("b", "adopted"), ("r", "revoked"), ("e", "enrolling")];
        let state = |h: &str| reg.iter().find(|(n, _)| *n == h).map(|(_, s)| *s);
        let all = || reg.iter().map(|(h, _)| *h);
        let hosts = |v: &[Selected]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
        // (names, expected Host/Unknown sequence, why)
        let rows: &[(Option<&[&str]>, &str, &str)] = &[
            (None, "Host(\"a\") Host(\"b\") Host(\"e\")", "every live host, revoked ones left out"),
            (Some(&["b", "a", "b"]), "Host(\"b\") Host(\"a\")", "order kept, each once"),
            (Some(&["A."]), "Host(\"a\")", "a name is compared as a host name"),
            (Some(&["zz"]), "Unknown { name: \"zz\"", "unknown names are kept"),
            (Some(&["r"]), "is revoked in the registry", "a revoked host is reported"),
            (Some(&["x\u{1b}y"]), "Unknown { name: \"x\\u{1b}y\"", "a hostile name is kept for the report"),
        ];
        for (names, want, why) in rows {
            let got = select(names.map(|n| n.iter().map(|s| s.to_string()).collect()), all(), state);
            assert!(hosts(&got).contains(want), "{why}: {}", hosts(&got));
            for s in &got {
                if let Selected::Unknown { why: reason, .. } = s {
                    assert!(!reason.contains('\u{1b}'), "{why}: the reason is printable: {reason:?}");
                }
            }
        }
    }
}

//! `fleet report --html FILE`: the report as one self-contained page, for
//! an administrator who would rather look than read. Hosts by outcome, a
//! plot of each host's last-backup age against the threshold (worst first,
//! hosts never reached or never backed up drawn too), and each host's
//! details one click away. It is drawn from the same [`HostHealth`] values
//! and counts as the `--json` report, in the same order, and carries the
//! figures as `data-` attributes so that a test (or a script) can read
//! them back from the page.
//!
//! Everything a host sent (its output, the detail of what went wrong) and
//! every name is untrusted: it only ever appears as escaped text or inside
//! a double-quoted attribute, with control and format characters made
//! visible. The page has no script, loads nothing (its Content Security
//! Policy forbids every fetch, so even a mistake here could not call out)
//! and links only to its own anchors. Pure: the caller writes the file.

use super::health::{self, HostHealth};
use super::report::{self, Outcome};
use crate::log::rfc3339;
use crate::names;
use std::fmt::Write as _;
use std::time::Duration;

/// What the page says about the run besides the hosts.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Hours after which a last backup is stale.
    pub max_age_hours: u64,
    /// When the report was made (Unix seconds).
    pub now: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

/// The page for `hosts`, in the order given (as [`health::sort`] left
/// them, the order of `--json`).
pub fn page(hosts: &[HostHealth], run: Run) -> String {
    let (healthy, stale) = health::counts(hosts);
    let not_ok = hosts.iter().filter(|h| h.reach.outcome != Outcome::Ok).count();
    let mut p = String::with_capacity(8192 + hosts.len() * 2048);
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         form-action 'none'; base-uri 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Backup fleet: {healthy} of {n} host{s} healthy, {at}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        n = hosts.len(),
        s = plural(hosts.len()),
        at = rfc3339(run.now),
    );
    let _ = writeln!(
        p,
        "<header><h1>Backup fleet report</h1>\n<p id=\"run\" data-hosts=\"{n}\" data-max-age-hours=\"{max}\">\
         {n} host{s}, a backup older than {max} h is stale. Made by <code>forced-command fleet report</code> \
         at {at} in {secs:.1} s.</p></header>",
        n = hosts.len(),
        s = plural(hosts.len()),
        max = run.max_age_hours,
        at = rfc3339(run.now),
        secs = run.elapsed.as_secs_f64(),
    );
    glance(&mut p, hosts, healthy, stale, not_ok);
    plot(&mut p, hosts, run);
    details(&mut p, hosts, run);
    p.push_str("</body>\n</html>\n");
    p
}

const STYLE: &str = "
:root{--ok:#2e8b57;--stale:#d2691e;--both:#b22222;--unreached:#6a7f99;--ink:#1d232a;--muted:#5b6570}
body{font:14px/1.45 system-ui,sans-serif;color:var(--ink);margin:1.5em auto;max-width:70em;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
h3{font-size:1em;font-weight:600;margin:.6em 0 .2em 1.5em}caption{text-align:left;font-weight:600;white-space:nowrap}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f4f5f7;padding:.5em .7em;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;margin:.3em 0 .6em 1.5em}
.tiles{display:flex;gap:1em;flex-wrap:wrap}
.tile{border-left:6px solid;padding:.4em 1em;background:#f4f5f7;min-width:11em}
.tile .n{display:block;font-size:2em;font-weight:600}
.tile.healthy{border-color:var(--ok)}.tile.stale{border-color:var(--stale)}.tile.unreached{border-color:var(--unreached)}
table{border-collapse:collapse;margin-top:1em}td,th{padding:.15em .8em;text-align:left;border-bottom:1px solid #dde}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{width:100%;height:auto;max-width:960px}
svg text{font-size:12px;fill:var(--ink)}svg .axis{stroke:#99a}svg .tick{fill:var(--muted)}
svg .threshold{stroke:var(--both);stroke-width:1.5;stroke-dasharray:5 3}
svg .threshold-label{fill:var(--both)}
rect.healthy{fill:var(--ok)}rect.stale{fill:var(--stale)}rect.both{fill:var(--both)}rect.unreached{fill:var(--unreached)}
rect.none{fill-opacity:.25;stroke-width:1;stroke-dasharray:3 2}
rect.none.healthy{stroke:var(--ok)}rect.none.stale{stroke:var(--stale)}rect.none.both{stroke:var(--both)}
rect.none.unreached{stroke:var(--unreached)}
a.row:hover rect.bar{fill-opacity:.7}a.row:hover text{text-decoration:underline}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
i.healthy{background:var(--ok)}i.stale{background:var(--stale)}i.both{background:var(--both)}
i.unreached{background:var(--unreached)}
details.host{border-bottom:1px solid #dde;padding:.25em 0}details.host:target{background:#fff8dc}
details.host summary{cursor:pointer}
.badge{display:inline-block;min-width:9.5em;font-weight:600}
.badge.healthy{color:var(--ok)}.badge.stale{color:var(--stale)}.badge.both{color:var(--both)}
.badge.unreached{color:var(--unreached)}
.name{font-family:ui-monospace,monospace}.age{color:var(--muted);margin-left:.6em}.why{color:var(--muted);margin-left:.6em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.5em 0 .5em 1.5em}dt{color:var(--muted)}dd{margin:0}
";

/// A host's state on the page: its CSS class and what it means.
fn state(h: &HostHealth) -> (&'static str, &'static str) {
    match (h.reach.outcome == Outcome::Ok, h.problems.is_empty()) {
        (true, true) => ("healthy", "healthy"),
        (true, false) => ("stale", "backups stale or failing"),
        (false, false) => ("both", "not answering ok, backups stale or failing"),
        (false, true) => ("unreached", "not answering ok"),
    }
}

fn glance(p: &mut String, hosts: &[HostHealth], healthy: usize, stale: usize, not_ok: usize) {
    p.push_str("<section id=\"glance\"><h2>At a glance</h2>\n<div class=\"tiles\">\n");
    for (class, key, n, what) in [
        ("healthy", "healthy", healthy, "healthy"),
        ("stale", "backups_stale_or_failing", stale, "with backups stale or failing"),
        ("unreached", "not_answering_ok", not_ok, "not answering ok"),
    ] {
        let _ = writeln!(
            p,
            "<div class=\"tile {class}\" data-count-of=\"{key}\" data-count=\"{n}\"><span class=\"n\">{n}</span>{what}</div>"
        );
    }
    p.push_str("</div>\n<table id=\"outcomes\"><caption>Hosts by outcome of the session</caption>\n<tr><th>Outcome</th><th>Hosts</th></tr>\n");
    let reach: Vec<report::HostResult> = hosts.iter().map(|h| h.reach.clone()).collect();
    for (o, n) in report::counts(&reach) {
        let _ = writeln!(p, "<tr data-outcome=\"{o}\" data-count=\"{n}\"><td>{o}</td><td class=\"n\">{n}</td></tr>");
    }
    p.push_str("</table></section>\n");
}

// The plot's geometry, in SVG user units.
const WIDTH: f64 = 960.0;
const LABEL_END: f64 = 262.0;
const X0: f64 = 270.0;
const X1: f64 = 700.0;
const TOP: f64 = 40.0;
const ROW: f64 = 18.0;
const BAR: f64 = 12.0;
/// Characters of a host name shown beside its bar (the whole name is in
/// its tooltip and its details).
const LABEL_CHARS: usize = 36;

/// The hours the plot's axis spans: at least 1.5 times the threshold, up
/// to the oldest backup but no more than 4 times the threshold (an
/// ancient backup would flatten every other bar; it is drawn to the edge
/// and its real age written beside it).
fn scale_hours(hosts: &[HostHealth], max_age_hours: u64) -> f64 {
    let t = max_age_hours.max(1) as f64;
    let oldest = hosts.iter().filter_map(|h| h.age_hours).fold(0.0, f64::max);
    (t * 1.5).max(oldest.min(t * 4.0))
}

fn x_of(hours: f64, scale: f64) -> f64 {
    X0 + (hours.clamp(0.0, scale) / scale) * (X1 - X0)
}

fn plot(p: &mut String, hosts: &[HostHealth], run: Run) {
    let scale = scale_hours(hosts, run.max_age_hours);
    let height = TOP + ROW * hosts.len().max(1) as f64 + 12.0;
    let _ = writeln!(
        p,
        "<section id=\"plot\"><h2>Age of each host's last finished backup, worst first</h2>\n\
         <p class=\"legend\"><span><i class=\"healthy\"></i>healthy</span><span><i class=\"stale\"></i>backups stale or failing</span>\
         <span><i class=\"both\"></i>not answering ok, backups stale or failing</span><span><i class=\"unreached\"></i>not answering ok</span>\
         <span>pale, dashed: no finished backup</span></p>\n\
         <svg id=\"ages\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"Age in hours of each host's last finished backup against the threshold of {max} h\">",
        max = run.max_age_hours
    );
    // The axis: 0, the threshold, the end of the scale.
    let _ = writeln!(p, "<line class=\"axis\" x1=\"{X0}\" y1=\"{y}\" x2=\"{X1}\" y2=\"{y}\"/>", y = TOP - 6.0);
    for hours in [0.0, scale] {
        let _ = writeln!(
            p,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{hours:.0} h</text>",
            x = x_of(hours, scale),
            y = TOP - 10.0
        );
    }
    let tx = x_of(run.max_age_hours as f64, scale);
    let _ = writeln!(
        p,
        "<line class=\"threshold\" x1=\"{tx:.1}\" y1=\"{y1}\" x2=\"{tx:.1}\" y2=\"{y2}\"/>\n\
         <text class=\"threshold-label\" x=\"{tx:.1}\" y=\"{y}\" text-anchor=\"middle\">threshold {max} h</text>",
        y1 = TOP - 14.0,
        y2 = height - 4.0,
        y = TOP - 24.0,
        max = run.max_age_hours
    );
    if hosts.is_empty() {
        let _ = writeln!(p, "<text x=\"{X0}\" y=\"{y}\">no host in this run</text>", y = TOP + 13.0);
    }
    for (i, h) in hosts.iter().enumerate() {
        let (class, what) = state(h);
        let name = one_line(&h.reach.host);
        let y = TOP + ROW * i as f64;
        let label: String = if name.chars().count() > LABEL_CHARS {
            name.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
        } else {
            name.clone()
        };
        let (width, value, data_age) = match h.age_hours {
            Some(a) => {
                let clipped = if a > scale { " (off the scale)" } else { "" };
                ((x_of(a, scale) - X0).max(1.0), format!("{a:.1} h{clipped}"), format!(" data-age-hours=\"{a}\""))
            }
            None => (X1 - X0, "no finished backup".to_string(), String::new()),
        };
        let outcome = match h.reach.outcome {
            Outcome::Ok => String::new(),
            o => format!(", {o}"),
        };
        let _ = writeln!(
            p,
            "<a class=\"row\" href=\"#host-{i}\"><title>{title}: {value}, {what}{outcome}</title>\
             <text class=\"label\" x=\"{LABEL_END}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar {class}{none}\" data-host=\"{host}\" data-outcome=\"{o}\"{data_age} x=\"{X0}\" y=\"{y:.1}\" \
             width=\"{width:.1}\" height=\"{BAR}\"/>\
             <text class=\"value\" x=\"{vx:.1}\" y=\"{ty:.1}\">{value}{outcome}</text></a>",
            title = esc(&name),
            label = esc(&label),
            host = esc(&name),
            o = h.reach.outcome,
            none = if h.age_hours.is_none() { " none" } else { "" },
            ty = y + 10.5,
            vx = X0 + width + 5.0,
        );
    }
    p.push_str("</svg></section>\n");
}

fn details(p: &mut String, hosts: &[HostHealth], run: Run) {
    p.push_str("<section id=\"hosts\"><h2>Hosts, worst first</h2>\n");
    for (i, h) in hosts.iter().enumerate() {
        let (class, what) = state(h);
        let name = one_line(&h.reach.host);
        let r = &h.reach;
        let data_age = h.age_hours.map(|a| format!(" data-age-hours=\"{a}\"")).unwrap_or_default();
        let age = h.age_hours.map(|a| format!("{a:.1} h")).unwrap_or_else(|| "no finished backup".into());
        let mut why: Vec<&str> = Vec::new();
        if r.outcome != Outcome::Ok && !r.detail.is_empty() {
            why.push(&r.detail);
        }
        // The first reason, unless the age already says it.
        why.extend(h.problems.iter().map(String::as_str).filter(|p| *p != age));
        let _ = writeln!(
            p,
            "<details class=\"host {class}\" id=\"host-{i}\" data-host=\"{host}\" data-outcome=\"{o}\" data-healthy=\"{healthy}\"{data_age}>\n\
             <summary><span class=\"badge {class}\">{what}</span> <span class=\"name\">{host}</span>\
             <span class=\"age\">{age}</span><span class=\"why\">{why}</span></summary>\n<dl>",
            host = esc(&name),
            o = r.outcome,
            healthy = h.healthy(),
            why = esc(&one_line(why.first().copied().unwrap_or(""))),
        );
        let mut reached = format!("{} in {:.2} s", r.outcome, r.elapsed.as_secs_f64());
        if let Some(status) = r.exit_status {
            let _ = write!(reached, ", exit status {status}");
        }
        dd(p, "Session", &reached);
        if !r.detail.is_empty() {
            dd(p, "What happened", &r.detail);
        }
        match &h.last {
            Some(b) => {
                let ended = b.end_time.map(rfc3339).unwrap_or_else(|| "not recorded".into());
                dd(
                    p,
                    "Last finished backup",
                    &format!(
                        "#{} {}, started {}, ended {ended} ({age} before this report)",
                        b.num,
                        b.kind.as_str(),
                        rfc3339(b.start_time)
                    ),
                );
                dd(p, "Files, size", &format!("{} files, {} bytes", b.n_files, b.size));
                dd(
                    p,
                    "Errors",
                    &format!(
                        "xferErrs {}, xferBadFile {}, xferBadShare {}, tarErrs {}",
                        b.xfer_errs, b.xfer_bad_file, b.xfer_bad_share, b.tar_errs
                    ),
                );
            }
            None => dd(p, "Last finished backup", "none"),
        }
        let problems = if h.problems.is_empty() {
            format!("none (threshold {} h)", run.max_age_hours)
        } else {
            h.problems.join("\n")
        };
        dd(p, "Backup problems", &problems);
        p.push_str("</dl>\n");
        for (title, text) in [("What its rsyncsend said", &r.stdout), ("Its error output", &r.stderr)] {
            if !text.is_empty() {
                let _ = writeln!(p, "<h3>{title}</h3><pre>{}</pre>", esc(&names::display_text(text)));
            }
        }
        p.push_str("</details>\n");
    }
    p.push_str("</section>\n");
}

fn dd(p: &mut String, term: &str, text: &str) {
    let _ = writeln!(p, "<dt>{term}</dt><dd>{}</dd>", esc(&names::display_text(text)).replace('\n', "<br>"));
}

/// `raw` on one line, every character that would not show as itself
/// written as `\u{…}` (a newline too).
fn one_line(raw: &str) -> String {
    names::display_text(raw).replace('\n', "\\u{a}")
}

/// Text made safe for the body of an element or a double-quoted
/// attribute: the five characters HTML gives a meaning replaced by their
/// references. (`raw` has gone through [`names::display_text`] first, so
/// it holds no control characters.)
fn esc(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backuppc::backups::{self, Backup, BackupType};
    use crate::fleet::report::HostResult;
    use regex::Regex;
    use std::sync::LazyLock;

    const NOW: u64 = 1_800_000_000;
    const RUN: Run = Run { max_age_hours: 26, now: NOW, elapsed: Duration::from_millis(1500) };

    fn backup(num: u64, kind: BackupType, end_minutes_ago: u64, errs: u64) -> Backup {
        let end = NOW - end_minutes_ago * 60;
        let line = format!(
            "{num}\t{}\t{}\t{end}\t10\t100\t0\t0\t10\t100\t{errs}\t0\t0\t0\t3\t0\t0\t0\t\t0\trsync\t0\tutf8\t4.4.0\t0\t0\t",
            kind.as_str(),
            end - 60
        );
        backups::parse(line.as_bytes()).unwrap().remove(0)
    }

    fn host(name: &str, outcome: Outcome, stdout: &str, detail: &str, rows: Result<Vec<Backup>, String>) -> HostHealth {
        let reach = HostResult {
            stdout: stdout.into(),
            stderr: if outcome == Outcome::Failed { format!("stderr of {name}\n") } else { String::new() },
            exit_status: (outcome == Outcome::Failed).then_some(1),
            ..HostResult::new(name, outcome, Duration::from_millis(40), detail)
        };
        HostHealth::new(reach, rows, NOW, 26)
    }

    /// Hostile text from a workstation: each row tries another way out of
    /// the text it is put in.
    const HOSTILE: &[(&str, &str)] = &[
        ("<script>alert(1)</script>", "a script element"),
        ("\"><img src=x onerror=alert(1)>", "out of a double-quoted attribute"),
        ("'><img src=x onerror=alert(2)>", "out of a single-quoted attribute"),
        ("</svg><script src=\"http://127.0.0.1:9/x.js\"></script>", "out of the plot"),
        ("</pre></details><iframe src=\"//evil.example/\">", "out of a host's details"),
        ("</title><style>body{background:url(http://evil.example/)}</style>", "out of a tooltip"),
        ("x\u{1b}[2J\u{0}\u{7}\r\u{202e}gnp.exe\u{200b}", "control and format characters"),
        ("&lt;b&gt; &amp;", "references already escaped once"),
        ("<!-- a comment --><![CDATA[ x ]]>", "a comment and CDATA"),
    ];

    fn hostile_fleet() -> Vec<HostHealth> {
        let mut hosts = Vec::new();
        for (i, (text, _)) in HOSTILE.iter().enumerate() {
            let outcome = if i % 2 == 0 { Outcome::Ok } else { Outcome::Failed };
            let rows = if i % 3 == 0 { Err(format!("cannot read pc/{text}/backups")) } else { Ok(vec![]) };
            hosts.push(host(&format!("h{i}{text}"), outcome, &format!("{text}\nmore {text}"), text, rows));
        }
        health::sort(&mut hosts);
        hosts
    }

    /// Every tag of `page`: (name, attributes). Panics on a tag whose
    /// attributes are not a clean list of `name="value"`.
    fn tags(page: &str) -> Vec<(String, Vec<(String, String)>)> {
        static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<(/?[A-Za-z!][A-Za-z0-9-]*)([^<>]*)>").unwrap());
        static ATTR: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#"^\s+([A-Za-z][A-Za-z0-9-]*)(?:="([^"<>]*)")?"#).unwrap());
        let (tag, attr) = (&*TAG, &*ATTR);
        let mut out = Vec::new();
        let mut last = 0;
        for c in tag.captures_iter(page) {
            let m = c.get(0).unwrap();
            assert!(!page[last..m.start()].contains('<'), "a '<' outside a tag: {:?}", &page[last..m.start()]);
            last = m.end();
            let name = c[1].to_string();
            let mut rest = c[2].trim_end_matches('/');
            let mut attrs = Vec::new();
            if name == "!DOCTYPE" {
                assert_eq!(rest, " html");
                rest = "";
            }
            while !rest.trim().is_empty() {
                let a = attr.captures(rest).unwrap_or_else(|| panic!("not an attribute list in <{name}>: {rest:?}"));
                attrs.push((a[1].to_string(), a.get(2).map(|v| v.as_str().to_string()).unwrap_or_default()));
                rest = &rest[a.get(0).unwrap().end()..];
            }
            out.push((name, attrs));
        }
        assert!(!page[last..].contains('<'));
        out
    }

    const ELEMENTS: &[&str] = &[
        "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "code",
        "section", "div", "span", "table", "caption", "tr", "th", "td", "svg", "line", "text", "a", "rect", "i",
        "details", "summary", "dl", "dt", "dd", "br", "pre",
    ];
    const ATTRIBUTES: &[&str] = &[
        "lang",
        "charset",
        "http-equiv",
        "content",
        "name",
        "id",
        "class",
        "viewBox",
        "width",
        "height",
        "role",
        "aria-label",
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "text-anchor",
        "href",
        "data-hosts",
        "data-max-age-hours",
        "data-count-of",
        "data-count",
        "data-outcome",
        "data-host",
        "data-age-hours",
        "data-healthy",
    ];

    #[test]
    fn hostile_host_output_stays_text() {
        let hosts = hostile_fleet();
        let page = page(&hosts, RUN);
        let tags = tags(&page);
        for (name, attrs) in &tags {
            let bare = name.trim_start_matches('/');
            assert!(ELEMENTS.contains(&bare), "element <{name}> in the page");
            for (a, v) in attrs {
                assert!(ATTRIBUTES.contains(&a.as_str()), "attribute {a} on <{name}>");
                if a == "href" {
                    assert!(v.starts_with("#host-"), "a link out of the page: {v}");
                }
            }
        }
        // One of each container: nothing closed or opened one early.
        for (element, n) in [("svg", 1), ("/svg", 1), ("style", 1), ("/style", 1), ("title", 1 + hosts.len())] {
            assert_eq!(tags.iter().filter(|(t, _)| t == element).count(), n, "<{element}>");
        }
        assert_eq!(tags.iter().filter(|(t, _)| t == "details").count(), hosts.len());
        assert!(!page.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{202e}' || c == '\u{200b}'));
        // Shown, escaped, not lost.
        for (text, why) in HOSTILE {
            let shown = esc(&one_line(text));
            assert!(page.contains(&format!("<pre>{shown}\nmore {shown}</pre>")), "{why}: {shown}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("x\\u{1b}[2J\\u{0}\\u{7}\\u{d}\\u{202e}gnp.exe\\u{200b}"));
        assert!(page.contains("&amp;lt;b&amp;gt; &amp;amp;"));
        // And nothing fetched: the policy forbids it, and no URL is named.
        assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline';"));
        // Host names sit in data-host, as text; no other attribute names a place.
        for (name, attrs) in &tags {
            for (a, v) in attrs.iter().filter(|(a, _)| a != "data-host") {
                assert!(!v.contains("http") && !v.contains("//") && !v.contains("url("), "<{name} {a}={v:?}>");
            }
        }
        assert!(!STYLE.contains("url(") && !STYLE.contains("@import"));
    }

    fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
        attrs.iter().find(|(a, _)| a == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn figures_and_order_are_the_reports() {
        let mut hosts = vec![
            host("fresh", Outcome::Ok, "rsyncsend 1\n", "", Ok(vec![backup(0, BackupType::Full, 90, 0)])),
            host("stale", Outcome::Ok, "", "", Ok(vec![backup(3, BackupType::Incr, 80 * 60 + 7, 0)])),
            host("ancient", Outcome::Ok, "", "", Ok(vec![backup(1, BackupType::Full, 5000 * 60, 0)])),
            host("errors", Outcome::Ok, "", "", Ok(vec![backup(2, BackupType::Full, 60, 4)])),
            host("down", Outcome::Refused, "", "connection refused", Ok(vec![backup(0, BackupType::Full, 60, 0)])),
            host("never", Outcome::Timeout, "", "no answer in 2 s", Ok(vec![])),
            host("new", Outcome::Ok, "", "", Ok(vec![])),
        ];
        health::sort(&mut hosts);
        let page = page(&hosts, RUN);
        let tags = tags(&page);
        let with = |element: &str, class: &str| -> Vec<&Vec<(String, String)>> {
            tags.iter()
                .filter(|(t, a)| t == element && attr(a, "class").is_some_and(|c| c.split(' ').any(|w| w == class)))
                .map(|(_, a)| a)
                .collect()
        };
        let order: Vec<&str> = hosts.iter().map(|h| h.reach.host.as_str()).collect();
        for (element, class) in [("details", "host"), ("rect", "bar")] {
            let seen: Vec<&str> = with(element, class).iter().map(|a| attr(a, "data-host").unwrap()).collect();
            assert_eq!(seen, order, "every host, worst first, in the {element}s");
            for (a, h) in with(element, class).iter().zip(&hosts) {
                let age = attr(a, "data-age-hours").map(|v| v.parse::<f64>().unwrap());
                assert_eq!(age, h.age_hours, "{}: the same figure as --json", h.reach.host);
                assert_eq!(attr(a, "data-outcome"), Some(h.reach.outcome.as_str()));
            }
        }
        for (i, a) in with("details", "host").iter().enumerate() {
            assert_eq!(attr(a, "id"), Some(format!("host-{i}").as_str()));
            assert_eq!(attr(a, "data-healthy"), Some(if hosts[i].healthy() { "true" } else { "false" }));
        }
        let links: Vec<&str> = tags.iter().filter(|(t, _)| t == "a").map(|(_, a)| attr(a, "href").unwrap()).collect();
        assert_eq!(
            links,
            (0..hosts.len()).map(|i| format!("#host-{i}")).collect::<Vec<_>>(),
            "each bar opens its host"
        );
        let count = |key: &str| -> String {
            let tile = tags.iter().find(|(_, a)| attr(a, "data-count-of") == Some(key)).unwrap();
            attr(&tile.1, "data-count").unwrap().to_string()
        };
        let (healthy, stale) = health::counts(&hosts);
        assert_eq!((count("healthy"), count("backups_stale_or_failing")), (healthy.to_string(), stale.to_string()));
        assert_eq!(count("not_answering_ok"), "2");
        let outcomes: Vec<(String, String)> = tags
            .iter()
            .filter(|(t, a)| t == "tr" && attr(a, "data-outcome").is_some())
            .map(|(_, a)| (attr(a, "data-outcome").unwrap().into(), attr(a, "data-count").unwrap().into()))
            .collect();
        let reach: Vec<HostResult> = hosts.iter().map(|h| h.reach.clone()).collect();
        let want: Vec<(String, String)> =
            report::counts(&reach).into_iter().map(|(o, n)| (o.as_str().into(), n.to_string())).collect();
        assert_eq!(outcomes, want);
        assert_eq!(outcomes[0], ("ok".to_string(), "5".to_string()));
        // The ancient backup is drawn to the edge of the scale (4 × 26 h)
        // and its real age written beside it; hosts with no backup are a
        // full pale bar.
        let bar = |h: &str| with("rect", "bar").into_iter().find(|a| attr(a, "data-host") == Some(h)).unwrap();
        assert_eq!(attr(bar("ancient"), "width"), Some(format!("{:.1}", X1 - X0).as_str()));
        assert!(page.contains(">5000.0 h (off the scale)</text>"), "{page}");
        assert!(attr(bar("never"), "class").unwrap().contains("none"));
        assert!(attr(bar("new"), "class").unwrap().contains("none"));
        let w = |h: &str| attr(bar(h), "width").unwrap().parse::<f64>().unwrap();
        assert!(w("errors") < w("fresh") && w("fresh") < w("stale") && w("stale") < w("ancient"));
        let threshold = tags.iter().find(|(t, a)| t == "line" && attr(a, "class") == Some("threshold")).unwrap();
        assert_eq!(attr(&threshold.1, "x1"), Some(format!("{:.1}", x_of(26.0, 104.0)).as_str()));
        assert!(page.contains("<title>Backup fleet: 1 of 7 hosts healthy, "), "{page}");
    }

    #[test]
    fn the_scale() {
        let with_ages = |ages: &[Option<f64>]| -> Vec<HostHealth> {
            ages.iter().map(|a| HostHealth { age_hours: *a, ..host("h", Outcome::Ok, "", "", Ok(vec![])) }).collect()
        };
        // (ages, threshold, hours the axis spans, why)
        let rows: &[(&[Option<f64>], u64, f64, &str)] = &[
            (&[], 26, 39.0, "no host: 1.5 × the threshold"),
            (&[None, Some(2.0)], 26, 39.0, "all fresh: the threshold still shows"),
            (&[Some(60.0)], 26, 60.0, "up to the oldest"),
            (&[Some(60.0), Some(9000.0)], 26, 104.0, "no more than 4 × the threshold"),
            (&[Some(1.0)], 0, 1.5, "a threshold of 0 h"),
        ];
        for (ages, threshold, want, why) in rows {
            assert_eq!(scale_hours(&with_ages(ages), *threshold), *want, "{why}");
        }
        let empty = page(&[], RUN);
        assert!(empty.contains("no host in this run") && empty.contains("data-hosts=\"0\""));
    }

    fn hostile_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let risky: Vec<char> =
            "<>\"'&/=! \n\t\r\u{0}\u{1b}\u{7f}\u{85}\u{a0}\u{202e}\u{2028}\u{feff}scriptvgonerrorhttp:"
                .chars()
                .collect();
        proptest::collection::vec(prop_oneof![4 => proptest::sample::select(risky), 1 => any::<char>()], 0..60)
            .prop_map(|v| v.into_iter().collect())
    }

    proptest::proptest! {
        #[test]
        fn any_host_text_stays_text(
            texts in proptest::collection::vec((hostile_text(), hostile_text(), hostile_text()), 1..5),
        ) {
            let mut hosts: Vec<HostHealth> = texts
                .iter()
                .enumerate()
                .map(|(i, (name, out, detail))| {
                    let mut h = host(&format!("{i}{name}"), Outcome::ALL[i % Outcome::ALL.len()], out, detail, Err(detail.clone()));
                    h.reach.stderr = out.clone();
                    h
                })
                .collect();
            health::sort(&mut hosts);
            let page = page(&hosts, RUN);
            let tags = tags(&page);
            for (name, attrs) in &tags {
                proptest::prop_assert!(ELEMENTS.contains(&name.trim_start_matches('/')), "<{}>", name);
                for (a, _) in attrs {
                    proptest::prop_assert!(ATTRIBUTES.contains(&a.as_str()), "{} on <{}>", a, name);
                }
            }
            proptest::prop_assert_eq!(tags.iter().filter(|(t, _)| t == "details").count(), hosts.len());
            proptest::prop_assert_eq!(tags.iter().filter(|(t, _)| t == "svg").count(), 1);
            proptest::prop_assert!(!page.chars().any(|c| c.is_control() && c != '\n'));
        }
    }
}

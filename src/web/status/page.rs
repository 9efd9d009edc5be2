//! The agent's status page: one server-rendered HTML document, no build step, no external assets.
//!
//! The agent fills a [`StatusView`] and serves [`render`]'s output as [`CONTENT_TYPE`]. The page
//! refreshes itself every 30 s, works without JavaScript (transcripts sit in `<details>`), and a
//! few lines of inline script only remember which `<details>` were open across refreshes.
//!
//! Every string that comes from the view is HTML-escaped on the way out: connector names come from
//! configuration, but messages, errors, TLS strings and transcripts are server text and hostile.
//!
//! Each connector is one `<tbody class="connector">` holding its row, `<tr id="connector-SLUG"
//! data-code="CODE|ok" data-state="ok|failing|pending|disabled">`, followed by a full-width
//! detail row (message, fix, warnings, and the `<details>` with the last probe and recent probes).

use crate::agent::Recent;
use crate::taxonomy::{Code, Reason};
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Content-Type` to serve [`render`]'s output with.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Seconds between automatic refreshes of the page.
pub const REFRESH_SECONDS: u32 = 30;

const PRODUCT: &str = "mailflow-exporter";
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Everything the status page shows. `generated_at` is "now" for every relative time on the page.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub generated_at: SystemTime,
    pub version: String,
    pub config_file: String,
    pub last_reload_ok: bool,
    /// e.g. "demo mode: loopback fault servers"
    pub listen_note: Option<String>,
    pub connectors: Vec<ConnectorView>,
}

/// The state of one connector as the page shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ViewState {
    Ok,
    Failing,
    Pending,
    Disabled,
}

impl ViewState {
    /// Lower-case word, used in `data-state` and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewState::Ok => "ok",
            ViewState::Failing => "failing",
            ViewState::Pending => "pending",
            ViewState::Disabled => "disabled",
        }
    }

    /// Badge text (the badge is never colour only).
    pub fn label(self) -> &'static str {
        match self {
            ViewState::Ok => "✓ OK",
            ViewState::Failing => "✗ FAILING",
            ViewState::Pending => "… PENDING",
            ViewState::Disabled => "– DISABLED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectorView {
    pub name: String,
    pub enabled: bool,
    pub test_mode: bool,
    /// e.g. "smart hosts: mail.contoso.com, 203.0.113.5" or "MX of: contoso.com"
    pub routing: String,
    /// e.g. "domain-validation (*.contoso.com)"
    pub tls_settings: String,
    pub state: ViewState,
    pub code: Option<Code>,
    pub reason: Option<Reason>,
    pub phase: Option<String>,
    /// Exchange-style line of the last failure.
    pub message: Option<String>,
    pub failing_since: Option<SystemTime>,
    /// Age of the oldest message Exchange Online would hold now.
    pub queue_age: Option<Duration>,
    /// Before messages expire (NDR).
    pub time_left: Option<Duration>,
    /// Tenant message expiration (12–24 h).
    pub expiration: Duration,
    /// Soonest-expiring leaf seen.
    pub cert_expiry: Option<CertExpiry>,
    pub last_probe_at: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    /// Of the last probe.
    pub attempts: Vec<AttemptView>,
    /// Newest first.
    pub recent: Vec<Recent>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CertExpiry {
    pub host: String,
    pub subject: String,
    pub not_after: SystemTime,
    pub problems: Vec<Reason>,
}

#[derive(Debug, Clone)]
pub struct AttemptView {
    pub host: String,
    pub address: String,
    pub delivered: bool,
    pub code: Option<Code>,
    pub reason: Option<Reason>,
    pub error: Option<String>,
    pub tls: Option<String>,
    pub transcript: Vec<String>,
}

/// Escapes `& < > " '` so any text is safe in HTML content and in quoted attribute values.
pub fn escape_html(s: &str) -> String {
    Esc(s).to_string()
}

/// Displays a string HTML-escaped, without an intermediate allocation.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&s[start..i])?;
            f.write_str(rep)?;
            start = i + 1;
        }
        f.write_str(&s[start..])
    }
}

/// The base of a connector's element id: lower-case ASCII letters and digits joined by `-`
/// (`"Outbound to Contoso"` → `outbound-to-contoso`, `connector` when nothing is left). On the
/// page the row id is `connector-` + this slug; a name whose slug is already taken gets `-2`, `-3`….
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    let mut gap = false;
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            if gap && !s.is_empty() {
                s.push('-');
            }
            gap = false;
            s.push(ch.to_ascii_lowercase());
            if s.len() >= 64 {
                break;
            }
        } else {
            gap = true;
        }
    }
    if s.is_empty() {
        s.push_str("connector");
    }
    s
}

/// Compact duration: `2d 3h`, `3h 12m`, `45m`, `12s` (the two most significant units, zeros dropped).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (big, big_unit, small, small_unit) = if secs >= DAY {
        (secs / DAY, "d", (secs % DAY) / HOUR, "h")
    } else if secs >= HOUR {
        (secs / HOUR, "h", (secs % HOUR) / 60, "m")
    } else if secs >= 60 {
        (secs / 60, "m", secs % 60, "s")
    } else {
        return format!("{secs}s");
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit} {small}{small_unit}")
    }
}

/// A probe's run time: `850 ms`, `1.25 s`, then [`format_duration`].
fn format_elapsed(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format_duration(d)
    }
}

/// The tenant's message expiration in whole hours when it is one (`24h`, not `1d`).
fn format_expiration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(HOUR) {
        format!("{}h", secs / HOUR)
    } else {
        format_duration(d)
    }
}

/// `3h 12m ago`, `just now`, or `in 5m` for a time after `now`.
fn relative(now: SystemTime, t: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(d) if d < Duration::from_secs(1) => "just now".to_string(),
        Ok(d) => format!("{} ago", format_duration(d)),
        Err(e) => format!("in {}", format_duration(e.duration())),
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map(|s| -s).unwrap_or(i64::MIN),
    }
}

/// `(display, machine)`: `2025-01-02 03:04:05 UTC` and `2025-01-02T03:04:05Z`.
fn utc(t: SystemTime) -> (String, String) {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds(t)) {
        Ok(dt) => {
            let date = format!("{:04}-{:02}-{:02}", dt.year(), u8::from(dt.month()), dt.day());
            let clock = format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second());
            (format!("{date} {clock} UTC"), format!("{date}T{clock}Z"))
        }
        Err(_) => ("(time out of range)".to_string(), String::new()),
    }
}

/// `<time>` with the absolute UTC time.
fn time_tag(t: SystemTime) -> String {
    let (shown, machine) = utc(t);
    format!("<time datetime=\"{}\">{}</time>", Esc(&machine), Esc(&shown))
}

/// Whether the time left before NDRs deserves a highlight: under 4 h or under 25 % of expiration.
fn ndr_soon(left: Duration, expiration: Duration) -> bool {
    left < Duration::from_secs(4 * HOUR) || left.checked_mul(4).is_some_and(|x| x < expiration)
}

/// What `data-code` says: the code, else `ok` (`other` for a failing row without a code).
fn data_code(c: &ConnectorView) -> &'static str {
    match (c.code, c.state) {
        (Some(code), _) => code.as_str(),
        (None, ViewState::Failing) => Code::Other.as_str(),
        (None, _) => "ok",
    }
}

const CSS: &str = r#"
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--panel:#f6f8fa;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--pend:#0969da;--off:#6e7781;--bad-bg:#ffebe9;--warn-bg:#fff8c5}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;
--panel:#151b23;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--pend:#4493f8;--off:#9198a1;--bad-bg:#3c1618;
--warn-bg:#362a0b}}
*{box-sizing:border-box}
body{margin:0 auto;padding:1rem 1.5rem;max-width:1600px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.4rem;margin:0 0 .25rem}
h3{font-size:.95rem;margin:.75rem 0 .25rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Consolas,"Liberation Mono",monospace;font-size:.9em}
a{color:inherit}
.muted,small{color:var(--muted)}
small{font-size:.85em}
.meta{margin:0;color:var(--muted)}
.banner{border:1px solid var(--bad);background:var(--bad-bg);padding:.6rem .9rem;border-radius:6px;margin:.75rem 0}
.note{border:1px solid var(--line);background:var(--panel);padding:.4rem .9rem;border-radius:6px;margin:.75rem 0}
.summary{font-size:1.05rem;margin:1rem 0 .5rem}
caption{text-align:left;color:var(--muted);padding-bottom:.25rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.45rem .5rem}
thead th{border-bottom:2px solid var(--line);font-size:.85em;color:var(--muted);white-space:nowrap}
tbody.connector{border-bottom:1px solid var(--line)}
tbody.connector>tr>th{font-weight:600;min-width:10em}
tr.detail>td{padding-top:0}
td,th{overflow-wrap:break-word}
.badge{display:inline-block;padding:.1em .55em;border-radius:1em;font-weight:700;font-size:.8em;
white-space:nowrap;color:var(--bg);background:var(--off)}
.s-ok .badge{background:var(--ok)}.s-failing .badge{background:var(--bad)}.s-pending .badge{background:var(--pend)}
.tag{display:inline-block;border:1px solid var(--line);border-radius:4px;padding:0 .35em;font-size:.8em;
font-weight:400;color:var(--muted);margin-left:.25em;white-space:nowrap}
.tag.bad{border-color:var(--bad);color:var(--bad)}
.bad{color:var(--bad)}.warn{color:var(--warn)}.good{color:var(--ok)}
.urgent{color:var(--bad);font-weight:700}
abbr{text-decoration:underline dotted;font-family:ui-monospace,monospace;font-weight:700}
.msg{margin:.2rem 0;font-family:ui-monospace,monospace;font-size:.85em;overflow-wrap:anywhere}
.fix{margin:.3rem 0;padding:.35rem .6rem;border-left:3px solid var(--bad);background:var(--panel)}
ul.warnings{margin:.3rem 0;padding-left:1.2rem;color:var(--warn)}
details{margin:.25rem 0 .35rem}
summary{cursor:pointer;color:var(--muted)}
details>div{border:1px solid var(--line);border-radius:6px;padding:.25rem .75rem .6rem;margin-top:.35rem;
background:var(--panel)}
table.attempts th,table.attempts td{padding:.2rem .4rem;border-bottom:1px solid var(--line);font-size:.9em}
pre{margin:.25rem 0 .5rem;padding:.5rem;background:var(--bg);border:1px solid var(--line);border-radius:4px;
white-space:pre-wrap;overflow-wrap:anywhere;max-height:24em;overflow:auto}
ol.recent{margin:.25rem 0;padding-left:1.4rem}
ol.recent li{margin:.1rem 0}
footer{margin-top:1.5rem;color:var(--muted);font-size:.85em}
"#;

/// Keeps open `<details>` open across the automatic refresh. The page works without it.
const SCRIPT: &str = r#"(function(){try{var k="mailflow-open",s=sessionStorage;
JSON.parse(s.getItem(k)||"[]").forEach(function(i){var d=document.getElementById(i);if(d)d.open=true});
document.querySelectorAll("details[id]").forEach(function(d){d.addEventListener("toggle",function(){
s.setItem(k,JSON.stringify([].map.call(document.querySelectorAll("details[open][id]"),function(e){return e.id})))})})
}catch(e){}})();"#;

/// Renders the whole page. `view.generated_at` is "now" for every relative time.
pub fn render(view: &StatusView) -> String {
    let mut out = String::with_capacity(16 * 1024 + view.connectors.len() * 4096);
    // Writing into a String cannot fail.
    let _ = write_page(&mut out, view);
    out
}

fn write_page(o: &mut String, v: &StatusView) -> fmt::Result {
    let now = v.generated_at;
    let count = |s: ViewState| v.connectors.iter().filter(|c| c.state == s).count();
    let (ok, failing, pending, disabled) = (
        count(ViewState::Ok),
        count(ViewState::Failing),
        count(ViewState::Pending),
        count(ViewState::Disabled),
    );
    let title_prefix = if failing > 0 {
        format!("({failing} failing) ")
    } else {
        String::new()
    };

    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    writeln!(o, "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")?;
    o.push_str("<meta name=\"robots\" content=\"noindex\">\n<link rel=\"icon\" href=\"data:,\">\n");
    writeln!(o, "<title>{title_prefix}{PRODUCT} status</title>")?;
    writeln!(o, "<style>{CSS}</style>\n</head>\n<body>")?;

    // Header
    o.push_str("<header>\n");
    writeln!(
        o,
        "<h1>{PRODUCT} <small class=\"mono\">{}</small></h1>",
        Esc(&v.version)
    )?;
    let reload = if v.last_reload_ok {
        "<span class=\"good\">configuration loaded</span>"
    } else {
        "<strong class=\"bad\">⚠ last reload failed</strong>"
    };
    writeln!(
        o,
        "<p class=\"meta\">Configuration <code>{}</code> · {reload} · generated {} · refreshes every {REFRESH_SECONDS} s</p>",
        Esc(&v.config_file),
        time_tag(now)
    )?;
    if !v.last_reload_ok {
        writeln!(
            o,
            "<div class=\"banner reload-failed\" role=\"alert\"><strong>⚠ The last configuration reload failed.</strong> \
             The agent keeps probing with the previous configuration, so this page may not match <code>{}</code>. \
             The agent's log names the error (file:line:column).</div>",
            Esc(&v.config_file)
        )?;
    }
    if let Some(note) = &v.listen_note {
        writeln!(o, "<p class=\"note\">ℹ {}</p>", Esc(note))?;
    }
    o.push_str("</header>\n<main>\n");

    // Summary
    let n = v.connectors.len();
    writeln!(
        o,
        "<p class=\"summary\"><strong>{n} connector{}</strong>: <span class=\"good\">{ok} ok</span>, \
         <span class=\"{}\">{failing} failing</span>, {pending} pending, {disabled} disabled</p>",
        if n == 1 { "" } else { "s" },
        if failing > 0 { "bad" } else { "muted" }
    )?;

    // Connector table
    o.push_str(
        "<table class=\"connectors\">\n<caption>Outbound connectors, \
                as Exchange Online would deliver to them now</caption>\n<thead><tr>",
    );
    for h in [
        "State",
        "Connector",
        "Routing",
        "TLS",
        "Code",
        "Failing since",
        "Queue age",
        "Time left before NDR",
        "Certificate",
    ] {
        write!(o, "<th scope=\"col\">{h}</th>")?;
    }
    o.push_str("</tr></thead>\n");
    if v.connectors.is_empty() {
        o.push_str("<tbody><tr><td colspan=\"9\" class=\"muted\">No connectors configured.</td></tr></tbody>\n");
    }
    let mut used = HashSet::new();
    for c in &v.connectors {
        let base = slug(&c.name);
        let mut id = base.clone();
        let mut k = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}-{k}");
            k += 1;
        }
        write_connector(o, c, &id, now)?;
    }
    o.push_str("</table>\n</main>\n");
    writeln!(
        o,
        "<footer>Codes are the ones Exchange Online puts in its queue for the connector. Times are UTC. \
         Exchange Online retries until the message expiration, then returns an NDR.</footer>"
    )?;
    writeln!(o, "<script>{SCRIPT}</script>\n</body>\n</html>")
}

fn write_connector(o: &mut String, c: &ConnectorView, id: &str, now: SystemTime) -> fmt::Result {
    let state = c.state.as_str();
    writeln!(o, "<tbody class=\"connector s-{state}\">")?;
    writeln!(
        o,
        "<tr id=\"connector-{}\" data-code=\"{}\" data-state=\"{state}\">",
        Esc(id),
        data_code(c)
    )?;

    // State
    write!(o, "<td><span class=\"badge\">{}</span>", c.state.label())?;
    if let Some(at) = c.last_probe_at {
        write!(o, "<br><small>checked {}</small>", Esc(&relative(now, at)))?;
    }
    o.push_str("</td>\n");

    // Name and tags
    write!(
        o,
        "<th scope=\"row\"><a href=\"#connector-{}\">{}</a>",
        Esc(id),
        Esc(&c.name)
    )?;
    if c.test_mode {
        o.push_str(" <span class=\"tag\">test mode</span>");
    }
    if !c.enabled {
        o.push_str(" <span class=\"tag\">disabled</span>");
    }
    o.push_str("</th>\n");

    // Routing and TLS
    writeln!(o, "<td>{}</td>\n<td>{}</td>", Esc(&c.routing), Esc(&c.tls_settings))?;

    // Code
    o.push_str("<td>");
    match c.code {
        Some(code) => {
            write!(
                o,
                "<abbr title=\"{}\">{}</abbr> {}",
                Esc(code.title()),
                Esc(code.as_str()),
                Esc(code.title())
            )?;
            if let Some(r) = c.reason {
                write!(
                    o,
                    "<br><small><span class=\"mono\">{}</span>: {}",
                    Esc(r.as_str()),
                    Esc(r.describe())
                )?;
                if let Some(p) = &c.phase {
                    write!(o, " (phase <span class=\"mono\">{}</span>)", Esc(p))?;
                }
                o.push_str("</small>");
            } else if let Some(p) = &c.phase {
                write!(o, "<br><small>phase <span class=\"mono\">{}</span></small>", Esc(p))?;
            }
        }
        None => o.push_str(match c.state {
            ViewState::Ok => "<span class=\"good\">delivering</span>",
            ViewState::Failing => "<span class=\"bad\">failing (no code)</span>",
            ViewState::Pending => "<span class=\"muted\">awaiting first probe</span>",
            ViewState::Disabled => "<span class=\"muted\">not probed</span>",
        }),
    }
    o.push_str("</td>\n");

    // Failing since
    match c.failing_since {
        Some(t) => writeln!(
            o,
            "<td>{}<br><small>{}</small></td>",
            time_tag(t),
            Esc(&relative(now, t))
        )?,
        None => o.push_str("<td class=\"muted\">—</td>\n"),
    }

    // Queue age
    match c.queue_age {
        Some(d) => writeln!(o, "<td>{}</td>", Esc(&format_duration(d)))?,
        None => o.push_str("<td class=\"muted\">—</td>\n"),
    }

    // Time left before NDR
    let expiration = format_expiration(c.expiration);
    match c.time_left {
        Some(left) if left.is_zero() => writeln!(
            o,
            "<td><strong class=\"urgent\">⚠ expired</strong><br><small>NDRs are being sent ({} expiration)</small></td>",
            Esc(&expiration)
        )?,
        Some(left) if ndr_soon(left, c.expiration) => writeln!(
            o,
            "<td><strong class=\"urgent\" title=\"less than 4 h or 25 % of the message expiration left\">⚠ {}</strong>\
             <br><small>of {} expiration</small></td>",
            Esc(&format_duration(left)),
            Esc(&expiration)
        )?,
        Some(left) => writeln!(
            o,
            "<td>{}<br><small>of {} expiration</small></td>",
            Esc(&format_duration(left)),
            Esc(&expiration)
        )?,
        None => o.push_str("<td class=\"muted\">—</td>\n"),
    }

    // Certificate
    match &c.cert_expiry {
        Some(cert) => write_cert(o, cert, now)?,
        None => o.push_str("<td class=\"muted\">—</td>\n"),
    }
    o.push_str("</tr>\n");

    write_detail_row(o, c, id, now)?;
    o.push_str("</tbody>\n");
    Ok(())
}

fn write_cert(o: &mut String, cert: &CertExpiry, now: SystemTime) -> fmt::Result {
    let (class, text) = match cert.not_after.duration_since(now) {
        Err(e) => ("bad", format!("⚠ expired {} ago", format_duration(e.duration()))),
        Ok(left) => {
            let days = left.as_secs() / DAY;
            let text = match days {
                0 => format!("{} left", format_duration(left)),
                1 => "1 day left".to_string(),
                d => format!("{d} days left"),
            };
            if days < 7 {
                ("bad", format!("⚠ {text}"))
            } else if days < 21 {
                ("warn", text)
            } else {
                ("good", text)
            }
        }
    };
    let class = if cert.problems.is_empty() { class } else { "bad" };
    write!(o, "<td><strong class=\"cert {class}\">{}</strong>", Esc(&text))?;
    for p in &cert.problems {
        write!(
            o,
            " <span class=\"tag bad\" title=\"{}\">{}</span>",
            Esc(p.describe()),
            Esc(p.as_str())
        )?;
    }
    let (shown, _) = utc(cert.not_after);
    writeln!(
        o,
        "<br><small>{} · {}<br>until {}</small></td>",
        Esc(&cert.host),
        Esc(&cert.subject),
        Esc(&shown)
    )
}

fn write_detail_row(o: &mut String, c: &ConnectorView, id: &str, now: SystemTime) -> fmt::Result {
    writeln!(
        o,
        "<tr class=\"detail\" data-connector=\"{}\"><td></td><td colspan=\"8\">",
        Esc(id)
    )?;
    if c.state == ViewState::Failing {
        if let Some(m) = &c.message {
            writeln!(o, "<p class=\"msg\">{}</p>", Esc(m))?;
        }
        let code = c.code.unwrap_or(Code::Other);
        writeln!(
            o,
            "<p class=\"fix\"><strong>How to fix <abbr title=\"{}\">{}</abbr>:</strong> {}</p>",
            Esc(code.title()),
            Esc(code.as_str()),
            Esc(code.fix())
        )?;
    }
    if !c.warnings.is_empty() {
        o.push_str("<ul class=\"warnings\">");
        for w in &c.warnings {
            write!(o, "<li>⚠ {}</li>", Esc(w))?;
        }
        o.push_str("</ul>\n");
    }

    // The last probe, behind a disclosure.
    write!(o, "<details id=\"details-{}\"><summary>", Esc(id))?;
    match c.last_probe_at {
        Some(at) => {
            write!(
                o,
                "Last probe {} · {} attempt{}",
                Esc(&relative(now, at)),
                c.attempts.len(),
                if c.attempts.len() == 1 { "" } else { "s" }
            )?;
            if let Some(d) = c.last_duration {
                write!(o, " · took {}", Esc(&format_elapsed(d)))?;
            }
        }
        None => o.push_str("No probe yet"),
    }
    let has_transcript = c.attempts.iter().any(|a| !a.transcript.is_empty());
    write!(
        o,
        " · {} recent probe{} — {}",
        c.recent.len(),
        if c.recent.len() == 1 { "" } else { "s" },
        if has_transcript {
            "click to see the transcript"
        } else {
            "click for details"
        }
    )?;
    o.push_str("</summary>\n<div>\n");

    if c.state == ViewState::Failing {
        let code = c.code.unwrap_or(Code::Other);
        writeln!(o, "<h3>Usual causes of {}</h3>\n<ul>", Esc(code.as_str()))?;
        for cause in code.causes() {
            write!(o, "<li>{}</li>", Esc(cause))?;
        }
        o.push_str("</ul>\n");
    }

    if let Some(at) = c.last_probe_at {
        writeln!(o, "<h3>Attempts of the last probe ({})</h3>", time_tag(at))?;
    } else {
        o.push_str("<h3>Attempts of the last probe</h3>\n");
    }
    if c.attempts.is_empty() {
        o.push_str("<p class=\"muted\">No attempts recorded.</p>\n");
    } else {
        o.push_str("<table class=\"attempts\"><thead><tr>");
        for h in ["Host", "Address", "Verdict", "Error", "TLS"] {
            write!(o, "<th scope=\"col\">{h}</th>")?;
        }
        o.push_str("</tr></thead>\n");
        for a in &c.attempts {
            write!(
                o,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td>",
                Esc(&a.host),
                Esc(&a.address)
            )?;
            write_verdict(o, a.delivered, a.code, a.reason)?;
            writeln!(
                o,
                "</td><td>{}</td><td>{}</td></tr>",
                Esc(a.error.as_deref().unwrap_or("—")),
                Esc(a.tls.as_deref().unwrap_or("none"))
            )?;
        }
        o.push_str("</table>\n");
        for a in c.attempts.iter().filter(|a| !a.transcript.is_empty()) {
            writeln!(
                o,
                "<h3>Transcript: {} <span class=\"mono\">{}</span></h3>",
                Esc(&a.host),
                Esc(&a.address)
            )?;
            o.push_str("<pre>");
            for line in &a.transcript {
                writeln!(o, "{}", Esc(line))?;
            }
            o.push_str("</pre>\n");
        }
    }

    o.push_str("<h3>Recent probes (newest first)</h3>\n");
    if c.recent.is_empty() {
        o.push_str("<p class=\"muted\">None yet.</p>\n");
    } else {
        o.push_str("<ol class=\"recent\">\n");
        for r in &c.recent {
            write!(
                o,
                "<li>{} <small>({})</small> ",
                time_tag(r.at),
                Esc(&relative(now, r.at))
            )?;
            write_verdict(o, r.delivered, r.code, r.reason)?;
            if !r.message.is_empty() {
                write!(o, " <span class=\"msg\">{}</span>", Esc(&r.message))?;
            }
            o.push_str("</li>\n");
        }
        o.push_str("</ol>\n");
    }
    o.push_str("</div></details>\n</td></tr>\n");
    Ok(())
}

fn write_verdict(o: &mut String, delivered: bool, code: Option<Code>, reason: Option<Reason>) -> fmt::Result {
    if delivered {
        return o.write_str("<span class=\"good\">✓ accepted</span>");
    }
    o.write_str("<span class=\"bad\">✗ failed</span>")?;
    if let Some(code) = code {
        write!(
            o,
            " <abbr title=\"{}\">{}</abbr>",
            Esc(code.title()),
            Esc(code.as_str())
        )?;
    }
    if let Some(r) = reason {
        write!(
            o,
            " <span class=\"mono\" title=\"{}\">{}</span>",
            Esc(r.describe()),
            Esc(r.as_str())
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn at(now: SystemTime, secs_ago: u64) -> SystemTime {
        now - Duration::from_secs(secs_ago)
    }

    fn connector(name: &str, state: ViewState) -> ConnectorView {
        ConnectorView {
            name: name.to_string(),
            enabled: true,
            test_mode: false,
            routing: "smart hosts: mail.contoso.com, 203.0.113.5".to_string(),
            tls_settings: "domain-validation (*.contoso.com)".to_string(),
            state,
            code: None,
            reason: None,
            phase: None,
            message: None,
            failing_since: None,
            queue_age: None,
            time_left: None,
            expiration: Duration::from_secs(24 * HOUR),
            cert_expiry: None,
            last_probe_at: None,
            last_duration: None,
            attempts: Vec::new(),
            recent: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn view(last_reload_ok: bool) -> StatusView {
        // 2025-03-04 05:06:07 UTC
        let now = UNIX_EPOCH + Duration::from_secs(1_741_064_767);

        let mut ok = connector("Outbound to Fabrikam", ViewState::Ok);
        ok.routing = "MX of: fabrikam.com".to_string();
        ok.last_probe_at = Some(at(now, 45));
        ok.last_duration = Some(Duration::from_millis(1250));
        ok.cert_expiry = Some(CertExpiry {
            host: "mx1.fabrikam.com".to_string(),
            subject: "CN=mx1.fabrikam.com".to_string(),
            not_after: now + Duration::from_secs(90 * DAY),
            problems: Vec::new(),
        });
        ok.attempts.push(AttemptView {
            host: "mx1.fabrikam.com".to_string(),
            address: "198.51.100.7:25".to_string(),
            delivered: true,
            code: None,
            reason: None,
            error: None,
            tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384".to_string()),
            transcript: vec!["S: 220 mx1.fabrikam.com ESMTP".to_string()],
        });
        ok.recent.push(Recent {
            at: at(now, 45),
            delivered: true,
            code: None,
            reason: None,
            message: "250 2.6.0 Queued mail for delivery".to_string(),
        });

        let mut failing = connector(&format!("Contoso {HOSTILE}"), ViewState::Failing);
        failing.test_mode = true;
        failing.code = Some(Code::ConnectionRefused);
        failing.reason = Some(Reason::Refused);
        failing.phase = Some("connect".to_string());
        failing.message = Some(format!(
            "450 4.4.316 Connection refused [Message={HOSTILE}] [LastAttemptedServerName=mail.contoso.com] \
             [LastAttemptedIP=203.0.113.5:25]"
        ));
        failing.failing_since = Some(at(now, 3 * HOUR));
        failing.queue_age = Some(Duration::from_secs(3 * HOUR));
        failing.time_left = Some(Duration::from_secs(21 * HOUR));
        failing.last_probe_at = Some(at(now, 12));
        failing.last_duration = Some(Duration::from_millis(40));
        failing.cert_expiry = Some(CertExpiry {
            host: "mail.contoso.com".to_string(),
            subject: format!("CN={HOSTILE}"),
            not_after: now + Duration::from_secs(5 * DAY),
            problems: Vec::new(),
        });
        failing.attempts.push(AttemptView {
            host: "mail.contoso.com".to_string(),
            address: "203.0.113.5:25".to_string(),
            delivered: false,
            code: Some(Code::ConnectionRefused),
            reason: Some(Reason::Refused),
            error: Some(format!("connection refused by \"{HOSTILE}\"")),
            tls: None,
            transcript: vec![format!("S: 554 {HOSTILE}"), "C: QUIT".to_string()],
        });
        failing.recent.push(Recent {
            at: at(now, 12),
            delivered: false,
            code: Some(Code::ConnectionRefused),
            reason: Some(Reason::Refused),
            message: format!("450 4.4.316 Connection refused [Message={HOSTILE}]"),
        });
        failing.warnings.push(format!("plaintext {HOSTILE}"));

        let pending = connector("Partner: Northwind & Co", ViewState::Pending);
        let mut disabled = connector("Old on-premises", ViewState::Disabled);
        disabled.enabled = false;

        StatusView {
            generated_at: now,
            version: "0.1.0".to_string(),
            config_file: "/etc/mailflow/config.yaml".to_string(),
            last_reload_ok,
            listen_note: Some("demo mode: loopback fault servers".to_string()),
            connectors: vec![ok, failing, pending, disabled],
        }
    }

    /// The `<tbody>` of the connector with this id.
    fn section<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id}"));
        let end = page[start..].find("</tbody>").map(|e| start + e).unwrap_or(page.len());
        &page[start..end]
    }

    #[test]
    fn escape_html_escapes_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("plain text é ✓"), "plain text é ✓");
        assert_eq!(
            escape_html("&amp;"),
            "&amp;amp;",
            "escaping is not idempotent, on purpose"
        );
        assert_eq!(escape_html(HOSTILE), "&lt;script&gt;alert(1)&lt;/script&gt;");
    }

    #[test]
    fn durations_are_compact() {
        let d = |s| format_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(12), "12s");
        assert_eq!(d(45 * 60), "45m");
        assert_eq!(d(45 * 60 + 10), "45m 10s");
        assert_eq!(d(3 * HOUR + 12 * 60 + 5), "3h 12m");
        assert_eq!(d(21 * HOUR), "21h");
        assert_eq!(d(2 * DAY + 3 * HOUR + 59), "2d 3h");
        assert_eq!(d(7 * DAY), "7d");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(relative(now, now - Duration::from_secs(3 * HOUR + 720)), "3h 12m ago");
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now, now + Duration::from_secs(300)), "in 5m");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_741_064_767)).0,
            "2025-03-04 05:06:07 UTC"
        );
        assert_eq!(format_elapsed(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(format_elapsed(Duration::from_millis(40)), "40 ms");
    }

    #[test]
    fn slugs_are_ascii_and_unique_on_the_page() {
        assert_eq!(slug("Outbound to Contoso"), "outbound-to-contoso");
        assert_eq!(slug("  --Ünïcode & Co!! "), "n-code-co");
        assert_eq!(slug("<>"), "connector");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let page = render(&StatusView {
            generated_at: now,
            version: "x".into(),
            config_file: "c".into(),
            last_reload_ok: true,
            listen_note: None,
            connectors: vec![connector("A b", ViewState::Ok), connector("a-B", ViewState::Ok)],
        });
        assert!(page.contains("id=\"connector-a-b\""));
        assert!(page.contains("id=\"connector-a-b-2\""));
    }

    #[test]
    fn renders_every_state_with_codes_ids_and_times() {
        let page = render(&view(true));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(
            !page.contains("src=\"http") && !page.contains("href=\"http"),
            "no external assets"
        );

        // Summary
        assert!(page.contains("4 connectors"));
        assert!(page.contains("1 ok"));
        assert!(page.contains("1 failing"));
        assert!(page.contains("1 pending"));
        assert!(page.contains("1 disabled"));

        // Row ids and codes
        let failing_id = format!("connector-{}", slug(&format!("Contoso {HOSTILE}")));
        assert_eq!(failing_id, "connector-contoso-script-alert-1-script");
        for id in [
            "connector-outbound-to-fabrikam",
            failing_id.as_str(),
            "connector-partner-northwind-co",
            "connector-old-on-premises",
        ] {
            assert!(page.contains(&format!("<tr id=\"{id}\"")), "row {id}");
        }
        assert!(page.contains("data-code=\"4.4.316\""));
        assert!(page.contains("data-code=\"ok\""));
        assert!(page.contains("data-state=\"failing\""));
        assert!(page.contains("data-state=\"disabled\""));

        // The failing connector: code, title, fix, since, time left, certificate.
        let f = section(&page, &failing_id);
        assert!(f.contains("data-code=\"4.4.316\""));
        assert!(f.contains("<abbr title=\"Connection refused\">4.4.316</abbr>"));
        assert!(f.contains("Connection refused"));
        assert!(f.contains(&escape_html(Code::ConnectionRefused.fix())));
        assert!(f.contains("2025-03-04 02:06:07 UTC"), "absolute failing-since time");
        assert!(f.contains("3h ago"));
        assert!(f.contains("21h"), "time left: 24h - 3h");
        assert!(!f.contains("class=\"urgent\""), "21h of 24h is not urgent");
        assert!(f.contains("class=\"cert bad\">⚠ 5 days left"));
        assert!(f.contains("test mode"));
        assert!(f.contains("<details"));
        assert!(f.contains("<pre>"));
        assert!(f.contains("C: QUIT"));
        assert!(f.contains("of 24h expiration"));
        assert!(f.contains("click to see the transcript"));

        // Ok/pending/disabled rows carry no fix.
        let ok = section(&page, "connector-outbound-to-fabrikam");
        assert!(ok.contains("✓ OK"));
        assert!(!ok.contains("How to fix"));
        assert!(ok.contains("90 days left"));
        assert!(ok.contains("1.25 s"));
        assert!(section(&page, "connector-partner-northwind-co").contains("Northwind &amp; Co"));
        assert!(section(&page, "connector-old-on-premises").contains("<span class=\"tag\">disabled</span>"));

        // Header
        assert!(page.contains("/etc/mailflow/config.yaml"));
        assert!(page.contains("demo mode: loopback fault servers"));
        assert!(page.contains("2025-03-04 05:06:07 UTC"));
    }

    #[test]
    fn hostile_strings_appear_only_escaped() {
        let page = render(&view(true));
        assert!(!page.contains(HOSTILE));
        assert!(!page.contains("<script>alert"));
        assert_eq!(page.matches("<script>").count(), 1, "only our own inline script");
        let escaped = escape_html(HOSTILE);
        // name, message, error, transcript, recent message, warning, certificate subject
        assert!(page.matches(escaped.as_str()).count() >= 7);
        assert!(page.contains(&format!("S: 554 {escaped}")), "transcript line");
        assert!(page.contains(&format!("[Message={escaped}]")), "message");
        assert!(page.contains("&quot;&lt;script&gt;"), "error with quotes");
    }

    #[test]
    fn reload_banner_only_when_the_reload_failed() {
        let bad = render(&view(false));
        assert!(bad.contains("class=\"banner reload-failed\""));
        assert!(bad.contains("The last configuration reload failed"));
        let good = render(&view(true));
        assert!(!good.contains("reload-failed"));
        assert!(!good.contains("reload failed"));
    }

    #[test]
    fn time_left_and_certificates_are_highlighted() {
        let day = Duration::from_secs(DAY);
        let h = |n| Duration::from_secs(n * HOUR);
        assert!(ndr_soon(h(3), h(12)));
        assert!(ndr_soon(h(5), h(24)), "under 25 % of 24h");
        assert!(!ndr_soon(h(6), h(24)));
        assert!(!ndr_soon(h(21), h(24)));

        let mut v = view(true);
        let now = v.generated_at;
        v.connectors[1].time_left = Some(h(2));
        v.connectors[0].cert_expiry = Some(CertExpiry {
            host: "h".into(),
            subject: "s".into(),
            not_after: now + 10 * day,
            problems: Vec::new(),
        });
        v.connectors[2].cert_expiry = Some(CertExpiry {
            host: "h".into(),
            subject: "s".into(),
            not_after: now - 2 * day,
            problems: vec![Reason::CertExpired],
        });
        let page = render(&v);
        assert!(page.contains("<strong class=\"urgent\""));
        assert!(page.contains("⚠ 2h"));
        assert!(page.contains("class=\"cert warn\">10 days left"));
        assert!(page.contains("class=\"cert bad\">⚠ expired 2d ago"));
        assert!(page.contains(">cert_expired</span>"));
    }

    #[test]
    fn empty_view_renders() {
        let page = render(&StatusView {
            generated_at: UNIX_EPOCH,
            version: String::new(),
            config_file: String::new(),
            last_reload_ok: true,
            listen_note: None,
            connectors: Vec::new(),
        });
        assert!(page.contains("0 connectors"));
        assert!(page.contains("No connectors configured."));
        assert!(page.ends_with("</html>\n"));
    }
}

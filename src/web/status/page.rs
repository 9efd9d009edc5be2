//! The agent's status page: one server-rendered HTML document, no build step, no external assets.
//!
//! The agent fills a [`StatusView`] and serves [`render`]'s output as [`CONTENT_TYPE`]. The page
//! refreshes itself every 30 s, works without JavaScript (transcripts sit in `<details>`), and a
//! few lines of inline script only remember which `<details>` were open across refreshes.
//!
//! The page shows hostile server text by design (banners, TLS errors, certificate subjects,
//! transcripts), so it is written with maud's `html!`: every `(expr)` splice is escaped unless
//! wrapped in `PreEscaped`, and the markup is checked at compile time. Maud rather than a template
//! engine such as askama because the page is built from Rust data with loops and matches, lives in
//! this one file, and has no template files to ship or keep in sync. `PreEscaped` is used only for
//! our own constant CSS and JavaScript, never for anything from the view model.
//!
//! Maud escapes `& < > "`; [`render`] also writes `'` as `&#39;` so text stays inert even where it
//! is copied into a single-quoted attribute (a compile-time check keeps `'` out of the CSS and JS,
//! where an entity would not be decoded).
//!
//! Each connector is one `<tbody class="connector">` holding its row, `<tr id="connector-SLUG"
//! data-code="CODE|ok" data-state="ok|failing|pending|disabled">`, followed by a full-width
//! detail row (message, fix, warnings, and the `<details>` with the last probe and recent probes).

use crate::agent::Recent;
use crate::config::Role;
use crate::taxonomy::{Code, Reason};
use crate::timefmt::{rfc3339_unix, unix_secs_i64, utc_display};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

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
    /// Exchange Online's view, when a tenant is configured.
    pub tenant: Option<TenantBanner>,
    pub connectors: Vec<ConnectorView>,
}

/// How the tenant integration is doing (the page header).
#[derive(Debug, Clone)]
pub struct TenantBanner {
    /// When Microsoft's queue was last read successfully.
    pub last_success: Option<SystemTime>,
    /// Whether the last read succeeded (None: not yet tried).
    pub ok: Option<bool>,
    /// The last read's error, escaped.
    pub error: Option<String>,
    /// With `tenant.sync`: when the tenant's configuration was last read, how many connectors
    /// it gave, and the last error.
    pub sync: Option<SyncBanner>,
}

#[derive(Debug, Clone)]
pub struct SyncBanner {
    pub ok: Option<bool>,
    pub at: Option<SystemTime>,
    pub connectors: usize,
    pub error: Option<String>,
}

/// Microsoft's queue for one connector, beside the probe's view.
#[derive(Debug, Clone)]
pub struct MicrosoftView {
    pub held: u64,
    /// Held messages by code (`4.4.316`, …, `unknown`).
    pub by_code: Vec<(String, u64)>,
    pub oldest_age: Option<Duration>,
    /// Microsoft's last defer reason line for the connector, escaped.
    pub reason: Option<String>,
    pub server: Option<String>,
    pub ip: Option<String>,
    /// The data is older than two poll intervals.
    pub stale: bool,
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
    /// How loudly a failure pages (test, rule-scoped, centralized, hybrid, standard).
    pub role: Role,
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
    /// Exchange Online's own view (None without a tenant).
    pub microsoft: Option<MicrosoftView>,
    /// Microsoft holds mail while the probe delivers.
    pub mismatch: bool,
    /// The migrated-tenant fix, when the probe is refused and the domain is still InternalRelay.
    pub migrated_fix: Option<String>,
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

/// `<time>` with the absolute UTC time, in whole seconds like the rest of the crate.
fn time_tag(t: SystemTime) -> Markup {
    html! {
        time datetime=[rfc3339_unix(unix_secs_i64(t))] { (utc_display(t)) }
    }
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

/// Whether `s` contains `'` (for the compile-time check below).
const fn has_apostrophe(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' {
            return true;
        }
        i += 1;
    }
    false
}

// `render` writes every `'` of the document as `&#39;`; inside <style> and <script> that would not
// be decoded, so our own CSS and JS must not contain one.
const _: () = assert!(!has_apostrophe(CSS) && !has_apostrophe(SCRIPT));

/// Renders the whole page. `view.generated_at` is "now" for every relative time.
pub fn render(view: &StatusView) -> String {
    let mut page = page(view).into_string();
    page.push('\n');
    // Maud leaves `'` alone (it quotes every attribute with `"`); spell it as an entity too, as
    // this page always has. Only text and `"`-quoted attribute values can hold one (see above).
    page.replace('\'', "&#39;")
}

/// A distinct element id per connector: its [`slug`], then `-2`, `-3`… when already taken.
fn unique_ids(connectors: &[ConnectorView]) -> Vec<String> {
    let mut used = HashSet::new();
    connectors
        .iter()
        .map(|c| {
            let base = slug(&c.name);
            let mut id = base.clone();
            let mut k = 2;
            while !used.insert(id.clone()) {
                id = format!("{base}-{k}");
                k += 1;
            }
            id
        })
        .collect()
}

const COLUMNS: [&str; 10] = [
    "State",
    "Connector",
    "Routing",
    "TLS",
    "Code",
    "Exchange Online",
    "Failing since",
    "Queue age",
    "Time left before NDR",
    "Certificate",
];

const ATTEMPT_COLUMNS: [&str; 5] = ["Host", "Address", "Verdict", "Error", "TLS"];

fn page(v: &StatusView) -> Markup {
    let now = v.generated_at;
    let count = |s: ViewState| v.connectors.iter().filter(|c| c.state == s).count();
    let (ok, failing, pending, disabled) = (
        count(ViewState::Ok),
        count(ViewState::Failing),
        count(ViewState::Pending),
        count(ViewState::Disabled),
    );
    let n = v.connectors.len();
    let ids = unique_ids(&v.connectors);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                meta name="robots" content="noindex";
                link rel="icon" href="data:,";
                title {
                    @if failing > 0 { "(" (failing) " failing) " }
                    (PRODUCT) " status"
                }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (PRODUCT) " " small.mono { (v.version) } }
                    p.meta {
                        "Configuration " code { (v.config_file) } " · "
                        @if v.last_reload_ok {
                            span.good { "configuration loaded" }
                        } @else {
                            strong.bad { "⚠ last reload failed" }
                        }
                        " · generated " (time_tag(now)) " · refreshes every " (REFRESH_SECONDS) " s"
                    }
                    @if !v.last_reload_ok {
                        div.banner.reload-failed role="alert" {
                            strong { "⚠ The last configuration reload failed." }
                            " The agent keeps probing with the previous configuration, so this page may not match "
                            code { (v.config_file) }
                            ". The agent's log names the error (file:line:column)."
                        }
                    }
                    @if let Some(note) = &v.listen_note {
                        p.note { "ℹ " (note) }
                    }
                    @if let Some(t) = &v.tenant { (tenant_banner(t, now)) }
                }
                main {
                    p.summary {
                        strong { (n) " connector" @if n != 1 { "s" } }
                        ": " span.good { (ok) " ok" } ", "
                        span class=(if failing > 0 { "bad" } else { "muted" }) { (failing) " failing" }
                        ", " (pending) " pending, " (disabled) " disabled"
                    }
                    table.connectors {
                        caption { "Outbound connectors, as Exchange Online would deliver to them now" }
                        thead { tr { @for h in COLUMNS { th scope="col" { (h) } } } }
                        @if v.connectors.is_empty() {
                            tbody { tr { td colspan="10" class="muted" { "No connectors configured." } } }
                        }
                        @for (c, id) in v.connectors.iter().zip(&ids) {
                            (connector(c, id, now))
                        }
                    }
                }
                footer {
                    "Codes are the ones Exchange Online puts in its queue for the connector. Times are UTC. \
                     Exchange Online retries until the message expiration, then returns an NDR."
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn connector(c: &ConnectorView, id: &str, now: SystemTime) -> Markup {
    let state = c.state.as_str();
    html! {
        tbody class={ "connector s-" (state) } {
            tr id={ "connector-" (id) } data-code=(data_code(c)) data-state=(state) {
                td {
                    span.badge { (c.state.label()) }
                    @if let Some(at) = c.last_probe_at {
                        br; small { "checked " (relative(now, at)) }
                    }
                }
                th scope="row" {
                    a href={ "#connector-" (id) } { (c.name) }
                    @if c.test_mode { " " span.tag { "test mode" } }
                    @match c.role {
                        Role::RuleScoped => { " " span.tag title="Used only for mail a transport rule sends to it" { "rule-scoped" } }
                        Role::Centralized => { " " span.tag title="RouteAllMessagesViaOnPremises: all external mail goes here" { "all mail" } }
                        Role::Hybrid => { " " span.tag title="CloudServicesMailEnabled: the hybrid path to on-premises Exchange" { "hybrid" } }
                        Role::Test | Role::Standard => {}
                    }
                    @if !c.enabled { " " span.tag { "disabled" } }
                }
                td { (c.routing) }
                td { (c.tls_settings) }
                td { (code_cell(c)) }
                (microsoft_cell(c))
                @match c.failing_since {
                    Some(t) => { td { (time_tag(t)) br; small { (relative(now, t)) } } }
                    None => { td.muted { "—" } }
                }
                @match c.queue_age {
                    Some(d) => { td { (format_duration(d)) } }
                    None => { td.muted { "—" } }
                }
                (time_left_cell(c))
                @match &c.cert_expiry {
                    Some(cert) => { (cert_cell(cert, now)) }
                    None => { td.muted { "—" } }
                }
            }
            (detail_row(c, id, now))
        }
    }
}

/// The code, its title and reason (and phase) of a failing connector, else a word for the state.
fn code_cell(c: &ConnectorView) -> Markup {
    html! {
        @match c.code {
            Some(code) => {
                abbr title=(code.title()) { (code.as_str()) } " " (code.title())
                @if let Some(r) = c.reason {
                    br;
                    small {
                        span.mono { (r.as_str()) } ": " (r.describe())
                        @if let Some(p) = &c.phase { " (phase " span.mono { (p) } ")" }
                    }
                } @else if let Some(p) = &c.phase {
                    br; small { "phase " span.mono { (p) } }
                }
            }
            None => {
                @match c.state {
                    ViewState::Ok => { span.good { "delivering" } }
                    ViewState::Failing => { span.bad { "failing (no code)" } }
                    ViewState::Pending => { span.muted { "awaiting first probe" } }
                    ViewState::Disabled => { span.muted { "not probed" } }
                }
            }
        }
    }
}

/// Microsoft's queue for the connector, next to the probe's code.
fn microsoft_cell(c: &ConnectorView) -> Markup {
    html! {
        @match &c.microsoft {
            None => { td.muted { "—" } }
            Some(m) if m.held == 0 => {
                td { span.good { "nothing held" } @if m.stale { br; small.warn { "(data is stale)" } } }
            }
            Some(m) => {
                td {
                    strong.bad { (m.held) " held" }
                    @if let Some(age) = m.oldest_age { br; small { "oldest " (format_duration(age)) } }
                    br;
                    small.mono {
                        @for (i, (code, n)) in m.by_code.iter().enumerate() {
                            @if i > 0 { ", " }
                            (code) " ×" (n)
                        }
                    }
                    @if m.stale { br; small.warn { "(data is stale)" } }
                    @if c.mismatch { br; span.tag.bad title="Microsoft holds mail while the probe delivers" { "views disagree" } }
                }
            }
        }
    }
}

/// The tenant integration's health, in the header.
fn tenant_banner(t: &TenantBanner, now: SystemTime) -> Markup {
    html! {
        p.meta.tenant {
            "Exchange Online's queue: "
            @match (t.ok, t.last_success) {
                (_, Some(at)) if t.ok == Some(true) => { span.good { "read " (relative(now, at)) } }
                (Some(false), Some(at)) => { strong.bad { "⚠ reading fails" } " (last good read " (relative(now, at)) ")" }
                (Some(false), None) => { strong.bad { "⚠ never read" } }
                _ => { span.muted { "not read yet" } }
            }
            @if let Some(e) = &t.error { " · " small { (e) } }
            @if let Some(s) = &t.sync {
                " · connectors from the tenant: "
                @match (s.ok, s.at) {
                    (Some(true), Some(at)) => { span.good { (s.connectors) " read " (relative(now, at)) } }
                    (Some(false), _) => { strong.bad { "⚠ sync fails" } " (keeping the last good set of " (s.connectors) ")" }
                    _ => { span.muted { "not read yet" } }
                }
                @if let Some(e) = &s.error { " · " small { (e) } }
            }
        }
    }
}

fn time_left_cell(c: &ConnectorView) -> Markup {
    let expiration = format_expiration(c.expiration);
    html! {
        @match c.time_left {
            Some(left) if left.is_zero() => {
                td {
                    strong.urgent { "⚠ expired" }
                    br; small { "NDRs are being sent (" (expiration) " expiration)" }
                }
            }
            Some(left) if ndr_soon(left, c.expiration) => {
                td {
                    strong.urgent title="less than 4 h or 25 % of the message expiration left" {
                        "⚠ " (format_duration(left))
                    }
                    br; small { "of " (expiration) " expiration" }
                }
            }
            Some(left) => {
                td { (format_duration(left)) br; small { "of " (expiration) " expiration" } }
            }
            None => { td.muted { "—" } }
        }
    }
}

fn cert_cell(cert: &CertExpiry, now: SystemTime) -> Markup {
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
    html! {
        td {
            strong class={ "cert " (class) } { (text) }
            @for p in &cert.problems {
                " " span.tag.bad title=(p.describe()) { (p.as_str()) }
            }
            br;
            small { (cert.host) " · " (cert.subject) br; "until " (utc_display(cert.not_after)) }
        }
    }
}

/// The full-width row under a connector: message, fix, warnings and the last probe's details.
fn detail_row(c: &ConnectorView, id: &str, now: SystemTime) -> Markup {
    let failing = c.state == ViewState::Failing;
    let code = c.code.unwrap_or(Code::Other);
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let has_transcript = c.attempts.iter().any(|a| !a.transcript.is_empty());
    html! {
        tr.detail data-connector=(id) {
            td {}
            td colspan="9" {
                @if failing {
                    @if let Some(m) = &c.message { p.msg { (m) } }
                    p.fix {
                        strong { "How to fix " abbr title=(code.title()) { (code.as_str()) } ":" }
                        " " (code.fix())
                    }
                }
                @if let Some(m) = &c.microsoft && let Some(reason) = &m.reason {
                    p.msg {
                        strong { "Exchange Online: " } (reason)
                        @if let Some(s) = &m.server { " · server " (s) }
                        @if let Some(ip) = &m.ip { " · " (ip) }
                    }
                }
                @if c.mismatch {
                    p.fix.mismatch {
                        strong { "The two views disagree: " }
                        "Exchange Online holds mail for this connector, but this agent's probe is delivered. \
                         Something admits the agent but not Microsoft 365's addresses (a firewall or \
                         connection filter: allow Microsoft 365's outbound IP ranges on port 25), or \
                         Exchange Online takes a route the agent does not (another MX, a smart host \
                         changed in the tenant)."
                    }
                }
                @if failing && c.role == Role::Hybrid && matches!(c.code, Some(Code::ConnectionRefused | Code::CannotConnect | Code::ConnectionClosedAbruptly)) {
                    p.fix.hybrid {
                        strong { "Hybrid connector: " }
                        "on-premises servers often admit Microsoft 365 only by its certificate or its \
                         addresses, so a probe from elsewhere can be turned away while Exchange Online is not. \
                         Check the Exchange Online column (with a tenant configured) or run the probe from an \
                         allowed address before changing the connector."
                    }
                }
                @if let Some(fix) = &c.migrated_fix {
                    p.fix.migrated { strong { "Migrated to Exchange Online? " } (fix) }
                }
                @if !c.warnings.is_empty() {
                    ul.warnings { @for w in &c.warnings { li { "⚠ " (w) } } }
                }
                details id={ "details-" (id) } {
                    summary {
                        @if let Some(at) = c.last_probe_at {
                            "Last probe " (relative(now, at)) " · "
                            (c.attempts.len()) " attempt" (plural(c.attempts.len()))
                            @if let Some(d) = c.last_duration { " · took " (format_elapsed(d)) }
                        } @else {
                            "No probe yet"
                        }
                        " · " (c.recent.len()) " recent probe" (plural(c.recent.len())) " — "
                        @if has_transcript { "click to see the transcript" } @else { "click for details" }
                    }
                    div {
                        @if failing {
                            h3 { "Usual causes of " (code.as_str()) }
                            ul { @for cause in code.causes() { li { (cause) } } }
                        }
                        h3 {
                            "Attempts of the last probe"
                            @if let Some(at) = c.last_probe_at { " (" (time_tag(at)) ")" }
                        }
                        (attempts(&c.attempts))
                        h3 { "Recent probes (newest first)" }
                        (recent(&c.recent, now))
                    }
                }
            }
        }
    }
}

fn attempts(attempts: &[AttemptView]) -> Markup {
    html! {
        @if attempts.is_empty() {
            p.muted { "No attempts recorded." }
        } @else {
            table.attempts {
                thead { tr { @for h in ATTEMPT_COLUMNS { th scope="col" { (h) } } } }
                @for a in attempts {
                    tr {
                        td { (a.host) }
                        td.mono { (a.address) }
                        td { (verdict(a.delivered, a.code, a.reason)) }
                        td { (a.error.as_deref().unwrap_or("—")) }
                        td { (a.tls.as_deref().unwrap_or("none")) }
                    }
                }
            }
            @for a in attempts.iter().filter(|a| !a.transcript.is_empty()) {
                h3 { "Transcript: " (a.host) " " span.mono { (a.address) } }
                pre { @for line in &a.transcript { (line) "\n" } }
            }
        }
    }
}

fn recent(recent: &[Recent], now: SystemTime) -> Markup {
    html! {
        @if recent.is_empty() {
            p.muted { "None yet." }
        } @else {
            ol.recent {
                @for r in recent {
                    li {
                        (time_tag(r.at)) " " small { "(" (relative(now, r.at)) ")" } " "
                        (verdict(r.delivered, r.code, r.reason))
                        @if !r.message.is_empty() { " " span.msg { (r.message) } }
                    }
                }
            }
        }
    }
}

fn verdict(delivered: bool, code: Option<Code>, reason: Option<Reason>) -> Markup {
    html! {
        @if delivered {
            span.good { "✓ accepted" }
        } @else {
            span.bad { "✗ failed" }
            @if let Some(code) = code { " " abbr title=(code.title()) { (code.as_str()) } }
            @if let Some(r) = reason { " " span.mono title=(r.describe()) { (r.as_str()) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const HOSTILE: &str = "<script>alert(1)</script>";

    /// What the page makes of a text: `& < > " '` as entities.
    fn escaped(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    }

    fn at(now: SystemTime, secs_ago: u64) -> SystemTime {
        now - Duration::from_secs(secs_ago)
    }

    fn connector(name: &str, state: ViewState) -> ConnectorView {
        ConnectorView {
            name: name.to_string(),
            enabled: true,
            test_mode: false,
            role: Role::Standard,
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
            microsoft: None,
            mismatch: false,
            migrated_fix: None,
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
            tenant: None,
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
            time_tag(UNIX_EPOCH + Duration::from_millis(1_741_064_767_250)).into_string(),
            "<time datetime=\"2025-03-04T05:06:07Z\">2025-03-04 05:06:07 UTC</time>",
            "whole seconds"
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
            tenant: None,
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
        assert!(f.contains(&escaped(Code::ConnectionRefused.fix())));
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
        let escaped = escaped(HOSTILE);
        // name, message, error, transcript, recent message, warning, certificate subject
        assert!(page.matches(escaped.as_str()).count() >= 7);
        assert!(page.contains(&format!("S: 554 {escaped}")), "transcript line");
        assert!(page.contains(&format!("[Message={escaped}]")), "message");
        assert!(page.contains("&quot;&lt;script&gt;"), "error with quotes");
    }

    /// Script, quotes with `&`, and a payload that tries to leave an attribute and open a tag.
    const PAYLOAD: &str = r#"<script>alert(1)</script> "O'Brien & 'Co'" "><img src=x onerror=alert(1)>"#;

    /// A view in which every string the page shows is hostile, and the names of those fields.
    ///
    /// Every struct is written out in full (no `..`), so a new field does not compile here until
    /// it is given a value: a new text field gets `hostile("its name")`.
    fn hostile_view(last_reload_ok: bool) -> (StatusView, Vec<(&'static str, String)>) {
        let now = UNIX_EPOCH + Duration::from_secs(1_741_064_767);
        let mut fields = Vec::new();
        let mut hostile = |field: &'static str| {
            let text = format!("[{field}] {PAYLOAD}");
            fields.push((field, text.clone()));
            text
        };
        let view = StatusView {
            generated_at: now,
            version: hostile("version"),
            config_file: hostile("config_file"),
            last_reload_ok,
            listen_note: Some(hostile("listen_note")),
            tenant: Some(TenantBanner {
                last_success: Some(now - Duration::from_secs(600)),
                ok: Some(false),
                error: Some(hostile("tenant.error")),
                sync: Some(SyncBanner {
                    ok: Some(false),
                    at: Some(now - Duration::from_secs(900)),
                    connectors: 3,
                    error: Some(hostile("tenant.sync.error")),
                }),
            }),
            connectors: vec![ConnectorView {
                name: hostile("connector.name"),
                enabled: true,
                test_mode: true,
                role: Role::Hybrid,
                routing: hostile("connector.routing"),
                tls_settings: hostile("connector.tls_settings"),
                // Failing with a code and a reason, so the phase and the message are shown.
                state: ViewState::Failing,
                code: Some(Code::ConnectionRefused),
                reason: Some(Reason::Refused),
                phase: Some(hostile("connector.phase")),
                message: Some(hostile("connector.message")),
                failing_since: Some(now - Duration::from_secs(HOUR)),
                queue_age: Some(Duration::from_secs(HOUR)),
                time_left: Some(Duration::from_secs(23 * HOUR)),
                expiration: Duration::from_secs(24 * HOUR),
                cert_expiry: Some(CertExpiry {
                    host: hostile("cert_expiry.host"),
                    subject: hostile("cert_expiry.subject"),
                    not_after: now + Duration::from_secs(30 * DAY),
                    problems: vec![Reason::CertExpired],
                }),
                last_probe_at: Some(now - Duration::from_secs(10)),
                last_duration: Some(Duration::from_millis(300)),
                attempts: vec![AttemptView {
                    host: hostile("attempt.host"),
                    address: hostile("attempt.address"),
                    delivered: false,
                    code: Some(Code::ConnectionRefused),
                    reason: Some(Reason::Refused),
                    error: Some(hostile("attempt.error")),
                    tls: Some(hostile("attempt.tls")),
                    transcript: vec![hostile("attempt.transcript[0]"), hostile("attempt.transcript[1]")],
                }],
                recent: vec![Recent {
                    at: now - Duration::from_secs(10),
                    delivered: false,
                    code: Some(Code::ConnectionRefused),
                    reason: Some(Reason::Refused),
                    message: hostile("recent.message"),
                }],
                warnings: vec![hostile("warnings[0]"), hostile("warnings[1]")],
                microsoft: Some(MicrosoftView {
                    held: 3,
                    by_code: vec![(hostile("microsoft.by_code[0]"), 3)],
                    oldest_age: Some(Duration::from_secs(HOUR)),
                    reason: Some(hostile("microsoft.reason")),
                    server: Some(hostile("microsoft.server")),
                    ip: Some(hostile("microsoft.ip")),
                    stale: false,
                }),
                mismatch: true,
                migrated_fix: Some(hostile("migrated_fix")),
            }],
        };
        (view, fields)
    }

    #[test]
    fn every_shown_field_is_escaped() {
        for last_reload_ok in [true, false] {
            let (view, fields) = hostile_view(last_reload_ok);
            let page = render(&view);
            for (field, text) in &fields {
                assert!(!page.contains(text.as_str()), "{field} raw on the page");
                assert!(page.contains(&escaped(text)), "{field} not shown escaped");
            }
            // No part of the payload survives as markup anywhere.
            for raw in ["<script>alert", "<img", "\"><img", "'Co'", "& '"] {
                assert!(!page.contains(raw), "{raw:?} on the page");
            }
            assert_eq!(page.matches("<script").count(), 1, "only our own inline script");
            assert_eq!(page.matches("</script>").count(), 1);
            assert_eq!(page.matches("<img").count(), 0);
            // The banner repeats the configuration file.
            let config = escaped(&view.config_file);
            let want = if last_reload_ok { 1 } else { 2 };
            assert_eq!(page.matches(config.as_str()).count(), want, "config_file");
        }
    }

    #[test]
    fn microsoft_view_sits_beside_the_probe() {
        let mut v = view(true);
        let now = v.generated_at;
        v.tenant = Some(TenantBanner {
            last_success: Some(now - Duration::from_secs(120)),
            ok: Some(true),
            error: None,
            sync: None,
        });
        // The healthy connector: Microsoft holds mail anyway.
        v.connectors[0].microsoft = Some(MicrosoftView {
            held: 3,
            by_code: vec![("4.4.316".into(), 2), ("unknown".into(), 1)],
            oldest_age: Some(Duration::from_secs(2 * HOUR)),
            reason: Some("450 4.4.316 Connection refused [Message=Socket error code 10061]".into()),
            server: Some("mx1.fabrikam.com".into()),
            ip: Some("198.51.100.7:25".into()),
            stale: false,
        });
        v.connectors[0].mismatch = true;
        v.connectors[1].migrated_fix =
            Some("Set-AcceptedDomain -Identity contoso.com -DomainType Authoritative".into());
        v.connectors[2].microsoft = Some(MicrosoftView {
            held: 0,
            by_code: vec![],
            oldest_age: None,
            reason: None,
            server: None,
            ip: None,
            stale: true,
        });
        let page = render(&v);
        assert!(page.contains("Exchange Online&#39;s queue: "), "banner");
        assert!(page.contains("read 2m ago"));
        let ok = section(&page, "connector-outbound-to-fabrikam");
        assert!(
            ok.contains("3 held") && ok.contains("oldest 2h") && ok.contains("4.4.316 ×2"),
            "{ok}"
        );
        assert!(
            ok.contains("views disagree") && ok.contains("The two views disagree"),
            "{ok}"
        );
        assert!(
            ok.contains("Exchange Online: </strong>450 4.4.316 Connection refused"),
            "{ok}"
        );
        assert!(ok.contains("server mx1.fabrikam.com"), "{ok}");
        let f = section(&page, "connector-contoso-script-alert-1-script");
        assert!(
            f.contains("Migrated to Exchange Online?") && f.contains("-DomainType Authoritative"),
            "{f}"
        );
        let p = section(&page, "connector-partner-northwind-co");
        assert!(p.contains("nothing held") && p.contains("(data is stale)"), "{p}");
        // Without a tenant the column is a dash and no banner is shown.
        let plain = render(&view(true));
        assert!(!plain.contains("Exchange Online&#39;s queue"));
        assert!(plain.contains("<th scope=\"col\">Exchange Online</th>"));
    }

    #[test]
    fn roles_are_tagged_and_a_refused_hybrid_connector_explains_itself() {
        let mut v = view(true);
        let f = section(&render(&v), "connector-contoso-script-alert-1-script").to_string();
        assert!(!f.contains("Hybrid connector:") && !f.contains(">hybrid<"), "{f}");
        v.connectors[1].role = Role::Hybrid;
        v.connectors[0].role = Role::Hybrid; // healthy: tagged, no note
        v.connectors[2].role = Role::Centralized;
        v.connectors[3].role = Role::RuleScoped;
        let page = render(&v);
        let f = section(&page, "connector-contoso-script-alert-1-script");
        assert!(
            f.contains(">hybrid</span>") && f.contains("Hybrid connector: </strong>"),
            "{f}"
        );
        let ok = section(&page, "connector-outbound-to-fabrikam");
        assert!(
            ok.contains(">hybrid</span>") && !ok.contains("Hybrid connector:"),
            "{ok}"
        );
        assert!(section(&page, "connector-partner-northwind-co").contains(">all mail</span>"));
        assert!(section(&page, "connector-old-on-premises").contains(">rule-scoped</span>"));
        // A certificate failure on the hybrid path is not explained away.
        v.connectors[1].code = Some(Code::CertificateValidationFailed);
        let f = render(&v);
        assert!(!section(&f, "connector-contoso-script-alert-1-script").contains("Hybrid connector:"));
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
            tenant: None,
            connectors: Vec::new(),
        });
        assert!(page.contains("0 connectors"));
        assert!(page.contains("No connectors configured."));
        assert!(page.ends_with("</html>\n"));
    }
}

//! The status page as a browser renders it: the real `demo` agent over the loopback fault lab,
//! loaded by headless Chromium (`/usr/bin/chromium`, Debian's package), with assertions on the
//! DOM Chromium produced and on a screenshot.
//!
//! * Chromium missing → the test fails, unless `MAILFLOW_SKIP_BROWSER=1` (then it is skipped with
//!   a notice on stderr).
//! * `MAILFLOW_UPDATE_SCREENSHOT=1` also copies the screenshot to `docs/images/status-page.png`.
//!
//! Everything stays on loopback; every child process has a hard deadline and is killed on drop.

use crate::support::process::{Exporter, run_with_deadline};
use crate::support::scratch::Scratch;
use mailflow_exporter::taxonomy::Code;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the demo may take until every awaited state shows up (interval 1 s, timeout 1 s).
const METRICS_DEADLINE: Duration = Duration::from_secs(60);
/// Hard deadline for one Chromium run.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(60);
/// The smallest screenshot we believe shows a rendered page (a blank 1280x1600 PNG is ~5 KB).
const MIN_SCREENSHOT_BYTES: u64 = 10 * 1024;

/// The `mailflow_connector_status` series the page assertions depend on, each at 1; the test
/// waits until all of them are exposed.
const AWAITED: [(&str, &str); 3] = [
    ("Refused", "4.4.316"),
    ("Healthy", "ok"),
    ("Expired certificate", "4.7.320"),
];

// ------------------------------------------------------------------------------------------
// Headless Chromium
// ------------------------------------------------------------------------------------------

struct ChromiumRun {
    args: Vec<String>,
    stdout: Vec<u8>,
    stderr: String,
}

impl ChromiumRun {
    fn dump(&self) -> String {
        format!(
            "args: {:?}\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout)
                .chars()
                .take(4000)
                .collect::<String>(),
            self.stderr
        )
    }
}

/// Runs headless Chromium on `url` with a fresh profile and `extra` flags; panics (after killing
/// it) when it outlives [`CHROMIUM_DEADLINE`] or exits unsuccessfully.
async fn chromium(scratch: &Scratch, profile: &str, extra: &[String], url: &str) -> ChromiumRun {
    let profile = scratch.path(profile);
    std::fs::create_dir_all(&profile).expect("chromium profile dir");
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push("--virtual-time-budget=3000".to_string());
    args.extend(extra.iter().cloned());
    args.push(url.to_string());
    tokio::task::spawn_blocking(move || chromium_blocking(args))
        .await
        .expect("chromium runner thread")
}

fn chromium_blocking(args: Vec<String>) -> ChromiumRun {
    let mut cmd = Command::new(CHROMIUM);
    cmd.args(&args);
    let out = run_with_deadline(cmd, &[], CHROMIUM_DEADLINE);
    let run = ChromiumRun {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        args,
    };
    assert!(
        out.status.success(),
        "{CHROMIUM} exited with {}\n{}",
        out.status,
        run.dump()
    );
    run
}

// ------------------------------------------------------------------------------------------
// Reading the serialized DOM
// ------------------------------------------------------------------------------------------

/// Text content of an HTML fragment: tags dropped (block-level ones and `<br>` as a space, inline
/// ones as nothing), entities decoded, whitespace collapsed.
fn text_of(html: &str) -> String {
    const BREAKING: [&str; 20] = [
        "br", "p", "div", "td", "th", "tr", "tbody", "thead", "table", "caption", "ul", "ol", "li", "h1", "h2", "h3",
        "details", "summary", "header", "footer",
    ];
    let mut raw = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        raw.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = &rest[open..];
            break;
        };
        let tag = &rest[open + 1..open + close];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if BREAKING.contains(&name.as_str()) {
            raw.push(' ');
        }
        rest = &rest[open + close + 1..];
    }
    raw.push_str(rest);
    normalize(&unescape(&raw))
}

/// Decodes the entities an HTML serializer (ours or Chromium's) produces.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &tail[1..e];
            let ch = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses every run of whitespace (NBSP included) to one space and trims.
fn normalize(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Value of `name` in a start tag (`<tr id="x" data-code="y">`), decoded.
fn attr(start_tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let i = start_tag.find(&needle)? + needle.len();
    let len = start_tag[i..].find('"')?;
    Some(unescape(&start_tag[i..i + len]))
}

/// One connector on the rendered page.
struct Section<'a> {
    id: &'a str,
    /// The start tag of `<tr id="connector-…">`.
    row_tag: &'a str,
    /// The whole `<tbody class="connector …">`: the row and its detail row.
    html: &'a str,
}

impl Section<'_> {
    fn text(&self) -> String {
        text_of(self.html)
    }

    #[track_caller]
    fn attr(&self, name: &str) -> String {
        attr(self.row_tag, name).unwrap_or_else(|| panic!("{}: no {name} in {}", self.id, self.row_tag))
    }

    /// Text of the first `<tag class="class">…</tag>` inside the section (no nesting of `tag`).
    fn element_text(&self, tag: &str, class: &str) -> Option<String> {
        let open = format!("<{tag} class=\"{class}\">");
        let start = self.html.find(&open)?;
        let end = self.html[start..].find(&format!("</{tag}>"))? + start;
        Some(text_of(&self.html[start..end]))
    }
}

/// The connector whose row has `id`, as Chromium serialized it. Panics (saying where the DOM
/// dump is) when the id is missing or not unique.
#[track_caller]
fn section<'a>(dom: &'a str, id: &'a str, dump: &Path) -> Section<'a> {
    let needle = format!(" id=\"{id}\"");
    let hits = dom.matches(&needle).count();
    assert_eq!(
        hits,
        1,
        "{hits} elements with id {id:?} in the DOM ({})",
        dump.display()
    );
    let at = dom.find(&needle).unwrap_or_default();
    let tag_start = dom[..at].rfind('<').unwrap_or_default();
    let tag_end = dom[at..].find('>').map(|e| at + e + 1).unwrap_or(dom.len());
    let row_tag = &dom[tag_start..tag_end];
    assert!(row_tag.starts_with("<tr "), "{id} is not a table row: {row_tag}");
    let body_start = dom[..tag_start].rfind("<tbody class=\"connector").unwrap_or(tag_start);
    let body_end = dom[tag_end..]
        .find("<tbody class=\"connector")
        .or_else(|| dom[tag_end..].find("</main>"))
        .map(|e| tag_end + e)
        .unwrap_or(dom.len());
    Section {
        id,
        row_tag,
        html: &dom[body_start..body_end],
    }
}

// ------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------

/// Whether this run has a browser; `false` means skip (only with `MAILFLOW_SKIP_BROWSER=1`).
fn browser_available() -> bool {
    if std::env::var("MAILFLOW_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("browser test skipped: MAILFLOW_SKIP_BROWSER=1 (the status page was not checked in a browser)");
        return false;
    }
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} not found: the status page test needs Debian's chromium \
         (apt-get install -y --no-install-recommends chromium), or set MAILFLOW_SKIP_BROWSER=1 to skip it"
    );
    true
}

#[tokio::test]
async fn status_page_renders_in_chromium() {
    if !browser_available() {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("browser");
    let mut demo = Exporter::demo(&scratch).await;
    demo.wait_for_within(METRICS_DEADLINE, "the demo connectors in their states", |m| {
        AWAITED.iter().all(|(c, code)| m.status(c, code) == Some(1.0))
    })
    .await;
    let ready = started.elapsed();

    // 1. The DOM as Chromium built it.
    let page = demo.url("/");
    let run = chromium(&scratch, "profile-dom", &["--dump-dom".to_string()], &page).await;
    demo.assert_running();
    let dom =
        String::from_utf8(run.stdout.clone()).unwrap_or_else(|e| panic!("DOM is not UTF-8 ({e})\n{}", run.dump()));
    let dump = scratch.path("dom.html");
    std::fs::write(&dump, &dom).expect("write DOM dump");
    assert!(
        dom.contains("<title>") && dom.contains("mailflow-exporter status</title>"),
        "Chromium did not render the status page ({})\n{}",
        dump.display(),
        run.dump()
    );

    // The refused connector: its code, the title and the fix from the code taxonomy.
    let refused = section(&dom, "connector-refused", &dump);
    assert_eq!(refused.attr("data-code"), "4.4.316", "{}", refused.row_tag);
    assert_eq!(refused.attr("data-state"), "failing", "{}", refused.row_tag);
    let text = refused.text();
    assert!(text.contains("✗ FAILING"), "refused badge: {text}");
    let title = Code::ConnectionRefused.title();
    assert_eq!(title, "Connection refused");
    assert!(
        refused
            .html
            .contains(&format!("<abbr title=\"{title}\">4.4.316</abbr> {title}")),
        "refused code cell with its title ({})",
        dump.display()
    );
    assert!(
        text.contains(&format!("4.4.316 {title} refused: ")),
        "refused code cell: {text}"
    );
    assert!(
        text.contains("450 4.4.316 Connection refused"),
        "Exchange-style message: {text}"
    );
    let fix = refused
        .element_text("p", "fix")
        .unwrap_or_else(|| panic!("no fix paragraph for Refused: {text}"));
    let want = normalize(Code::ConnectionRefused.fix());
    assert_eq!(fix, format!("How to fix 4.4.316: {want}"), "fix text as rendered");

    // The healthy connector: ok, delivering, no fix.
    let healthy = section(&dom, "connector-healthy", &dump);
    assert_eq!(healthy.attr("data-code"), "ok", "{}", healthy.row_tag);
    assert_eq!(healthy.attr("data-state"), "ok", "{}", healthy.row_tag);
    let text = healthy.text();
    assert!(text.contains("✓ OK"), "healthy badge: {text}");
    assert!(text.contains("delivering"), "healthy code cell: {text}");
    assert!(!text.contains("How to fix"), "a healthy connector has no fix: {text}");

    // The expired certificate: 4.7.320 with its reason.
    let expired = section(&dom, "connector-expired-certificate", &dump);
    assert_eq!(expired.attr("data-code"), "4.7.320", "{}", expired.row_tag);
    assert_eq!(expired.attr("data-state"), "failing", "{}", expired.row_tag);
    let text = expired.text();
    assert!(
        text.contains("4.7.320 Certificate validation failed"),
        "expired title: {text}"
    );
    assert!(text.contains("cert_expired"), "expired reason: {text}");
    assert!(text.contains("How to fix 4.7.320"), "expired fix: {text}");

    // 2. A screenshot, large enough to be a rendered page.
    let png = scratch.path("status.png");
    let extra = [
        format!("--screenshot={}", png.display()),
        "--window-size=1280,1600".to_string(),
        "--hide-scrollbars".to_string(),
    ];
    let shot = chromium(&scratch, "profile-screenshot", &extra, &page).await;
    demo.assert_running();
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{}", png.display(), shot.dump()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    assert!(
        size > MIN_SCREENSHOT_BYTES,
        "screenshot is only {size} bytes (blank page?): {}",
        png.display()
    );
    if std::env::var("MAILFLOW_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
        std::fs::create_dir_all(&dir).expect("docs/images");
        let dest = dir.join("status-page.png");
        std::fs::write(&dest, &bytes).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
        eprintln!("browser test: updated {}", dest.display());
    }
    eprintln!(
        "browser test: metrics ready after {ready:.1?}, done after {:.1?}",
        started.elapsed()
    );
}

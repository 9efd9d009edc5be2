//! The tenant client against the loopback fakes of Entra ID, Graph message trace and the
//! Exchange admin API (`lab::tenant`): real HTTPS over loopback, certificates from the lab PKI.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use mailflow_exporter::config::{Credential, DomainPattern};
use mailflow_exporter::lab::tenant::{
    CLIENT_SECRET, EXCHANGE_SCOPE, Endpoint, FakeTenant, FakeTenantBuilder, Fault, GRAPH_SCOPE, REASON_REFUSED,
    REASON_STARTTLS_REQUIRED, REASON_SUBJECT_MISMATCH, Scenario, When, connector,
};
use mailflow_exporter::taxonomy::Code;
use mailflow_exporter::tenant::api::ApiName;
use mailflow_exporter::tenant::{ApiError, Outcome, QueueCode, QueueRoute, Tenant, UNATTRIBUTED};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::scratch::Scratch;

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);

/// Every test body runs under one deadline.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("tenant test exceeded its deadline")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tenant")
        .join(name)
}

fn app_cert() -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixture("app-cert.pem")).unwrap()
}

fn secret_file(s: &Scratch) -> Credential {
    Credential::SecretFile(s.write("client-secret", &format!("{CLIENT_SECRET}\n")))
}

fn tenant(fake: &FakeTenant, cred: Credential) -> Tenant {
    Tenant::new(&fake.config(cred), &fake.extra_ca()).unwrap()
}

fn tenant_with_budget(fake: &FakeTenant, cred: Credential, per_5min: u32) -> Tenant {
    let mut cfg = fake.config(cred);
    cfg.details_per_5min = per_5min;
    Tenant::new(&cfg, &fake.extra_ca()).unwrap()
}

fn route(name: &str, pats: &[&str]) -> QueueRoute {
    QueueRoute {
        connector: name.into(),
        recipient_domains: pats.iter().map(|p| DomainPattern::parse(p).unwrap()).collect(),
    }
}

fn routes() -> Vec<QueueRoute> {
    vec![
        route("Contoso on-premises", &["contoso.example"]),
        route("Contoso subsidiaries", &["*.contoso.example"]),
        route("Fabrikam partner", &["fabrikam.example"]),
        route("Tailspin", &["tailspin.example"]),
    ]
}

fn count(t: &Tenant, api: ApiName, outcome: Outcome) -> u64 {
    t.requests()
        .into_iter()
        .find(|(k, _)| *k == (api, outcome))
        .map_or(0, |(_, n)| n)
}

fn total(t: &Tenant) -> u64 {
    t.requests().iter().map(|(_, n)| n).sum()
}

fn small_scenario() -> Scenario {
    Scenario::new()
        .pending("contoso.example", 2, 3 * HOUR, Some(REASON_REFUSED))
        .pending("fabrikam.example", 1, 2 * HOUR, Some(REASON_SUBJECT_MISMATCH))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_by_secret_and_cached() {
    bounded(async {
        let s = Scratch::new("tenant-secret");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        let t = tenant(&fake, secret_file(&s));
        let now = SystemTime::now();
        let view = t.poll_queue(&routes(), DAY, now).await.unwrap();
        assert_eq!(view.pending, 3);
        t.poll_queue(&routes(), DAY, now).await.unwrap();
        // One token for both polls (and their detail calls).
        assert_eq!(fake.count(Endpoint::Token), 1);
        assert_eq!(count(&t, ApiName::Token, Outcome::Ok), 1);
        let tok = &fake.requests()[0];
        assert_eq!(tok.endpoint, Endpoint::Token);
        assert_eq!(tok.credential.as_deref(), Some("client_secret"));
        assert_eq!(tok.scope.as_deref(), Some(GRAPH_SCOPE));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_unauthorized_and_never_echoed() {
    bounded(async {
        let s = Scratch::new("tenant-badsecret");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        let cred = Credential::SecretFile(s.write("client-secret", "definitely-wrong-s3cret\n"));
        let t = tenant(&fake, cred);
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, ApiError::Unauthorized(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("AADSTS7000215"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(count(&t, ApiName::Token, Outcome::Unauthorized), 1);
        assert_eq!(fake.count(Endpoint::MessageTrace), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_by_certificate_verified_by_the_fake() {
    bounded(async {
        let fake = FakeTenantBuilder::new()
            .scenario(Scenario::demo())
            .client_secret(None)
            .app_certificate(app_cert())
            .start()
            .await
            .unwrap();
        for key in ["app-key.pem", "app-key-pkcs1.pem"] {
            let cred = Credential::Certificate {
                cert_file: fixture("app-cert.pem"),
                key_file: fixture(key),
            };
            let t = tenant(&fake, cred);
            let view = t.sync(SystemTime::now()).await.unwrap();
            assert_eq!(view.connectors.as_array().unwrap().len(), 4, "{key}");
            assert_eq!(count(&t, ApiName::Token, Outcome::Ok), 1);
        }
        let toks: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::Token)
            .collect();
        assert_eq!(toks.len(), 2);
        assert!(
            toks.iter()
                .all(|r| r.status == 200 && r.credential.as_deref() == Some("certificate"))
        );
        assert!(toks.iter().all(|r| r.scope.as_deref() == Some(EXCHANGE_SCOPE)));

        // A certificate the app never registered: refused by the fake.
        let other = FakeTenantBuilder::new()
            .client_secret(None)
            .app_certificate(mailflow_exporter::lab::pki::TestCa::new("Other").unwrap().cert_der())
            .start()
            .await
            .unwrap();
        let t = tenant(
            &other,
            Credential::Certificate {
                cert_file: fixture("app-cert.pem"),
                key_file: fixture("app-key.pem"),
            },
        );
        let err = t.sync(SystemTime::now()).await.unwrap_err();
        assert!(err.to_string().contains("AADSTS700027"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_by_federated_file_reread_each_time() {
    bounded(async {
        let s = Scratch::new("tenant-federated");
        let fake = FakeTenantBuilder::new()
            .scenario(small_scenario())
            .client_secret(None)
            .federated_token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsYWIifQ.c2ln")
            .start()
            .await
            .unwrap();
        let file = s.write("token", "stale-token-from-yesterday\n");
        let t = tenant(&fake, Credential::FederatedTokenFile(file.clone()));
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, ApiError::Unauthorized(_)), "{err:?}");
        // The platform rotates the file: the next token request reads the new content.
        std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsYWIifQ.c2ln\n").unwrap();
        t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        let toks: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::Token)
            .collect();
        assert_eq!(toks.len(), 2);
        assert_eq!(toks[1].credential.as_deref(), Some("federated"));
        assert_eq!(toks[1].status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_refreshed_once_after_401() {
    bounded(async {
        let s = Scratch::new("tenant-401");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        let t = tenant(&fake, secret_file(&s));
        let now = SystemTime::now();
        t.poll_queue(&routes(), DAY, now).await.unwrap();
        assert_eq!(fake.count(Endpoint::Token), 1);

        // Revoked server-side: one 401, one new token, one retry that succeeds.
        fake.expire_tokens();
        let before = fake.count(Endpoint::MessageTrace);
        t.poll_queue(&routes(), DAY, now).await.unwrap();
        assert_eq!(fake.count(Endpoint::Token), 2);
        assert_eq!(fake.count(Endpoint::MessageTrace), before + 2);
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Unauthorized), 1);

        // A 401 that persists: exactly one retry, then the error.
        fake.fault(Endpoint::MessageTrace, When::Always, Fault::Unauthorized);
        let before = fake.count(Endpoint::MessageTrace);
        let err = t.poll_queue(&routes(), DAY, now).await.unwrap_err();
        assert!(matches!(err, ApiError::Unauthorized(_)), "{err:?}");
        assert_eq!(fake.count(Endpoint::MessageTrace), before + 2);
        assert_eq!(fake.count(Endpoint::Token), 3);
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Unauthorized), 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_not_cached() {
    bounded(async {
        let s = Scratch::new("tenant-short");
        let fake = FakeTenantBuilder::new()
            .scenario(small_scenario())
            .token_lifetime(120)
            .start()
            .await
            .unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        // Under the 5-minute margin: renewed before every use.
        assert_eq!(fake.count(Endpoint::Token), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_fixed_whatever_the_base_urls() {
    bounded(async {
        let s = Scratch::new("tenant-scopes");
        let fake = FakeTenant::start(Scenario::demo()).await.unwrap();
        let mut cfg = fake.config(secret_file(&s));
        // Host names resolve through the system resolver; `localhost` is in the certificate.
        cfg.login_url = format!("https://localhost:{}", fake.addr().port());
        let t = Tenant::new(&cfg, &fake.extra_ca()).unwrap();
        t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        t.sync(SystemTime::now()).await.unwrap();
        let reqs = fake.requests();
        let token_scopes: Vec<_> = reqs
            .iter()
            .filter(|r| r.endpoint == Endpoint::Token)
            .map(|r| r.scope.clone().unwrap())
            .collect();
        assert_eq!(token_scopes, [GRAPH_SCOPE, EXCHANGE_SCOPE]);
        for r in &reqs {
            match r.endpoint {
                Endpoint::MessageTrace | Endpoint::Details => assert_eq!(r.scope.as_deref(), Some(GRAPH_SCOPE)),
                Endpoint::AdminApi => assert_eq!(r.scope.as_deref(), Some(EXCHANGE_SCOPE)),
                Endpoint::Token => {}
                Endpoint::Other => panic!("unexpected request {r:?}"),
            }
            assert!(r.status < 400, "{r:?}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_across_three_pages() {
    bounded(async {
        let s = Scratch::new("tenant-paging");
        let fake = FakeTenantBuilder::new()
            .scenario(Scenario::new().pending("contoso.example", 10, 5 * HOUR, Some(REASON_REFUSED)))
            .page_size(4)
            .start()
            .await
            .unwrap();
        // An empty page in between (Graph sends those) is followed like any other.
        fake.fault(Endpoint::MessageTrace, When::Nth(2), Fault::EmptyPage);
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        let view = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        assert_eq!(view.pending, 10);
        assert_eq!(view.traces_read, 10);
        assert_eq!(view.connectors["Contoso on-premises"].total(), 10);
        let lists: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::MessageTrace)
            .collect();
        assert_eq!(lists.len(), 4, "3 pages and one empty page");
        let first = lists[0].query.clone().unwrap();
        assert!(first.contains("$top=5000"), "{first}");
        assert!(
            first.contains("status%20eq%20%27pending%27") && first.contains("receivedDateTime%20ge%20"),
            "{first}"
        );
        assert!(!first.contains("$skiptoken"));
        assert!(lists[2].query.as_deref().unwrap().contains("$skiptoken=4"));
        assert!(lists[3].query.as_deref().unwrap().contains("$skiptoken=8"));
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Ok), 4);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_windows_are_split_into_ten_day_queries() {
    bounded(async {
        let s = Scratch::new("tenant-window");
        let fake = FakeTenant::start(Scenario::new().pending("contoso.example", 1, 2 * HOUR, None).pending(
            "contoso.example",
            1,
            15 * DAY,
            None,
        ))
        .await
        .unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        // The fake answers 400 to any query over 10 days, so success means the split worked.
        let view = t.poll_queue(&routes(), 25 * DAY, SystemTime::now()).await.unwrap();
        assert_eq!(view.pending, 2);
        assert_eq!(fake.count(Endpoint::MessageTrace), 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_filtered_client_side_too() {
    bounded(async {
        let s = Scratch::new("tenant-filter");
        let mut scenario = Scenario::new()
            .pending("contoso.example", 2, 2 * HOUR, Some(REASON_REFUSED))
            .with_status("contoso.example", 3, 2 * HOUR, "delivered")
            .with_status("fabrikam.example", 1, HOUR, "failed")
            .with_status("fabrikam.example", 1, HOUR, "Pending");
        scenario.messages.push({
            let mut m = scenario.messages[0].clone();
            m.status = "gettingStatus".into();
            m.id = "7e3b2b2e-1b5e-4b17-80cc-0000000000ff".into();
            m
        });
        let fake = FakeTenantBuilder::new()
            .scenario(scenario)
            .honour_status_filter(false)
            .start()
            .await
            .unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        let view = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        assert_eq!(view.traces_read, 8);
        assert_eq!(
            view.pending, 3,
            "pending matched case-insensitively, other statuses dropped"
        );
        assert_eq!(view.connectors["Contoso on-premises"].total(), 2);
        assert_eq!(view.connectors["Fabrikam partner"].total(), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_by_recipient_domain() {
    bounded(async {
        let s = Scratch::new("tenant-attr");
        let fake = FakeTenant::start(
            Scenario::new()
                .pending("contoso.example", 2, 5 * HOUR, Some(REASON_REFUSED))
                .pending("eu.contoso.example", 3, 4 * HOUR, Some(REASON_REFUSED))
                .pending("Mail.Fabrikam.Example", 1, 3 * HOUR, None)
                .pending("woodgrove.example", 4, 2 * HOUR, Some(REASON_STARTTLS_REQUIRED)),
        )
        .await
        .unwrap();
        let t = tenant(&fake, secret_file(&s));
        let mut rs = routes();
        rs.push(route("Fabrikam subdomains", &["*.fabrikam.example"]));
        let now = SystemTime::now();
        let view = t.poll_queue(&rs, DAY, now).await.unwrap();
        let c = &view.connectors;
        assert_eq!(c["Contoso on-premises"].total(), 2);
        assert_eq!(c["Contoso subsidiaries"].total(), 3);
        assert_eq!(c["Fabrikam subdomains"].total(), 1);
        assert_eq!(c[UNATTRIBUTED].total(), 4);
        let oldest = c["Contoso on-premises"].oldest_received.unwrap();
        let age = now.duration_since(oldest).unwrap();
        assert!(
            age > 5 * HOUR - Duration::from_secs(120) && age <= 5 * HOUR + Duration::from_secs(2),
            "{age:?}"
        );
        // A catch-all route takes what nothing more specific matches.
        rs.push(route("Everything else", &["*"]));
        let view = t.poll_queue(&rs, DAY, now).await.unwrap();
        assert_eq!(view.connectors["Everything else"].total(), 4);
        assert_eq!(view.connectors["Contoso on-premises"].total(), 2);
        assert!(!view.connectors.contains_key(UNATTRIBUTED));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_within_budget_and_unknown_connectors_first() {
    bounded(async {
        let s = Scratch::new("tenant-budget");
        let base = Scenario::new()
            .pending("contoso.example", 3, 6 * HOUR, Some(REASON_REFUSED))
            .pending("fabrikam.example", 3, 5 * HOUR, Some(REASON_SUBJECT_MISMATCH))
            .pending("tailspin.example", 3, 4 * HOUR, Some(REASON_STARTTLS_REQUIRED));
        let fake = FakeTenant::start(base.clone()).await.unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 4);
        let t0 = SystemTime::now();

        // Poll 1: every connector unknown, so each gets its oldest message's details first.
        let v1 = t.poll_queue(&routes(), DAY, t0).await.unwrap();
        assert_eq!(v1.details_fetched, 4);
        let details = |fake: &FakeTenant| -> Vec<String> {
            fake.requests()
                .into_iter()
                .filter(|r| r.endpoint == Endpoint::Details)
                .map(|r| r.path)
                .collect()
        };
        let d = details(&fake);
        assert!(d[0].contains("user1@contoso.example"), "{d:?}");
        assert!(d[1].contains("user1@fabrikam.example"), "{d:?}");
        assert!(d[2].contains("user1@tailspin.example"), "{d:?}");
        assert!(d[3].contains("user2@contoso.example"), "{d:?}");
        // Every message counts under a code: its own reason, or its connector's newest.
        let contoso = &v1.connectors["Contoso on-premises"];
        assert_eq!(contoso.pending.get(&QueueCode::Code(Code::ConnectionRefused)), Some(&3));
        assert_eq!(
            contoso.last_reason.as_ref().and_then(|r| r.server.as_deref()),
            Some("hybrid.contoso.example")
        );
        let fab = &v1.connectors["Fabrikam partner"];
        assert_eq!(fab.pending.get(&QueueCode::Code(Code::CannotConnect)), Some(&3));

        // Poll 2, a minute later: the budget is spent, no detail call.
        let v2 = t
            .poll_queue(&routes(), DAY, t0 + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(v2.details_fetched, 0);
        assert_eq!(details(&fake).len(), 4);
        assert_eq!(
            v2.connectors["Tailspin"]
                .pending
                .get(&QueueCode::Code(Code::CannotConnect)),
            Some(&3)
        );

        // A new connector's queue appears; five minutes on, it is served first.
        fake.set_scenario(base.pending("eu.contoso.example", 2, HOUR, Some(REASON_REFUSED)));
        let v3 = t
            .poll_queue(&routes(), DAY, t0 + Duration::from_secs(301))
            .await
            .unwrap();
        assert_eq!(v3.details_fetched, 4);
        let d = details(&fake);
        assert_eq!(d.len(), 8);
        assert!(d[4].contains("@eu.contoso.example"), "{d:?}");
        // Never more than 4 in any 5 minutes.
        let v4 = t
            .poll_queue(&routes(), DAY, t0 + Duration::from_secs(320))
            .await
            .unwrap();
        assert_eq!(v4.details_fetched, 0);
        assert_eq!(count(&t, ApiName::MessageTraceDetails, Outcome::Ok), 8);

        // Delivered messages leave the queue (and the cache).
        fake.deliver("contoso.example");
        let v5 = t
            .poll_queue(&routes(), DAY, t0 + Duration::from_secs(700))
            .await
            .unwrap();
        assert!(!v5.connectors.contains_key("Contoso on-premises"));
        assert_eq!(v5.pending, 8);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_without_reason_counts_unknown() {
    bounded(async {
        let s = Scratch::new("tenant-unknown");
        let fake = FakeTenant::start(Scenario::new().pending("contoso.example", 2, HOUR, None))
            .await
            .unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        let v = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        assert_eq!(
            v.connectors["Contoso on-premises"].pending.get(&QueueCode::Unknown),
            Some(&2)
        );
        assert_eq!(v.details_fetched, 0);
        assert_eq!(fake.count(Endpoint::Details), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_with_retry_after_and_counted() {
    bounded(async {
        let s = Scratch::new("tenant-429");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        let t = tenant(&fake, secret_file(&s));
        fake.fault(
            Endpoint::MessageTrace,
            When::Next(1),
            Fault::Throttle { retry_after: Some(17) },
        );
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Throttled {
                retry_after: Duration::from_secs(17)
            }
        );
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Throttled), 1);
        fake.fault(
            Endpoint::MessageTrace,
            When::Next(1),
            Fault::Throttle { retry_after: None },
        );
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::Throttled {
                retry_after: Duration::from_secs(60)
            }
        );

        // Throttled details: the poll still succeeds, the rest of the details wait.
        fake.fault(
            Endpoint::Details,
            When::Next(1),
            Fault::Throttle { retry_after: Some(30) },
        );
        let v = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        assert_eq!(v.pending, 3);
        assert_eq!(v.details_fetched, 1);
        assert_eq!(count(&t, ApiName::MessageTraceDetails, Outcome::Throttled), 1);
        assert_eq!(
            v.connectors["Contoso on-premises"].pending.get(&QueueCode::Unknown),
            Some(&2)
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_permission() {
    bounded(async {
        let s = Scratch::new("tenant-403");
        let fake = FakeTenant::start(Scenario::demo()).await.unwrap();
        let t = tenant(&fake, secret_file(&s));
        fake.fault(Endpoint::MessageTrace, When::Always, Fault::Forbidden);
        fake.fault(Endpoint::AdminApi, When::Always, Fault::Forbidden);
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, ApiError::Forbidden(_)), "{err:?}");
        assert!(err.to_string().contains("ExchangeMessageTrace.Read.All"), "{err}");
        let err = t.sync(SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, ApiError::Forbidden(_)), "{err:?}");
        assert!(err.to_string().contains("Exchange.ManageAsApp"), "{err}");
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Forbidden), 1);
        assert_eq!(count(&t, ApiName::AdminApi, Outcome::Forbidden), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_truncated_and_huge_bodies_are_errors() {
    bounded(async {
        let s = Scratch::new("tenant-5xx");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        let now = SystemTime::now();

        fake.fault(Endpoint::MessageTrace, When::Next(1), Fault::ServerError);
        let err = t.poll_queue(&routes(), DAY, now).await.unwrap_err();
        assert!(matches!(err, ApiError::Status { status: 500, .. }), "{err:?}");

        fake.fault(Endpoint::MessageTrace, When::Next(1), Fault::TruncatedJson);
        let err = t.poll_queue(&routes(), DAY, now).await.unwrap_err();
        assert!(matches!(err, ApiError::BadResponse(_)), "{err:?}");
        assert!(!err.to_string().contains("cut@contoso.example"), "{err}");

        // 40 MiB streamed: cut off at the 32 MiB bound, never held whole.
        fake.fault(
            Endpoint::MessageTrace,
            When::Next(1),
            Fault::HugeBody { bytes: 40 << 20 },
        );
        let err = t.poll_queue(&routes(), DAY, now).await.unwrap_err();
        assert!(
            matches!(&err, ApiError::BadResponse(m) if m.contains("larger than")),
            "{err:?}"
        );

        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Error), 3);
        // And the client is still fine afterwards.
        assert_eq!(t.poll_queue(&routes(), DAY, now).await.unwrap().pending, 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_link_to_another_origin_is_refused() {
    bounded(async {
        let s = Scratch::new("tenant-nextlink");
        let fake = FakeTenantBuilder::new()
            .scenario(Scenario::new().pending("contoso.example", 6, HOUR, None))
            .page_size(2)
            .start()
            .await
            .unwrap();
        let t = tenant_with_budget(&fake, secret_file(&s), 0);
        for origin in [
            "https://graph.attacker.example".to_string(),
            "https://127.0.0.1:1".to_string(),
            format!("http://{}", fake.addr()),
        ] {
            fake.clear_faults();
            fake.fault(
                Endpoint::MessageTrace,
                When::Next(1),
                Fault::ForeignNextLink(origin.clone()),
            );
            let before = fake.count(Endpoint::MessageTrace);
            let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
            assert!(
                matches!(&err, ApiError::BadResponse(m) if m.contains("not followed")),
                "{origin}: {err:?}"
            );
            assert_eq!(fake.count(Endpoint::MessageTrace), before + 1, "{origin}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_merges_three_reads_and_reads_config() {
    bounded(async {
        let s = Scratch::new("tenant-sync");
        let scenario = Scenario::demo().connector(connector(
            "Extra",
            "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f70",
            "Partner",
            &["wingtip.example"],
            &[],
        ));
        let fake = FakeTenantBuilder::new()
            .scenario(scenario)
            .admin_page_size(2)
            .start()
            .await
            .unwrap();
        let t = tenant(&fake, secret_file(&s));
        let view = t.sync(SystemTime::now()).await.unwrap();
        let names: Vec<&str> = view
            .connectors
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Contoso on-premises",
                "Fabrikam partner (TLS)",
                "Extra",
                "Tailspin (test mode)",
                "Relay via appliance (rule-scoped)"
            ]
        );
        assert_eq!(view.message_expiration, Some(DAY));
        assert_eq!(view.accepted_domains.len(), 2);
        assert!(view.accepted_domains[0].is_internal_relay());
        assert_eq!(view.accepted_domains[0].domain, "contoso.example");

        let admin: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Endpoint::AdminApi)
            .collect();
        let cmdlets: Vec<(String, String)> = admin
            .iter()
            .map(|r| (r.cmdlet.clone().unwrap(), r.parameters.clone().unwrap().to_string()))
            .collect();
        // Plain read: 3 objects over 2 pages; test-mode: 4 over 2; rule-scoped: 1; then the rest.
        assert_eq!(
            cmdlets,
            [
                ("Get-OutboundConnector".into(), "{}".into()),
                ("Get-OutboundConnector".into(), "{}".into()),
                (
                    "Get-OutboundConnector".into(),
                    r#"{"IncludeTestModeConnectors":true}"#.into()
                ),
                (
                    "Get-OutboundConnector".into(),
                    r#"{"IncludeTestModeConnectors":true}"#.into()
                ),
                (
                    "Get-OutboundConnector".into(),
                    r#"{"IsTransportRuleScoped":true}"#.into()
                ),
                ("Get-TransportConfig".into(), "{}".into()),
                ("Get-AcceptedDomain".into(), "{}".into()),
            ]
        );
        assert!(admin[1].query.as_deref().unwrap().contains("$skiptoken=2"));

        // Other expiration spellings; an unreadable one is None, not an error.
        for (v, want) in [
            (serde_json::json!("12:00:00"), Some(12 * HOUR)),
            (serde_json::json!("2.00:00:00"), Some(2 * DAY)),
            (serde_json::json!("a day"), None),
            (serde_json::Value::Null, None),
        ] {
            fake.set_scenario(Scenario::demo().message_expiration(v.clone()));
            assert_eq!(t.sync(SystemTime::now()).await.unwrap().message_expiration, want, "{v}");
        }

        // A failing extra read is soft; a failing plain read fails the sync.
        fake.fault(
            Endpoint::AdminApi,
            When::Nth(fake.count(Endpoint::AdminApi) + 4),
            Fault::ServerError,
        );
        let view = t.sync(SystemTime::now()).await.unwrap();
        assert_eq!(view.connectors.as_array().unwrap().len(), 3, "rule-scoped read failed");
        fake.fault(Endpoint::AdminApi, When::Next(1), Fault::ServerError);
        assert!(matches!(
            t.sync(SystemTime::now()).await,
            Err(ApiError::Status { status: 500, .. })
        ));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted() {
    bounded(async {
        let s = Scratch::new("tenant-count");
        let fake = FakeTenant::start(Scenario::demo()).await.unwrap();
        let t = tenant(&fake, secret_file(&s));
        t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap();
        fake.fault(Endpoint::Details, When::Next(1), Fault::ServerError);
        fake.expire_tokens();
        t.poll_queue(&routes(), 2 * DAY, SystemTime::now() + Duration::from_secs(400))
            .await
            .unwrap();
        t.sync(SystemTime::now()).await.unwrap();
        fake.fault(
            Endpoint::MessageTrace,
            When::Next(1),
            Fault::Throttle { retry_after: Some(1) },
        );
        let _ = t.poll_queue(&routes(), DAY, SystemTime::now()).await;

        let reqs = fake.requests();
        assert_eq!(total(&t), reqs.len() as u64);
        for (api, ep) in [
            (ApiName::Token, Endpoint::Token),
            (ApiName::MessageTrace, Endpoint::MessageTrace),
            (ApiName::MessageTraceDetails, Endpoint::Details),
            (ApiName::AdminApi, Endpoint::AdminApi),
        ] {
            let ours: u64 = t
                .requests()
                .iter()
                .filter(|((a, _), _)| *a == api)
                .map(|(_, n)| n)
                .sum();
            assert_eq!(ours, fake.count(ep), "{api:?}");
            let ok = reqs.iter().filter(|r| r.endpoint == ep && r.status < 300).count() as u64;
            assert_eq!(count(&t, api, Outcome::Ok), ok, "{api:?}");
        }
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Unauthorized), 1);
        assert_eq!(count(&t, ApiName::MessageTraceDetails, Outcome::Error), 1);
        assert_eq!(count(&t, ApiName::MessageTrace, Outcome::Throttled), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_refused() {
    bounded(async {
        let s = Scratch::new("tenant-tls");
        let fake = FakeTenant::start(small_scenario()).await.unwrap();
        // Without the lab CA the fake's certificate is not trusted: no token leaves.
        let t = Tenant::new(&fake.config(secret_file(&s)), &[]).unwrap();
        let err = t.poll_queue(&routes(), DAY, SystemTime::now()).await.unwrap_err();
        assert!(matches!(&err, ApiError::Transport(m) if m.contains("TLS")), "{err:?}");
        assert_eq!(count(&t, ApiName::Token, Outcome::Error), 1);
        assert!(fake.requests().is_empty());
        assert!(Tenant::new(&fake.config(secret_file(&s)), &[("bad.pem".into(), b"nope".to_vec())]).is_err());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_hits_the_request_deadline() {
    use mailflow_exporter::lab::smtp::{Behavior, FaultServer};
    use mailflow_exporter::tenant::api::{Api, Limits};
    use mailflow_exporter::tenant::auth::Scope;
    bounded(async {
        let s = Scratch::new("tenant-deadline");
        let fake = FakeTenant::start(Scenario::new()).await.unwrap();
        // Accepts TCP and never answers: the TLS handshake waits until the deadline.
        let silent = FaultServer::start(Behavior::Silent).await.unwrap();
        let mut cfg = fake.config(secret_file(&s));
        cfg.login_url = format!("https://{}", silent.addr());
        let limits = Limits {
            timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let api = Api::with_limits(&cfg, &fake.extra_ca(), limits).unwrap();
        let err = api.token(Scope::Graph).await.unwrap_err();
        assert!(
            matches!(&err, ApiError::Transport(m) if m.contains("no complete answer")),
            "{err:?}"
        );
        assert_eq!(api.requests(), [((ApiName::Token, Outcome::Error), 1)]);
    })
    .await
}

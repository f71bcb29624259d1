//! The send path of one SMS against a local HTTP sink that answers 204 at once, as Sipgate's
//! `POST /v2/sessions/sms` does: the Sipgate client's request alone (a pooled keep-alive
//! connection on loopback), and the whole delivery (ledger, limits, the hand-over to the sender
//! runtime and back, the request, the settlement), beside the same delivery in dry-run.
//! `cargo bench --bench send`

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use alertmanager_sipgate::clock::SystemClock;
use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::delivery::Policy;
use alertmanager_sipgate::ingest;
use alertmanager_sipgate::model::content_key::ContentKey;
use alertmanager_sipgate::pipeline;
use alertmanager_sipgate::provider::Outlet;
use alertmanager_sipgate::startup::{Options, Service};
use alertmanager_sipgate::text::compose::Sms;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{StreamExt, stream};

/// Notifications under way at once, as with wrk's 32 connections in `benches/load.sh`.
const IN_FLIGHT: usize = 32;
/// Requests on the wire at once: the service's default `delivery.max_concurrency`.
const ON_THE_WIRE: usize = 8;

fn fail(e: impl std::fmt::Display) -> ! {
    panic!("{e}")
}

/// An HTTP server on loopback that accepts every SMS, on a thread of its own.
fn start_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(e));
    let address = listener.local_addr().unwrap_or_else(|e| fail(e));
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new().route(
                    "/v2/sessions/sms",
                    web::post().to(|| async { HttpResponse::NoContent().finish() }),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap_or_else(|e| fail(e))
            .run()
            .await
        })
    });
    format!("http://{address}/v2")
}

/// One route, one recipient, Sipgate at `api_url`.
fn config(api_url: &str) -> Config {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let path = dir.path().join("config.yml");
    let yaml = format!(
        "sipgate:\n  api_url: {api_url}\n  token_id: token-AB12CD\n  token: 00000000-1111-4222-8333-444444444444\n  check_credentials: false\nrecipients: {{alice: \"+4915228817386\"}}\nroutes: [{{name: load, to: [alice]}}]\ndelivery: {{max_concurrency: {ON_THE_WIRE}, max_pending: 1000}}\n"
    );
    std::fs::write(&path, yaml).unwrap_or_else(|e| fail(e));
    Config::load_with_env(&path, &|_| None).unwrap_or_else(|e| fail(e))
}

/// The one SMS the captured Alertmanager body leads to.
fn sms(config: &Config) -> Sms {
    let body = include_bytes!("../tests/fixtures/alertmanager-0.25/firing-diskfull.json");
    let notification = ingest::parse_alertmanager(body).unwrap_or_else(|e| fail(e));
    let mut plan = pipeline::plan(config, &notification, chrono::Utc::now());
    plan.messages.pop().unwrap_or_else(|| fail("no SMS"))
}

fn send(c: &mut Criterion) {
    let api_url = start_sink();
    // As in the service: sends on a runtime of their own, callers on a single-threaded one.
    let sends = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    // Wired as the service is, once sending to the sink and once in dry-run.
    let service = |force_dry_run| {
        let options = Options {
            force_dry_run,
            clock: Arc::new(SystemClock),
            runtime: sends.handle().clone(),
        };
        Service::build(config(&api_url), options).unwrap_or_else(|e| fail(e))
    };
    let (sending, dry_running) = (service(false), service(true));
    let live = sending.state.current();
    let sms = sms(&live.config);
    let Outlet::Provider { provider, .. } = &live.outlet else {
        fail("a config with credentials sends through Sipgate")
    };
    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Elements(1));
    // Time per SMS with several under way at once, as under load; one at a time would measure
    // mostly how fast idle threads wake up.
    group.bench_function("sipgate_request", |b| {
        b.iter_custom(|iterations| {
            sends.block_on(async {
                let started = std::time::Instant::now();
                stream::iter(0..iterations)
                    .map(|_| provider.send(&sms.number, &sms.text))
                    .buffer_unordered(ON_THE_WIRE)
                    .for_each(|sent| async move {
                        sent.unwrap_or_else(|e| fail(e));
                    })
                    .await;
                started.elapsed()
            })
        })
    });
    let counter = AtomicU64::new(0);
    // A new key each time, so that the ledger lets every SMS through.
    let fresh = || Sms {
        key: ContentKey::for_event(
            "alice",
            &counter.fetch_add(1, Ordering::Relaxed).to_string(),
        ),
        ..sms.clone()
    };
    for (name, service) in [
        ("deliver_sipgate", &sending),
        ("deliver_dry_run", &dry_running),
    ] {
        let (live, deliverer) = (service.state.current(), &service.state.deliverer);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                caller.block_on(async {
                    let started = std::time::Instant::now();
                    stream::iter(0..iterations)
                        .map(|_| async {
                            let policy = Policy::of(&live.config, tokio::time::Instant::now());
                            deliverer.deliver(&live.outlet, vec![fresh()], policy).await
                        })
                        .buffer_unordered(IN_FLIGHT)
                        .for_each(|reports| async move {
                            assert_eq!(reports[0].reason, None, "{reports:?}");
                        })
                        .await;
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
    drop(caller);
    sends.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, send);
criterion_main!(benches);

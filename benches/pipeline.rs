//! The CPU work of one notification: parse the body, route it, render and fit each SMS; each
//! step alone (render: the data and the template for all alerts; fit: cutting that text to the
//! route's budget), then together.
//! `cargo bench --bench pipeline`

use std::hint::black_box;
use std::path::Path;

use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::ingest;
use alertmanager_sipgate::model::alert::Alert;
use alertmanager_sipgate::pipeline;
use alertmanager_sipgate::routing;
use alertmanager_sipgate::text::compose;
use alertmanager_sipgate::text::template::MessageData;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// An Alertmanager body with `n` alerts of one group, as Alertmanager 0.25 writes it.
fn body(n: usize) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "status": if i % 5 == 4 { "resolved" } else { "firing" },
                "labels": {"alertname": "DiskFull", "instance": format!("db{i}:9100"),
                           "job": "node", "severity": "critical"},
                "annotations": {"summary": format!("Disk on db{i} is 95% full"),
                                "description": "Only 5% space left on /var"},
                "startsAt": "2026-11-25T09:05:47.696440675Z",
                "endsAt": if i % 5 == 4 { "2026-11-25T09:35:47Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus.example/graph?g0.expr=disk\u{26}g0.tab=1",
                "fingerprint": format!("{i:016x}")
            })
        })
        .collect();
    let mut body = serde_json::to_vec(&serde_json::json!({
        "receiver": "sms", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "job": "node", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0
    }))
    .unwrap_or_default();
    body.push(b'\n');
    body
}

/// `examples/config.yml` as installed: beside its templates and the secret it reads. Its
/// critical route texts the primary with `to:` instead of escalating, so that `pipeline::plan`
/// composes its SMS (an escalating route's pages are composed by the escalation engine).
fn example_config() -> Config {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text =
        std::fs::read_to_string(examples.join("config.yml")).unwrap_or_else(|e| panic!("{e}"));
    let mut yaml: yaml_serde::Value = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    if let Some(critical) = yaml["routes"][0].as_mapping_mut() {
        critical.remove("escalation");
        critical.insert(
            "to".into(),
            yaml_serde::Value::Sequence(vec!["primary".into()]),
        );
    }
    let text = yaml_serde::to_string(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let installed = || -> std::io::Result<()> {
        std::fs::write(dir.path().join("config.yml"), text)?;
        std::os::unix::fs::symlink(examples.join("templates"), dir.path().join("templates"))?;
        std::fs::write(dir.path().join("sms-password"), "benchmark\n")
    };
    installed().unwrap_or_else(|e| panic!("{e}"));
    Config::load_with_env(&dir.path().join("config.yml"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn pipeline(c: &mut Criterion) {
    let config = example_config();
    let now = chrono::Utc::now();
    let mut group = c.benchmark_group("notification");
    for n in [1, 10, 100] {
        let body = body(n);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("parse", n), &body, |b, body| {
            b.iter(|| ingest::parse_alertmanager(black_box(body)))
        });
        let notification = ingest::parse_alertmanager(&body).unwrap_or_else(|e| panic!("{e}"));
        group.bench_with_input(BenchmarkId::new("route", n), &notification, |b, n| {
            b.iter(|| {
                routing::route(
                    black_box(n),
                    &config.routes,
                    &routing::At::new(
                        &config.schedules,
                        &config.time_intervals,
                        &config.quiet_hours,
                        now,
                    ),
                )
                .deliveries
                .len()
            })
        });
        let route = &config.routes[0];
        let fields = config.templates.fields(&route.template);
        let alerts: Vec<&Alert> = notification.alerts.iter().collect();
        group.bench_with_input(BenchmarkId::new("render", n), &alerts, |b, alerts| {
            b.iter(|| {
                let data =
                    MessageData::new(&notification, &route.name, "alice", alerts, now, fields);
                config.templates.render(&route.template, &data)
            })
        });
        let text = config
            .templates
            .render(
                &route.template,
                &MessageData::new(&notification, &route.name, "alice", &alerts, now, fields),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        group.bench_with_input(BenchmarkId::new("fit", n), &text, |b, text| {
            b.iter(|| compose::fit(black_box(text), route.max_segments))
        });
        group.bench_with_input(
            BenchmarkId::new("route+render+fit", n),
            &notification,
            |b, n| b.iter(|| pipeline::plan(&config, black_box(n), now)),
        );
        group.bench_with_input(BenchmarkId::new("whole", n), &body, |b, body| {
            b.iter(|| {
                let n =
                    ingest::parse_alertmanager(black_box(body)).unwrap_or_else(|e| panic!("{e}"));
                pipeline::plan(&config, &n, now)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);

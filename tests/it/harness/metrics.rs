//! The service's metrics page, read as Prometheus scrapes it.

use std::time::Duration;

use super::wait::eventually;

/// The service's metrics page at `url`, now.
pub async fn metrics(url: &str) -> String {
    metrics_as(url, None).await
}

/// As `metrics`, with these Basic credentials, for a service with `protect_metrics`.
pub async fn metrics_as(url: &str, basic: Option<(&str, &str)>) -> String {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "/metrics");
    response.text().await.unwrap()
}

/// The service's metrics page at `url` once `line` is on it.
pub async fn metrics_with(url: &str, line: &str) -> String {
    eventually(Duration::from_secs(10), line, || async {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(line).then_some(text)
    })
    .await
}

/// The value of the metric line that starts with `series ` (0 when there is none).
pub fn metric_value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

//! The one way tests wait: `eventually`, for a real process or server to reach a state.

use std::time::{Duration, Instant};

/// Asks `probe` every 20 ms until it has an answer, and returns that; fails the test with
/// `what` when there is none within `limit`. The one way tests wait for something to happen.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(answer) = probe().await {
            return answer;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `url` answers 200.
pub async fn wait_until_ok(url: &str, limit: Duration, what: &str) {
    eventually(limit, &format!("{what} answers 200 at {url}"), || async {
        let response = reqwest::get(url).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await
}

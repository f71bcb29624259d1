//! Readiness: whether the service can send SMS right now. It cannot while Sipgate refuses the
//! configured token or SMS extension, during a hold-off after Sipgate refused an SMS, or before
//! Sipgate first answered the credential check. A check that gets no answer (a lost connection,
//! a 5xx) changes nothing: the last definite answer stands, also across a reload.

use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;
use crate::live::{CredentialStatus, Credentials, Live};
use crate::metrics::Metrics;
use crate::provider::{CredentialCheck, Outlet, SmsProvider};
use crate::state::StateStore;

/// How long to wait before asking again after the first, second and third try in a row that
/// got no answer: one lost connection is the usual cause, so ask again soon.
const QUICK_RECHECKS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How often to ask again after that, while Sipgate cannot be reached.
const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The pause after the `failures`-th try in a row (from 0) that got no answer.
fn recheck_delay(failures: usize) -> Duration {
    QUICK_RECHECKS
        .get(failures)
        .copied()
        .unwrap_or(RECHECK_INTERVAL)
}

/// How often the state store is asked whether it answers, between notifications.
pub const STATE_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Pings the state store for as long as the service runs, so that `state_up` and the outage log
/// follow the store also when no notification comes.
pub async fn watch_state(store: Arc<dyn StateStore>) {
    loop {
        // The store's wrapper records the answer.
        let _ = store.ping().await;
        tokio::time::sleep(STATE_PING_INTERVAL).await;
    }
}

/// Checks the credentials of `live`'s provider until the answer is definite or another config
/// replaced this one. Dry-run has none.
pub async fn watch_credentials(state: Arc<AppState>, live: Arc<Live>) {
    let Outlet::Provider { provider, .. } = &live.outlet else {
        return;
    };
    let still_current = || Arc::ptr_eq(&state.current(), &live);
    check_until_answered(
        provider.as_ref(),
        &live.credentials,
        &state.metrics,
        still_current,
    )
    .await;
}

/// Asks `provider` about its credentials, and again after 1 s, 2 s, 4 s and then every 30 s
/// while it cannot be asked, for as long as `still_current`. Each new answer is logged once
/// with what to fix.
async fn check_until_answered(
    provider: &dyn SmsProvider,
    credentials: &Credentials,
    metrics: &Metrics,
    still_current: impl Fn() -> bool,
) {
    if credentials.status() == CredentialStatus::NotChecked {
        return;
    }
    let mut last: Option<CredentialCheck> = None;
    for failures in 0.. {
        let check = provider.check_credentials().await;
        let status = credentials.status().answered(check.clone());
        let retry = recheck_delay(failures);
        if last.as_ref() != Some(&check) {
            log_check(&check, status.verdict(), retry);
        }
        credentials.set(status);
        if check.is_definite() {
            metrics.credentials_valid(check.allows_sending());
            return;
        }
        last = Some(check);
        tokio::time::sleep(retry).await;
        if !still_current() {
            return;
        }
    }
}

fn log_check(check: &CredentialCheck, verdict: Option<&CredentialCheck>, retry: Duration) {
    // `problem` is a whole sentence of its own; the message only says what follows from it.
    match (check, verdict) {
        (CredentialCheck::Valid, _) => {
            tracing::info!("Sipgate accepted the token and the SMS extension")
        }
        (CredentialCheck::Unverifiable(why), _) => {
            tracing::warn!(problem = %why, "Sipgate credentials only partly verified")
        }
        (CredentialCheck::Rejected(why), _) => tracing::error!(
            problem = %why,
            "Sipgate credential check failed; no SMS can be sent until the config is fixed"
        ),
        (CredentialCheck::Unknown(why), None) => tracing::warn!(
            problem = %why,
            retry_s = retry.as_secs(),
            "the Sipgate credentials are not verified yet; asking again"
        ),
        (CredentialCheck::Unknown(why), Some(verdict)) => tracing::warn!(
            problem = %why,
            retry_s = retry.as_secs(),
            last_answer = verdict_word(verdict),
            "the reloaded Sipgate credentials are not verified yet; the last answer stands"
        ),
    }
}

/// A definite answer in one word, for the log.
fn verdict_word(verdict: &CredentialCheck) -> &'static str {
    if verdict.allows_sending() {
        "accepted"
    } else {
        "refused"
    }
}

/// `Ok` with a short status, or `Err` with the reason the service is not ready.
pub fn readiness(state: &AppState) -> Result<String, String> {
    let live = state.current();
    if let Some((reason, left)) = state.deliverer.holdoff() {
        // Only Sipgate's refusals start a hold-off. The hint names the problem; "refused" around
        // it would only say it twice. The reason is the one the answers and sms_failed_total
        // carry.
        return Err(format!(
            "{}; SMS fail fast for {}s more (reason {})",
            crate::provider::sipgate::operator_hint(reason),
            left.as_secs() + 1,
            reason.as_str()
        ));
    }
    let mode = || {
        format!(
            "{}, state: {}",
            if live.is_dry_run() {
                "dry-run"
            } else {
                "sipgate"
            },
            state.deliverer.store().name()
        )
    };
    credentials_readiness(live.credentials.status(), mode)
}

/// What the credential status means for readiness. Each answer of the provider is a sentence of
/// its own (who refused what, and what to check), so it is shown as it is; only what this status
/// adds (a check still running, one that got no answer) is said around it.
fn credentials_readiness(
    status: CredentialStatus,
    mode: impl FnOnce() -> String,
) -> Result<String, String> {
    match status {
        CredentialStatus::NotChecked => Ok(mode()),
        CredentialStatus::Checked(CredentialCheck::Rejected(why)) => Err(why),
        CredentialStatus::Checked(_) => Ok(mode()),
        CredentialStatus::Checking {
            verdict: None,
            unknown: None,
        } => Err("checking the Sipgate credentials".to_string()),
        // Before the first definite answer, as at the first start: a new replica that cannot
        // reach Sipgate does not take over from working ones.
        CredentialStatus::Checking {
            verdict: None,
            unknown: Some(why),
        } => Err(format!(
            "the Sipgate credentials are not verified yet: {why}"
        )),
        // After a reload: the previous config's verdict stands until this one's is known.
        CredentialStatus::Checking {
            verdict: Some(verdict),
            unknown,
        } => {
            let note = match unknown {
                None => "checking the reloaded credentials".to_string(),
                Some(why) => format!("the reloaded credentials are not verified yet: {why}"),
            };
            match verdict {
                CredentialCheck::Rejected(refused) => Err(format!("{refused}; {note}")),
                _ => Ok(format!("{}; {note}; Sipgate accepted them before", mode())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use crate::model::outcome::FailureReason;
    use crate::model::phone::PhoneNumber;
    use crate::provider::SendError;

    /// Answers the credential checks from a script and notes when each was asked.
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<VecDeque<CredentialCheck>>,
        asked_at: Mutex<Vec<Duration>>,
        started: tokio::time::Instant,
    }

    impl Scripted {
        fn new(answers: Vec<CredentialCheck>) -> Self {
            Scripted {
                answers: Mutex::new(answers.into()),
                asked_at: Mutex::new(Vec::new()),
                started: tokio::time::Instant::now(),
            }
        }

        fn asked_at_s(&self) -> Vec<u64> {
            self.asked_at
                .lock()
                .unwrap()
                .iter()
                .map(Duration::as_secs)
                .collect()
        }
    }

    impl SmsProvider for Scripted {
        fn send<'a>(
            &'a self,
            _: &'a PhoneNumber,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), SendError>> {
            async { Ok(()) }.boxed()
        }
        fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck> {
            self.asked_at.lock().unwrap().push(self.started.elapsed());
            let answer = self.answers.lock().unwrap().pop_front();
            async move { answer.expect("asked more often than scripted") }.boxed()
        }
    }

    fn unknown() -> CredentialCheck {
        CredentialCheck::Unknown("connection reset".to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_without_answer_is_retried_after_1_2_4_and_then_every_30_seconds() {
        let provider = Scripted::new(vec![
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            CredentialCheck::Valid,
        ]);
        let credentials = Credentials::new(true);
        let metrics = Metrics::new().unwrap();
        check_until_answered(&provider, &credentials, &metrics, || true).await;
        assert_eq!(provider.asked_at_s(), vec![0, 1, 3, 7, 37, 67]);
        assert_eq!(
            credentials.status(),
            CredentialStatus::Checked(CredentialCheck::Valid)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_keeps_the_last_verdict_and_a_refusal_replaces_it() {
        let provider = Scripted::new(vec![unknown(), CredentialCheck::Rejected("401".into())]);
        let credentials = Credentials::new(true);
        credentials.set(CredentialStatus::Checking {
            verdict: Some(CredentialCheck::Valid),
            unknown: None,
        });
        let metrics = Metrics::new().unwrap();
        let watched = check_until_answered(&provider, &credentials, &metrics, || true);
        tokio::pin!(watched);
        // Only the first try has been answered half a second in.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut watched)
                .await
                .is_err()
        );
        assert_eq!(
            credentials.status(),
            CredentialStatus::Checking {
                verdict: Some(CredentialCheck::Valid),
                unknown: Some("connection reset".to_string()),
            }
        );
        watched.await;
        assert_eq!(provider.asked_at_s(), vec![0, 1]);
        assert_eq!(
            credentials.status(),
            CredentialStatus::Checked(CredentialCheck::Rejected("401".into()))
        );
    }

    /// Every answer says each thing once: the provider's sentence as it is, and only what the
    /// status adds around it.
    #[test]
    fn each_readiness_answer_says_each_problem_once() {
        let refused = crate::provider::sipgate::operator_hint(FailureReason::Auth);
        let rejected = || CredentialCheck::Rejected(refused.to_string());
        let no_answer = || Some("Sipgate answered HTTP 503 to /userinfo".to_string());
        let checking = |verdict, unknown| CredentialStatus::Checking { verdict, unknown };
        let mode = || "sipgate, state: memory".to_string();
        let answer = |status| credentials_readiness(status, mode);

        assert_eq!(answer(CredentialStatus::NotChecked), Ok(mode()));
        assert_eq!(
            answer(CredentialStatus::Checked(CredentialCheck::Valid)),
            Ok(mode())
        );
        assert_eq!(
            answer(CredentialStatus::Checked(rejected())),
            Err(refused.to_string())
        );
        assert_eq!(
            refused,
            "Sipgate rejected the credentials: check sipgate.token_id and the token (personal access token, not the account password)"
        );
        assert_eq!(
            answer(checking(None, None)),
            Err("checking the Sipgate credentials".to_string())
        );
        assert_eq!(
            answer(checking(None, no_answer())),
            Err("the Sipgate credentials are not verified yet: Sipgate answered HTTP 503 to /userinfo".to_string())
        );
        assert_eq!(
            answer(checking(Some(CredentialCheck::Valid), None)),
            Ok("sipgate, state: memory; checking the reloaded credentials; Sipgate accepted them before".to_string())
        );
        assert_eq!(
            answer(checking(Some(CredentialCheck::Valid), no_answer())),
            Ok("sipgate, state: memory; the reloaded credentials are not verified yet: Sipgate answered HTTP 503 to /userinfo; Sipgate accepted them before".to_string())
        );
        assert_eq!(
            answer(checking(Some(rejected()), None)),
            Err(format!("{refused}; checking the reloaded credentials"))
        );
        assert_eq!(
            answer(checking(Some(rejected()), no_answer())),
            Err(format!(
                "{refused}; the reloaded credentials are not verified yet: Sipgate answered HTTP 503 to /userinfo"
            ))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_config_stops_being_checked() {
        let provider = Scripted::new(vec![unknown()]);
        let credentials = Credentials::new(true);
        let metrics = Metrics::new().unwrap();
        check_until_answered(&provider, &credentials, &metrics, || false).await;
        assert_eq!(provider.asked_at_s(), vec![0]);
    }
}

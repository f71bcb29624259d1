//! Readiness: whether the service can send SMS right now. It cannot while Sipgate refuses the
//! configured token or SMS extension, during a hold-off after Sipgate refused an SMS, or before
//! the credentials were checked.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{AppState, CredentialStatus, Live};
use crate::provider::CredentialCheck;
use crate::state::StateStore;

/// How often to ask again while Sipgate cannot be reached.
const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

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

/// Reloads and, on success, starts checking the new config's provider's credentials.
pub fn reload_and_check(state: &Arc<AppState>) -> Result<(), String> {
    let live = state.reload()?;
    tokio::spawn(watch_credentials(state.clone(), live));
    Ok(())
}

/// Checks the credentials of `live`, and again every 30 s while Sipgate cannot be asked, until
/// the answer is definite or another config replaced this one. Each new answer is logged once
/// with what to fix.
pub async fn watch_credentials(state: Arc<AppState>, live: Arc<Live>) {
    if live.credentials.status() == CredentialStatus::NotChecked {
        return;
    }
    let mut last: Option<CredentialCheck> = None;
    loop {
        let check = live.provider.check_credentials().await;
        if last.as_ref() != Some(&check) {
            log_check(&check);
        }
        match &check {
            CredentialCheck::Valid | CredentialCheck::Unverifiable(_) => {
                state.metrics.credentials_valid(true);
            }
            CredentialCheck::Rejected(_) => state.metrics.credentials_valid(false),
            CredentialCheck::Unknown(_) => {}
        }
        let retry = matches!(check, CredentialCheck::Unknown(_));
        live.credentials
            .set(CredentialStatus::Checked(check.clone()));
        last = Some(check);
        if !retry {
            return;
        }
        tokio::time::sleep(RECHECK_INTERVAL).await;
        if !Arc::ptr_eq(&state.current(), &live) {
            return;
        }
    }
}

fn log_check(check: &CredentialCheck) {
    match check {
        CredentialCheck::Valid => {
            tracing::info!("Sipgate accepted the token and the SMS extension")
        }
        CredentialCheck::Unverifiable(why) => {
            tracing::warn!(problem = %why, "Sipgate credentials only partly verified")
        }
        CredentialCheck::Rejected(why) => tracing::error!(
            problem = %why,
            "Sipgate refused the credentials; no SMS can be sent until the config is fixed"
        ),
        CredentialCheck::Unknown(why) => tracing::warn!(
            problem = %why,
            retry_s = RECHECK_INTERVAL.as_secs(),
            "cannot verify the Sipgate credentials yet"
        ),
    }
}

/// `Ok` with a short status, or `Err` with the reason the service is not ready.
pub fn readiness(state: &AppState) -> Result<String, String> {
    if let Some((reason, left)) = state.deliverer.holdoff() {
        return Err(format!(
            "Sipgate refused an SMS ({}): {}; SMS fail fast for {}s more",
            reason.as_str(),
            state.current().provider.operator_hint(reason),
            left.as_secs() + 1
        ));
    }
    let live = state.current();
    match live.credentials.status() {
        CredentialStatus::Checking => Err("checking the Sipgate credentials".to_string()),
        CredentialStatus::Checked(CredentialCheck::Rejected(why)) => {
            Err(format!("Sipgate refused the credentials: {why}"))
        }
        CredentialStatus::Checked(CredentialCheck::Unknown(why)) => {
            Err(format!("cannot verify the Sipgate credentials: {why}"))
        }
        CredentialStatus::Checked(_) | CredentialStatus::NotChecked => Ok(format!(
            "{}, state: {}",
            if live.is_dry_run() {
                "dry-run"
            } else {
                "sipgate"
            },
            state.deliverer.store().name()
        )),
    }
}

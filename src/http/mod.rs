//! The HTTP side: routes, body limits, and the one place where errors become status codes.
//! The pages people read in a browser are in `web`.

pub mod auth;
pub mod calendar;
pub mod guesses;
pub mod incidents;
pub mod web;

use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
// actix-web's `web` as `actix`: `web` is the folder of the pages.
use actix_web::web as actix;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

use self::auth::{Guarded, RefusalLog};
use crate::app::AppState;
use crate::health;
use crate::ingest::{self, PayloadError};
use crate::live::Live;
use crate::model::outcome::SmsReport;
use crate::pipeline;
use crate::reload;

/// Every way a request can fail before any SMS is attempted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("request body is larger than the limit of {limit} bytes (server.max_body_size)")]
    TooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("internal error; the request was not processed, please retry")]
    Panic,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("missing or wrong credentials")]
    Unauthorized { challenges: Vec<&'static str> },
    #[error("missing or wrong X-Grafana-Alerting-Signature")]
    BadSignature,
    #[error("not found")]
    NotFound,
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("{0}; try again")]
    Unavailable(String),
    #[error("too many unknown links from your address; try again in a minute")]
    TooManyGuesses,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    error: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            // Malformed input will not get better by retrying, so Alertmanager must not retry it.
            ApiError::Payload(_) | ApiError::BodyRead(_) | ApiError::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            // A bug, not the caller's fault: 5xx, so that Alertmanager retries.
            ApiError::Panic => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized { .. } | ApiError::BadSignature => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyGuesses => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", *allow));
            }
            ApiError::TooManyGuesses => {
                response.insert_header(("Retry-After", guesses::GUESS_WINDOW.as_secs()));
            }
            ApiError::Unauthorized { challenges } => {
                for challenge in challenges {
                    response.append_header(("WWW-Authenticate", *challenge));
                }
            }
            _ => {}
        }
        response.json(ErrorBody {
            status: "error",
            error: &message,
        })
    }
}

/// The answer to a notification: one entry per SMS the notification led to.
#[derive(Debug, Serialize)]
pub struct NotificationResponse {
    pub status: &'static str,
    pub sms: Vec<SmsReport>,
    pub unrouted_alerts: usize,
}

/// Starts the server on an already bound listener, so tests can bind port 0. Signals are left to
/// the caller, which also has to let the deliverer finish its sends after the server stopped.
pub fn build(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown_timeout: Duration,
) -> std::io::Result<Server> {
    let data = actix::Data::from(state);
    // One for all workers, so that a flood of refusals is sampled as one.
    let refusals = actix::Data::new(RefusalLog::default());
    let guesses = actix::Data::new(guesses::Guesses::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(refusals.clone())
            .app_data(guesses.clone())
            .wrap(actix_web::middleware::from_fn(count_requests))
            // Alertmanager's and Grafana's webhooks.
            .service(webhook("/alerts", ingest::parse_alertmanager))
            // Healthchecks.io's webhook, with the body the README documents.
            .service(webhook("/healthchecks", ingest::parse_healthchecks))
            .service(
                actix::resource("/api/v1/oncall")
                    .route(actix::get().to(oncall))
                    .default_service(actix::to(only_get)),
            )
            .service(
                actix::resource("/api/v1/incidents")
                    .route(actix::get().to(incidents::list))
                    .default_service(actix::to(only_get)),
            )
            // The status page, behind server.auth as the API.
            .service(
                actix::resource("/")
                    .route(actix::get().to(web::status::show))
                    .route(actix::head().to(web::status::show))
                    .default_service(actix::to(only_get_or_head)),
            )
            // The acknowledgement pages: outside server.auth, the code is the credential.
            .service(
                actix::resource("/a/{code}")
                    .app_data(actix::PayloadConfig::new(ACK_FORM_LIMIT))
                    .route(actix::get().to(web::ack::show))
                    .route(actix::post().to(web::ack::act))
                    .default_service(actix::to(only_get_or_post)),
            )
            // The calendar feeds: outside server.auth, the token is the credential.
            .service(calendar::resource())
            // The pages' stylesheet: outside server.auth, as the acknowledgement pages need it.
            .service(
                actix::resource(web::assets::STYLESHEET)
                    .route(actix::get().to(web::assets::stylesheet))
                    .route(actix::head().to(web::assets::stylesheet))
                    .default_service(actix::to(only_get_or_head)),
            )
            .route("/metrics", actix::get().to(metrics))
            .route("/-/healthy", actix::get().to(healthy))
            .route("/-/ready", actix::get().to(ready))
            .service(
                actix::resource("/-/reload")
                    .route(actix::post().to(reload))
                    .default_service(actix::to(only_post)),
            )
            .default_service(actix::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs().max(1))
    .listen(listener)?
    .run();
    Ok(server)
}

async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let endpoint = req.match_pattern().unwrap_or_else(|| "other".to_string());
    let state = req.app_data::<actix::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    if let Some(state) = state {
        state.metrics.request(&endpoint, response.status().as_u16());
    }
    Ok(response)
}

async fn read_body(mut payload: actix::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::TooLarge { limit },
            other => ApiError::BodyRead(other.to_string()),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs a request to its end; a panic inside it (a bug) becomes `Err` instead of taking the
/// worker down with the connection. SMS already handed to the sender still complete.
pub async fn contain_panics<F: std::future::Future>(future: F) -> Result<F::Output, ()> {
    match std::panic::AssertUnwindSafe(future).catch_unwind().await {
        Ok(output) => Ok(output),
        Err(panic) => {
            let message = crate::panic::message(panic.as_ref());
            tracing::error!(panic = %message, "bug: a request panicked; answered 500");
            Err(())
        }
    }
}

type Parser = fn(&[u8]) -> Result<crate::model::alert::Notification, PayloadError>;

/// A webhook at `path` that takes notifications in the format `parse` reads, by POST or by PUT
/// (Grafana's webhook contact point can be set to PUT).
fn webhook(path: &str, parse: Parser) -> actix_web::Resource {
    let handler =
        move |state: actix::Data<AppState>, request: HttpRequest, payload: actix::Payload| {
            notification(state, request, payload, parse)
        };
    actix::resource(path)
        .route(actix::post().to(handler))
        .route(actix::put().to(handler))
        .default_service(actix::to(only_post_or_put))
}

/// Every notification gets an id that ties its log lines together and comes back in
/// `X-Request-Id`.
async fn notification(
    state: actix::Data<AppState>,
    request: HttpRequest,
    payload: actix::Payload,
    parse: Parser,
) -> HttpResponse {
    let request_id = format!("{:016x}", fastrand::u64(..));
    let span = tracing::info_span!("notification", request_id = %request_id);
    let metrics = state.metrics.clone();
    let handled =
        contain_panics(handle_notification(state, request, payload, parse).instrument(span)).await;
    let mut response = match handled {
        Ok(result) => result.unwrap_or_else(|e| e.error_response()),
        Err(()) => {
            metrics.panic();
            ApiError::Panic.error_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

async fn handle_notification(
    state: actix::Data<AppState>,
    request: HttpRequest,
    payload: actix::Payload,
    parse: Parser,
) -> Result<HttpResponse, ApiError> {
    let started = tokio::time::Instant::now();
    let live = state.current();
    authorize(&live, &request, Guarded::Notification)?;
    // A client that trickles its body in (slow loris) gets until the response deadline.
    let body = tokio::time::timeout(
        live.config.delivery.response_deadline,
        read_body(payload, live.config.server.max_body_size),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)??;
    let notification = match parse(&body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "rejected notification");
            return Err(e.into());
        }
    };
    if notification.source == crate::model::alert::Source::Grafana {
        check_grafana_signature(&live, &request, &body)?;
    }
    drop(body);
    let report = pipeline::run(
        &live,
        &state.deliverer,
        &state.metrics,
        &state.heartbeats,
        notification,
        started,
        state.clock.datetime(),
    )
    .await;
    // 502 makes Alertmanager retry; 2xx would tell it the page went out.
    let (code, status) = if report.all_delivered() {
        (StatusCode::OK, "success")
    } else {
        (StatusCode::BAD_GATEWAY, "failed")
    };
    Ok(HttpResponse::build(code).json(NotificationResponse {
        status,
        sms: report.sms,
        unrouted_alerts: report.unrouted_alerts,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnCallQuery {
    /// RFC 3339; now when absent.
    at: Option<String>,
    next: Option<usize>,
}

#[derive(Serialize)]
struct OnCallResponse {
    at: chrono::DateTime<chrono::Utc>,
    schedules: Vec<crate::oncall::ScheduleView>,
}

/// Who is on call now (or `?at=`), until when, and the next handoffs (`?next=`, default 3):
/// names only, behind the same credentials as `/alerts`.
async fn oncall(
    state: actix::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let live = state.current();
    authorize(&live, &request, Guarded::OnCall)?;
    let query = actix::Query::<OnCallQuery>::from_query(request.query_string())
        .map_err(|e| ApiError::BadQuery(e.to_string()))?
        .into_inner();
    let at = match query.at.as_deref() {
        None => state.clock.datetime(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                ApiError::BadQuery(format!("at: {e}; use RFC 3339, e.g. 2026-12-06T03:00:00Z"))
            })?
            .with_timezone(&chrono::Utc),
    };
    let next = query.next.unwrap_or(3);
    if next > 100 {
        return Err(ApiError::BadQuery("next: at most 100".to_string()));
    }
    Ok(HttpResponse::Ok().json(OnCallResponse {
        at,
        schedules: live
            .config
            .schedules
            .values()
            .map(|s| s.view(at, next))
            .collect(),
    }))
}

/// The escalation engine on `live`, at the service's time.
fn escalation<'a>(state: &'a AppState, live: &'a Live) -> crate::escalation::Escalation<'a> {
    crate::escalation::Escalation::at(
        live,
        &state.deliverer,
        &state.metrics,
        state.clock.datetime(),
    )
}

/// The largest acknowledgement form: a token and an action.
const ACK_FORM_LIMIT: usize = 4096;

async fn metrics(
    state: actix::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let live = state.current();
    if live
        .config
        .server
        .auth
        .as_ref()
        .is_some_and(|auth| auth.protect_metrics)
    {
        authorize(&live, &request, Guarded::Metrics)?;
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

async fn healthy() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("OK\n")
}

/// Checks the caller's credentials when the config asks for them; a refusal is logged as what
/// it means for a request of `kind`.
fn authorize(live: &Live, request: &HttpRequest, kind: Guarded) -> Result<(), ApiError> {
    let Some(required) = &live.config.server.auth else {
        return Ok(());
    };
    let raw = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION);
    if auth::accepts(required, raw.and_then(|v| v.to_str().ok())) {
        return Ok(());
    }
    let scheme = auth::scheme_tried(raw.map(|v| v.as_bytes()));
    let log = refusal_log(request).credentials(kind);
    if let Some(sample) = log.record(std::time::Instant::now(), scheme) {
        tracing::warn!(
            peer = %request.peer_addr().map_or_else(String::new, |a| a.ip().to_string()),
            path = request.path(),
            scheme,
            refused_since_last_line = sample.count,
            schemes_tried = %sample.kinds,
            at_most_one_line_per_s = log.interval().as_secs(),
            "{}",
            kind.refusal_message()
        );
    }
    Err(ApiError::Unauthorized {
        challenges: auth::challenges(required),
    })
}

/// The log of refused requests that `build` shares among the workers.
fn refusal_log(request: &HttpRequest) -> &RefusalLog {
    static UNSHARED: std::sync::LazyLock<RefusalLog> = std::sync::LazyLock::new(Default::default);
    request
        .app_data::<actix::Data<RefusalLog>>()
        .map_or(&UNSHARED, |log| log.get_ref())
}

fn check_grafana_signature(
    live: &Live,
    request: &HttpRequest,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(hmac) = &live.config.server.grafana_hmac else {
        return Ok(());
    };
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let timestamp = hmac.timestamp_header.as_deref().and_then(header);
    let signature = header("x-grafana-alerting-signature").unwrap_or("");
    if auth::grafana_signature_ok(hmac.secret.expose_secret(), timestamp, body, signature) {
        return Ok(());
    }
    let kind = if signature.trim().is_empty() {
        "missing"
    } else {
        "wrong"
    };
    let log = &refusal_log(request).grafana_signature;
    if let Some(sample) = log.record(std::time::Instant::now(), kind) {
        tracing::warn!(
            refused_since_last_line = sample.count,
            signatures = %sample.kinds,
            at_most_one_line_per_s = log.interval().as_secs(),
            "Grafana notification refused: missing or wrong X-Grafana-Alerting-Signature"
        );
    }
    Err(ApiError::BadSignature)
}

async fn reload(
    state: actix::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state.current(), &request, Guarded::Reload)?;
    let state = state.into_inner();
    Ok(match reload::reload_and_check(&state) {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("config reloaded\n"),
        Err(e) => HttpResponse::InternalServerError()
            .content_type("text/plain")
            .body(format!(
                "config reload failed, keeping the running config: {e}\n"
            )),
    })
}

async fn ready(state: actix::Data<AppState>) -> HttpResponse {
    match health::readiness(&state) {
        Ok(mode) => HttpResponse::Ok()
            .content_type("text/plain")
            .body(format!("OK ({mode})\n")),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {why}\n")),
    }
}

async fn only_post_or_put() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "POST, PUT" })
}

async fn only_get() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET" })
}

async fn only_post() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "POST" })
}

async fn only_get_or_head() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
}

async fn only_get_or_post() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: "GET, POST" })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_instead_of_unwinding_further() {
        fn buggy() -> u8 {
            panic!("boom")
        }
        let panicked = contain_panics(async { buggy() }).await;
        assert_eq!(panicked, Err(()));
        assert_eq!(contain_panics(async { 7 }).await, Ok(7));
    }
}

//! The acknowledgement pages (`/a/<code>`, outside `server.auth`: the code is the credential).
//! A GET only shows; only a POST from the page, with its CSRF token, acts, because SMS apps and
//! link scanners fetch every link they see. Wrong codes count towards the `Guesses` limit.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::incident::IncidentView;
use super::{Layout, message};
use crate::app::AppState;
use crate::escalation::incident::Via;
use crate::escalation::{AckError, Acknowledged, Visit};
use crate::http::guesses::{GUESS_WINDOW, Guesses, client};

#[derive(Debug, Deserialize)]
struct AckForm {
    csrf: Option<String>,
    action: Option<String>,
}

/// The way from `/a/<code>` back to the service's root.
const ROOT: &str = "../";

/// `GET /a/<code>`: what the incident is, who was paged, who acknowledged; never acts.
pub async fn show(
    state: web::Data<AppState>,
    guesses: web::Data<Guesses>,
    request: HttpRequest,
    code: web::Path<String>,
) -> HttpResponse {
    let client = client(&request);
    let live = state.current();
    let escalation = crate::http::escalation(&state, &live);
    match escalation.visit(&code).await {
        Ok(visit) => incident_page(&visit, &code, None, live.alertmanager_configured(), &state),
        Err(e) => failed(e, &guesses, client),
    }
}

/// `POST /a/<code>`: acknowledges (and silences) when the form's token is right.
pub async fn act(
    state: web::Data<AppState>,
    guesses: web::Data<Guesses>,
    request: HttpRequest,
    code: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let client = client(&request);
    let form = std::str::from_utf8(&body)
        .ok()
        .and_then(|body| web::Query::<AckForm>::from_query(body).ok());
    let live = state.current();
    let escalation = crate::http::escalation(&state, &live);
    // An unknown code is told as such whatever the form says, so that it counts as a guess.
    if let Err(e) = escalation.visit(&code).await {
        return failed(e, &guesses, client);
    }
    let Some(form) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            ROOT,
            "This form could not be read",
            "Open the link from the SMS again and press the button there.",
        );
    };
    if !form
        .csrf
        .as_deref()
        .is_some_and(|token| token_is_right(&code, token))
    {
        return message(
            StatusCode::FORBIDDEN,
            ROOT,
            "This form is not from this link's page",
            "Nothing was acknowledged. Open the link from the SMS again and press the button \
             there.",
        );
    }
    let silence = match form.action.as_deref() {
        Some("ack") | None => false,
        Some("silence") => true,
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                ROOT,
                "Unknown action",
                "Nothing was acknowledged. Open the link from the SMS again and press one of \
                 the buttons there.",
            );
        }
    };
    match escalation.acknowledge(&code, silence).await {
        Ok(done) => incident_page(
            &done.visit,
            &code,
            Some(outcome(&done)),
            live.alertmanager_configured(),
            &state,
        ),
        Err(e) => failed(e, &guesses, client),
    }
}

/// What a POST did, in the words of its confirmation.
fn outcome(done: &Acknowledged) -> String {
    if done.now {
        return match &done.silenced {
            Some(Ok(())) => "Acknowledged and silenced until the alerts resolve. Nobody else \
                             will be paged."
                .to_string(),
            Some(Err(_)) => "Acknowledged. Nobody else will be paged. The silence could not be \
                             made in Alertmanager; silence the alerts there."
                .to_string(),
            None => "Acknowledged. Nobody else will be paged.".to_string(),
        };
    }
    let incident = &done.visit.incident;
    if !incident.is_open() {
        return "This incident has ended; there is nothing to acknowledge.".to_string();
    }
    match incident
        .ack
        .as_ref()
        .map(|ack| (ack.by.as_deref(), ack.via))
    {
        Some((Some(by), _)) => format!("{by} had already acknowledged it."),
        Some((None, Via::Silence)) => {
            "A silence in Alertmanager had already acknowledged it.".to_string()
        }
        _ => "It had already been acknowledged.".to_string(),
    }
}

/// The answer to a code that did not lead anywhere.
fn failed(e: AckError, guesses: &Guesses, client: IpAddr) -> HttpResponse {
    match e {
        AckError::Unknown => {
            if !guesses.wrong(client, Instant::now()) {
                return too_many();
            }
            message(
                StatusCode::NOT_FOUND,
                ROOT,
                "This link is unknown or has expired",
                "Links expire a day after their incident ended. Check that the whole link from \
                 the SMS was opened; if the alert still fires, the next page brings a new link.",
            )
        }
        AckError::Escalation(e) => {
            tracing::warn!(error = %e, "acknowledgement page could not be served");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                ROOT,
                "The pager cannot read its state right now",
                "Try again in a minute. Until an acknowledgement goes through, the escalation \
                 goes on.",
            )
        }
    }
}

fn too_many() -> HttpResponse {
    let mut response = message(
        StatusCode::TOO_MANY_REQUESTS,
        ROOT,
        "Too many unknown links",
        "Too many unknown links came from your address. Try again in a minute.",
    );
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from(GUESS_WINDOW.as_secs()),
    );
    response
}

/// The form's token: derived from the code, so that every replica checks it alike, and only
/// a page that knew the code can send it.
pub fn form_token(code: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(code.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"acknowledge form");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn token_is_right(code: &str, given: &str) -> bool {
    crate::escalation::code::same(given, &form_token(code))
}

/// The acknowledgement form: its token, and whether it offers a silence too.
struct Form {
    csrf: String,
    can_silence: bool,
}

#[derive(Template)]
#[template(path = "web/ack.html")]
struct AckPage<'a> {
    layout: Layout,
    incident: IncidentView<'a>,
    /// What the POST did.
    outcome: Option<String>,
    person: &'a str,
    /// While there is something to acknowledge.
    form: Option<Form>,
}

/// The incident of `visit` as its link's page shows it, with what a POST did (`outcome`).
fn incident_page(
    visit: &Visit,
    code: &str,
    outcome: Option<String>,
    can_silence: bool,
    state: &AppState,
) -> HttpResponse {
    let incident = &visit.incident;
    let view = IncidentView::of(incident, state.clock.datetime());
    super::page(
        StatusCode::OK,
        &AckPage {
            layout: Layout {
                title: format!("{} – pager", view.alertname),
                root: ROOT,
            },
            outcome,
            person: &visit.person,
            form: (incident.ack.is_none() && incident.is_open()).then(|| Form {
                csrf: form_token(code),
                can_silence,
            }),
            incident: view,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_token_belongs_to_its_code() {
        assert!(token_is_right("a", &form_token("a")));
        assert!(!token_is_right("b", &form_token("a")));
        assert!(!token_is_right("a", ""));
    }
}

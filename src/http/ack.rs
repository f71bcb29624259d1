//! The acknowledgement pages (`/a/<code>`, outside `server.auth`: the code is the credential)
//! and the incidents query. A GET only shows; only a POST from the page, with its CSRF token,
//! acts, because SMS apps and link scanners fetch every link they see. Wrong codes are counted
//! per client address (an IPv6 /64 as one), and past a limit they get 429 instead of 404. A
//! right code is always served: with 72 random bits guessing is hopeless anyway, and a guesser
//! behind the same proxy or NAT must not lock out the person on call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::app::AppState;
use crate::escalation::incident::{Incident, Via};
use crate::escalation::{AckError, Visit};

/// Wrong codes one client address may try within `GUESS_WINDOW`.
pub const GUESSES: u32 = 10;
pub const GUESS_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, the one whose window started first is forgotten.
const REMEMBERED: usize = 10_000;

/// Wrong codes per client address, for the 429.
#[derive(Debug, Default)]
pub struct Guesses {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Guesses {
    /// Whether `client` may try a code now.
    pub(crate) fn allowed(&self, client: IpAddr, now: Instant) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&network(client)).is_none_or(|(since, count)| {
            now.duration_since(*since) >= GUESS_WINDOW || *count < GUESSES
        })
    }

    /// Counts a wrong code from `client`; whether it was within the limit.
    pub(crate) fn wrong(&self, client: IpAddr, now: Instant) -> bool {
        let allowed = self.allowed(client, now);
        let client = network(client);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED && !seen.contains_key(&client) {
            seen.retain(|_, (since, _)| now.duration_since(*since) < GUESS_WINDOW);
            if seen.len() >= REMEMBERED
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(a, _)| *a)
            {
                seen.remove(&oldest);
            }
        }
        let entry = seen.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= GUESS_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        allowed
    }
}

/// The address guesses are counted by: an IPv6 client has a /64 to itself.
fn network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

#[derive(Debug, Deserialize)]
struct AckForm {
    csrf: Option<String>,
    action: Option<String>,
}

/// `GET /a/<code>`: what the incident is, who was paged, who acknowledged; never acts.
pub async fn show(
    state: web::Data<AppState>,
    guesses: web::Data<Guesses>,
    request: HttpRequest,
    code: web::Path<String>,
) -> HttpResponse {
    let client = client(&request);
    let live = state.current();
    let escalation = super::escalation(&state, &live);
    match escalation.visit(&code).await {
        Ok(visit) => page(
            StatusCode::OK,
            &incident_page(&visit, &code, None, live.alertmanager_configured()),
        ),
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
    let escalation = super::escalation(&state, &live);
    // An unknown code is told as such whatever the form says, so that it counts as a guess.
    if let Err(e) = escalation.visit(&code).await {
        return failed(e, &guesses, client);
    }
    let Some(form) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "This form could not be read. Open the link from the SMS again.",
        );
    };
    if !form
        .csrf
        .as_deref()
        .is_some_and(|token| token_is_right(&code, token))
    {
        return message(
            StatusCode::FORBIDDEN,
            "This form is not from this link's page. Open the link from the SMS again and press the button there.",
        );
    }
    let silence = match form.action.as_deref() {
        Some("ack") | None => false,
        Some("silence") => true,
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Unknown action. Open the link from the SMS again.",
            );
        }
    };
    match escalation.acknowledge(&code, silence).await {
        Ok(done) => {
            let note = if done.now {
                match (&done.silenced, silence) {
                    (Some(Err(_)), _) => {
                        "Acknowledged. The silence could not be made: Alertmanager did not answer; silence the alerts there."
                    }
                    (Some(Ok(())), _) => {
                        "Acknowledged and silenced until the alerts resolve. Nobody else will be paged."
                    }
                    (None, _) => "Acknowledged. Nobody else will be paged.",
                }
            } else {
                "This incident was acknowledged before, or has ended."
            };
            page(
                StatusCode::OK,
                &incident_page(
                    &done.visit,
                    &code,
                    Some(note),
                    live.alertmanager_configured(),
                ),
            )
        }
        Err(e) => failed(e, &guesses, client),
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
                "This link is unknown or has expired. Links expire a day after their incident ended.",
            )
        }
        AckError::Escalation(e) => {
            tracing::warn!(error = %e, "acknowledgement page could not be served");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The pager cannot read its state right now. Try again in a minute.",
            )
        }
    }
}

fn too_many() -> HttpResponse {
    let mut response = message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many unknown links from your address. Try again in a minute.",
    );
    if let Ok(value) =
        actix_web::http::header::HeaderValue::from_str(&GUESS_WINDOW.as_secs().to_string())
    {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    response
}

pub(crate) fn client(request: &HttpRequest) -> IpAddr {
    request
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
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

/// An HTML page with the headers every `/a/` page carries.
fn page(status: StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body.to_string())
}

fn message(status: StatusCode, text: &str) -> HttpResponse {
    page(
        status,
        &layout("Pager", &format!("<p>{}</p>", escape(text))),
    )
}

fn layout(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>body{{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;line-height:1.4}}\
         button{{display:block;width:100%;font-size:1.2rem;padding:.9rem;margin:.6rem 0}}</style></head>\
         <body><main>{main}</main></body></html>",
        escape(title)
    )
}

fn incident_page(visit: &Visit, code: &str, note: Option<&str>, can_silence: bool) -> String {
    let incident = &visit.incident;
    let mut html = format!("<h1>{}</h1>", escape(incident.alertname()));
    if let Some(note) = note {
        html.push_str(&format!(
            "<p role=\"status\"><strong>{}</strong></p>",
            escape(note)
        ));
    }
    let state = match (&incident.ack, incident.ended_at) {
        (_, Some(at)) => format!("Resolved {}", when(at)),
        (Some(ack), None) => format!(
            "Acknowledged by {} {}",
            escape(ack.by.as_deref().unwrap_or(match ack.via {
                Via::Silence => "a silence in Alertmanager",
                Via::Link => "someone",
            })),
            when(ack.at)
        ),
        (None, None) => format!("Firing since {}", when(incident.opened_at)),
    };
    html.push_str(&format!("<p>{state}</p><ul>"));
    for alert in &incident.notification.alerts {
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .map_or(String::new(), |s| format!(": {}", escape(s)));
        let name = alert
            .labels
            .get("alertname")
            .map_or("alert", String::as_str);
        let instance = alert
            .labels
            .get("instance")
            .map_or(String::new(), |i| format!(" {}", escape(i)));
        html.push_str(&format!(
            "<li>{} {}{instance}{summary}</li>",
            alert.status.as_str(),
            escape(name)
        ));
    }
    html.push_str("</ul><h2>Paged</h2><ul>");
    for page in &incident.pages {
        html.push_str(&format!(
            "<li>{}: step {} – {}</li>",
            when(page.at),
            page.step + 1,
            escape(&page.people.join(", "))
        ));
    }
    html.push_str("</ul>");
    if incident.ack.is_none() && incident.is_open() {
        html.push_str(&format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p>You are {}.</p><button name=\"action\" value=\"ack\">Acknowledge</button>",
            form_token(code),
            escape(&visit.person)
        ));
        if can_silence {
            html.push_str("<button name=\"action\" value=\"silence\">Acknowledge and silence until resolved</button>");
        }
        html.push_str("</form>");
    }
    layout(&format!("{} – pager", incident.alertname()), &html)
}

fn when(at: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(at).unwrap_or(i64::MAX))
        .map_or_else(String::new, |t| t.format("%b %-d %H:%M UTC").to_string())
}

/// Alert labels and annotations are input from anyone who can reach Alertmanager.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One open incident in `/api/v1/incidents`: names, never numbers.
#[derive(Debug, Serialize)]
pub struct IncidentSummary<'a> {
    id: &'a str,
    route: &'a str,
    policy: &'a str,
    alertname: &'a str,
    opened_at: DateTime<Utc>,
    next_step: Option<usize>,
    next_at: Option<DateTime<Utc>>,
    paged: Vec<PagedSummary<'a>>,
    acknowledged: Option<AckSummary<'a>>,
    silenced: bool,
    exhausted: bool,
}

#[derive(Debug, Serialize)]
struct PagedSummary<'a> {
    step: usize,
    round: u8,
    at: DateTime<Utc>,
    people: &'a [String],
}

#[derive(Debug, Serialize)]
struct AckSummary<'a> {
    by: Option<&'a str>,
    via: &'static str,
    at: DateTime<Utc>,
}

fn instant(at: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(at).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl<'a> IncidentSummary<'a> {
    pub fn of(incident: &'a Incident) -> Self {
        IncidentSummary {
            id: &incident.id,
            route: &incident.route,
            policy: &incident.policy,
            alertname: incident.alertname(),
            opened_at: instant(incident.opened_at),
            next_step: incident.next.map(|n| n.step + 1),
            next_at: incident.next.map(|n| instant(n.due)),
            paged: incident
                .pages
                .iter()
                .map(|p| PagedSummary {
                    step: p.step + 1,
                    round: p.round + 1,
                    at: instant(p.at),
                    people: &p.people,
                })
                .collect(),
            acknowledged: incident.ack.as_ref().map(|a| AckSummary {
                by: a.by.as_deref(),
                via: a.via.as_str(),
                at: instant(a.at),
            }),
            silenced: incident.silence.is_some(),
            exhausted: incident.exhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            escape("<script>alert(\"x\")</script> & 'javascript:'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;javascript:&#39;"
        );
    }

    #[test]
    fn the_form_token_belongs_to_its_code() {
        assert!(token_is_right("a", &form_token("a")));
        assert!(!token_is_right("b", &form_token("a")));
        assert!(!token_is_right("a", ""));
    }

    #[test]
    fn an_address_is_refused_after_its_wrong_guesses_for_a_window() {
        let guesses = Guesses::default();
        let (one, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..GUESSES {
            assert!(guesses.allowed(one, start));
            guesses.wrong(one, start);
        }
        assert!(!guesses.allowed(one, start));
        assert!(guesses.allowed(other, start));
        assert!(guesses.allowed(one, start + GUESS_WINDOW));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_the_table_stays_bounded() {
        let guesses = Guesses::default();
        let start = Instant::now();
        let host = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, n]);
        for n in 0..GUESSES as u16 {
            guesses.wrong(host(n), start);
        }
        assert!(
            !guesses.allowed(host(999), start),
            "another address of the same /64"
        );
        assert!(guesses.allowed(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), start));
        for n in 0..(REMEMBERED as u32 + 50) {
            guesses.wrong(IpAddr::from(n.to_be_bytes()), start);
        }
        let seen = guesses.seen.lock().unwrap().len();
        assert!(seen <= REMEMBERED, "{seen}");
    }
}

//! `GET /calendar/<token>.ics`: the calendar feeds of `web.calendars`, outside `server.auth`
//! (calendar apps cannot send credentials: the token in the URL is the credential). A wrong
//! token counts as a wrong acknowledgement code does, per client address, and past the limit
//! gets 429 instead of 404; a right one is always served.
//!
//! `Cache-Control: no-store`: a feed names who is on call when, and a token that leaked is
//! replaced to cut it off at once, which a copy kept in a browser or proxy cache would outlive.
//! Apps poll a subscription every hour or less often, which a render (milliseconds for weekly
//! or daily shifts) bears.

use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use super::guesses::{Guesses, client};
use crate::app::AppState;
use crate::config::CalendarFeed;
use crate::oncall::calendar;

/// The route, GET and HEAD; every other method gets 405.
pub fn resource() -> actix_web::Resource {
    web::resource("/calendar/{token}.ics")
        .route(web::get().to(feed))
        .route(web::head().to(feed))
        .default_service(web::to(super::only_get_or_head))
}

async fn feed(
    state: web::Data<AppState>,
    guesses: web::Data<Guesses>,
    request: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let live = state.current();
    let Some(found) = find(&live.config.web.calendars, &token) else {
        return Err(if guesses.wrong(client(&request), Instant::now()) {
            ApiError::NotFound
        } else {
            ApiError::TooManyGuesses
        });
    };
    let (feed, now) = (found.feed.clone(), state.clock.datetime());
    // Off the HTTP worker: 26 weeks of hourly shifts take a while, and the webhooks on the same
    // worker must not wait for them.
    let body = web::block(move || calendar::render(&feed, &live.config.schedules, now))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "bug: rendering a calendar feed failed; answered 500");
            state.metrics.panic();
            ApiError::Panic
        })?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body))
}

/// The feed whose token is `given`. Every feed's token is compared, each in constant time and
/// as a hash, so that neither the time taken nor the lengths tell a guesser how close it came.
fn find<'a>(feeds: &'a [CalendarFeed], given: &str) -> Option<&'a CalendarFeed> {
    let given = Sha256::digest(given.as_bytes());
    let mut found = None;
    for feed in feeds {
        let kept = Sha256::digest(feed.token.expose_secret().as_bytes());
        if bool::from(kept.ct_eq(&given)) {
            found = Some(feed);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::calendar::Feed;

    fn feed(name: &str, token: &str) -> CalendarFeed {
        CalendarFeed {
            feed: Feed::Schedule(name.into()),
            token: token.to_string().into(),
        }
    }

    #[test]
    fn only_the_whole_token_finds_its_feed() {
        let feeds = [
            feed("primary", "aaaaaaaaaaaaaaaaaaaaaaaa"),
            feed("secondary", "bbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
        ];
        let name = |token: &str| {
            find(&feeds, token).map(|f| match &f.feed {
                Feed::Schedule(name) | Feed::Person(name) => name.clone(),
            })
        };
        assert_eq!(name("aaaaaaaaaaaaaaaaaaaaaaaa").as_deref(), Some("primary"));
        assert_eq!(
            name("bbbbbbbbbbbbbbbbbbbbbbbbbbbb").as_deref(),
            Some("secondary")
        );
        for wrong in [
            "",
            "aaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaa",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(name(wrong), None, "{wrong}");
        }
        assert!(find(&[], "aaaaaaaaaaaaaaaaaaaaaaaa").is_none());
    }
}

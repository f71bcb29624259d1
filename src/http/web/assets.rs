//! The pages' one stylesheet, hand-written and compiled into the binary: no asset build step,
//! and a page and its style always come from the same build.
//!
//! It is served with a short lifetime and an ETag of its content, rather than with a version in
//! its URL and a long lifetime: during a rolling update replicas of two versions answer behind
//! one address, so a page from the new one may fetch the stylesheet from the old one, and a
//! long-lived copy of that under the new URL would stick. Five minutes bound such a mix-up, and
//! the ETag turns each look after them into a 304 without the body.

use std::sync::LazyLock;

use actix_web::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// Where the pages find it.
pub const STYLESHEET: &str = "/static/style.css";

const CSS: &str = include_str!("../../../templates/web/style.css");

const LIFETIME: &str = "public, max-age=300";

/// A strong validator: the start of the content's SHA-256, in hex and quotes.
static TAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(CSS.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
});

/// `GET /static/style.css`: the stylesheet, or 304 when the browser's copy is this one.
pub async fn stylesheet(request: HttpRequest) -> HttpResponse {
    let tag = TAG.as_str();
    let fresh = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| names(tags, tag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((CACHE_CONTROL, LIFETIME))
        .insert_header((ETAG, tag))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if fresh {
        response.finish()
    } else {
        response.content_type("text/css; charset=utf-8").body(CSS)
    }
}

/// Whether an `If-None-Match` value (a list of tags, weak ones among them, or `*`) names `tag`:
/// the weak comparison RFC 9110 asks for there.
fn names(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|given| given == "*" || given.trim_start_matches("W/") == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_is_found_in_any_form_a_browser_sends_it() {
        let tag = "\"0123abcd\"";
        for given in [
            tag,
            "W/\"0123abcd\"",
            "\"x\", \"0123abcd\"",
            "\"x\",W/\"0123abcd\"",
            "*",
        ] {
            assert!(names(given, tag), "{given}");
        }
        for given in ["", "\"x\"", "0123abcd", "\"0123abcd"] {
            assert!(!names(given, tag), "{given}");
        }
    }
}

//! The pages people read in a browser, on a phone at 3 a.m. as on a desk: the acknowledgement
//! pages (`/a/<code>`), the status page (`/`) and their stylesheet. Rendered on the server from
//! the askama templates in `templates/web/` (checked when the crate compiles, HTML escaping on),
//! without any script. Every HTML answer leaves through `page`, which sets the headers they all
//! carry, so that no page can forget one.

pub mod ack;
pub mod assets;
pub mod incident;
pub mod moment;
pub mod status;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

/// No script at all, styles only from the service's own stylesheet, forms only back to the
/// service, and no framing: a label value that slipped through escaping still could not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every page's layout shows.
pub struct Layout {
    pub title: String,
    /// The way from the page's URL back to the service's root, so that the stylesheet is found
    /// also behind a proxy that serves the service under a path (`web.external_url`).
    pub root: &'static str,
}

/// `page` rendered as the answer with `status`, with the headers of every HTML answer: the
/// Content-Security-Policy; no Referer (an acknowledgement page's URL is a credential); no
/// content sniffing; and no copy kept anywhere, since each page is as of now and either holds
/// such a URL or sits behind `server.auth`.
pub fn page(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header(("Cache-Control", "no-store"))
            .body(html),
        Err(e) => {
            // Only a template's own code can fail here, never the values it shows.
            tracing::error!(error = %e, "bug: a page could not be rendered; answered 500");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error: the page could not be rendered\n")
        }
    }
}

/// A page that only says one thing: what happened, and what to do.
#[derive(Template)]
#[template(path = "web/message.html")]
pub struct Message {
    pub layout: Layout,
    pub heading: &'static str,
    pub text: &'static str,
}

/// `heading` and `text` as the answer with `status`, for a page `root` below the service's root.
pub fn message(
    status: StatusCode,
    root: &'static str,
    heading: &'static str,
    text: &'static str,
) -> HttpResponse {
    page(
        status,
        &Message {
            layout: Layout {
                title: heading.to_string(),
                root,
            },
            heading,
            text,
        },
    )
}

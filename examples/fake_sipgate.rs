//! A stand-in for the Sipgate SMS API, for trying the service without sending real SMS and for
//! load tests. It answers `POST /v2/sessions/sms` like Sipgate (204, empty body) after an optional
//! delay, can fail the first N requests, and prints every SMS it receives.
//!
//! ```sh
//! cargo run --example fake-sipgate -- --listen 127.0.0.1:8089 --delay 50ms
//! # in the config file: sipgate: {api_url: http://127.0.0.1:8089/v2, token_id: token-AB12CD, token: x}
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Clone)]
#[command(about = "A fake Sipgate SMS API on loopback")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// How long each answer takes, e.g. 50ms.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    delay: Duration,
    /// Answer the first N requests with --fail-status.
    #[arg(long, default_value_t = 0)]
    fail_first: u64,
    /// Status code for the failing requests.
    #[arg(long, default_value_t = 503)]
    fail_status: u16,
    /// Do not print each SMS (for load tests).
    #[arg(long)]
    quiet: bool,
    /// Append each accepted SMS to this file as a JSON line (recipient, message, authorization).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SmsRequest {
    sms_id: String,
    recipient: String,
    message: String,
}

struct State {
    args: Args,
    requests: AtomicU64,
}

async fn send_sms(state: web::Data<State>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if !state.args.delay.is_zero() {
        tokio::time::sleep(state.args.delay).await;
    }
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !authorized {
        return HttpResponse::Unauthorized().finish();
    }
    let Ok(sms) = serde_json::from_slice::<SmsRequest>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    if sms.message.trim().is_empty() || sms.recipient.trim().is_empty() {
        return HttpResponse::BadRequest().finish();
    }
    if n <= state.args.fail_first {
        let status = actix_web::http::StatusCode::from_u16(state.args.fail_status)
            .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
        return HttpResponse::build(status).finish();
    }
    if !state.args.quiet {
        println!(
            "SMS #{n} from {} to {}:\n{}\n",
            sms.sms_id, sms.recipient, sms.message
        );
    }
    if let Some(path) = &state.args.record {
        let line = serde_json::json!({
            "smsId": sms.sms_id,
            "recipient": sms.recipient,
            "message": sms.message,
            "authorization": request.headers().get("authorization").and_then(|v| v.to_str().ok()),
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot record to {}: {e}", path.display());
            return HttpResponse::InternalServerError().finish();
        }
    }
    HttpResponse::NoContent().finish()
}

async fn userinfo() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"sub": "w0"}))
}

async fn sms_extensions() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"items": [{"id": "s0", "alias": "SMS"}]}))
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listen = args.listen.clone();
    let state = web::Data::from(Arc::new(State {
        args,
        requests: AtomicU64::new(0),
    }));
    eprintln!("fake Sipgate listening on http://{listen}/v2");
    actix_web::rt::System::new().block_on(
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/v2/sessions/sms", web::post().to(send_sms))
                // What the service's credential check asks: whose token, and its SMS extensions.
                .route("/v2/authorization/userinfo", web::get().to(userinfo))
                .route("/v2/{sub}/sms", web::get().to(sms_extensions))
        })
        .bind(&listen)?
        .run(),
    )
}

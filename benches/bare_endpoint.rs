//! The upper bound for the load benchmark: an actix-web endpoint that parses the same JSON body
//! and answers a small JSON document, doing nothing else.
#![forbid(unsafe_code)]

use actix_web::{App, HttpResponse, HttpServer, web};

async fn alerts(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({"status": "success"})),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()})),
    }
}

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19800".to_string());
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| App::new().route("/alerts", web::post().to(alerts)))
            .bind(listen)?
            .run(),
    )
}

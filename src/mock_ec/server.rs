//! The HTTP side of the mock: SOAP on `POST` to any path, and the JSON endpoints that let tests
//! and demos look inside and steer it.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use super::MockEc;
use super::records::ReceiptFilter;
use super::scripts::ScriptRule;
use super::soap;

/// Largest request body accepted: receipts with stamp attachments can be big.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How long a graceful stop waits for requests in flight.
const SHUTDOWN_SECS: u64 = 5;

/// The actix server on `listener`, one worker (every handler is async, so slow answers do not
/// hold others up), not yet polled.
pub(super) fn build(mock: MockEc, listener: TcpListener) -> io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(mock.clone()))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .service(web::resource("/health").route(web::get().to(health)))
            .service(
                web::resource("/receipts")
                    .route(web::get().to(list_receipts))
                    .route(web::delete().to(clear_receipts)),
            )
            .service(
                web::resource("/requests")
                    .route(web::get().to(list_requests))
                    .route(web::delete().to(clear_requests)),
            )
            .service(
                web::resource("/scripts")
                    .route(web::get().to(list_scripts))
                    .route(web::post().to(add_script))
                    .route(web::delete().to(clear_scripts)),
            )
            .service(
                web::resource("/positions/{fiscal_code}/{notice_number}")
                    .route(web::get().to(position)),
            )
            .default_service(web::to(soap_endpoint))
    })
    .workers(1)
    // `run` handles Ctrl-C itself; tests must not be stopped by signals.
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_SECS)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn soap_endpoint(
    req: HttpRequest,
    body: web::Bytes,
    mock: web::Data<MockEc>,
) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .finish();
    }
    let action = req
        .headers()
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok());
    let reply = soap::handle(&mock, req.path(), action, req.query_string(), &body).await;
    let mut res = HttpResponse::build(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if let Some(content_type) = reply.content_type {
        res.content_type(content_type);
    }
    res.body(reply.body)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn list_receipts(mock: web::Data<MockEc>, filter: web::Query<ReceiptFilter>) -> HttpResponse {
    let receipts: Vec<_> = mock
        .receipts()
        .into_iter()
        .filter(|r| filter.matches(r))
        .collect();
    HttpResponse::Ok().json(receipts)
}

async fn clear_receipts(mock: web::Data<MockEc>) -> HttpResponse {
    mock.clear_receipts();
    HttpResponse::NoContent().finish()
}

async fn list_requests(mock: web::Data<MockEc>) -> HttpResponse {
    HttpResponse::Ok().json(mock.requests())
}

async fn clear_requests(mock: web::Data<MockEc>) -> HttpResponse {
    mock.clear_requests();
    HttpResponse::NoContent().finish()
}

async fn list_scripts(mock: web::Data<MockEc>) -> HttpResponse {
    HttpResponse::Ok().json(mock.scripts())
}

async fn add_script(mock: web::Data<MockEc>, rule: web::Json<ScriptRule>) -> HttpResponse {
    match mock.add_script(rule.into_inner()) {
        Ok(()) => HttpResponse::Created().json(mock.scripts()),
        Err(e) => HttpResponse::BadRequest().json(json!({ "error": e })),
    }
}

async fn clear_scripts(mock: web::Data<MockEc>) -> HttpResponse {
    mock.clear_scripts();
    HttpResponse::NoContent().finish()
}

async fn position(mock: web::Data<MockEc>, path: web::Path<(String, String)>) -> HttpResponse {
    let (fiscal_code, notice_number) = path.into_inner();
    match mock.position(&fiscal_code, &notice_number) {
        Some(view) => HttpResponse::Ok().json(view),
        None => HttpResponse::NotFound().json(json!({
            "error": format!("no position {notice_number} of a configured EC {fiscal_code}")
        })),
    }
}

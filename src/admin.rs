//! The admin listener: the journal, one payment's story, undelivered receipts and re-sending
//! them, and the official monitoring API's job triggers. Off unless `node.admin_listen` is set;
//! protected by `node.admin_token` when set.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::codec::types::{FiscalCode, NoticeNumber};
use crate::engine::NoticeKey;
use crate::journal::story::row_json;
use crate::journal::{JournalQuery, parse_time};
use crate::node::Node;

/// Query parameters of `GET /admin/journal`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalParams {
    pub notice: Option<String>,
    pub ec: Option<String>,
    pub token: Option<String>,
    pub psp: Option<String>,
    pub primitive: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339 timestamps or epoch milliseconds.
    pub from: Option<String>,
    pub to: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

impl JournalParams {
    pub fn to_query(&self) -> Result<JournalQuery, String> {
        Ok(JournalQuery {
            notice_number: self.notice.clone(),
            fiscal_code: self.ec.clone(),
            token: self.token.clone(),
            psp: self.psp.clone(),
            primitive: self.primitive.clone(),
            outcome: self.outcome.clone(),
            from: self.from.as_deref().map(parse_time).transpose()?,
            to: self.to.as_deref().map(parse_time).transpose()?,
            after_id: self.after,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

fn authorized(req: &HttpRequest, node: &Node) -> bool {
    let Some(token) = &node.registry().config().node.admin_token else {
        return true;
    };
    let given = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// Who makes an admin call, for the audit: the peer's address and the token's id (the first 8
/// hex digits of its SHA-256, naming the token without revealing it; `none` without a token).
fn who(req: &HttpRequest, node: &Node) -> String {
    let address = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let token = node
        .registry()
        .config()
        .node
        .admin_token
        .as_ref()
        .map_or_else(
            || "none".to_string(),
            |t| {
                Sha256::digest(t.as_bytes())[..4]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
        );
    format!("{address} (token {token})")
}

/// The answer to a call without the admin token, if the node wants one.
fn unauthorized(req: &HttpRequest, node: &Node) -> Option<HttpResponse> {
    (!authorized(req, node)).then(|| {
        error(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "admin token required",
        )
    })
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

async fn journal(
    req: HttpRequest,
    params: web::Query<JournalParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &node) {
        return refused;
    }
    let q = match params.to_query() {
        Ok(q) => q,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match node.journal_page(&q).await {
        Ok(rows) => {
            let next = (rows.len() == q.limit)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            HttpResponse::Ok().json(json!({ "entries": rows.iter().map(row_json).collect::<Vec<_>>(), "next_after": next }))
        }
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

async fn payment(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &node) {
        return refused;
    }
    let (fc, nn) = path.into_inner();
    let key = match (FiscalCode::new(fc), NoticeNumber::new(nn)) {
        (Ok(fiscal_code), Ok(notice_number)) => NoticeKey {
            fiscal_code,
            notice_number,
        },
        (Err(e), _) | (_, Err(e)) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match node.notice_story(&key).await {
        Ok(story) => HttpResponse::Ok().json(story),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct RecipientParams {
    status: Option<String>,
    limit: Option<usize>,
}

async fn recipients(
    req: HttpRequest,
    params: web::Query<RecipientParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &node) {
        return refused;
    }
    let status = params
        .status
        .clone()
        .unwrap_or_else(|| "FAILED".into())
        .to_ascii_uppercase();
    match node
        .recipients_by_status(&status, params.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(list) => HttpResponse::Ok().json(
            list.iter()
                .map(|r| {
                    json!({
                        "receiptId": r.receipt_id.as_str(),
                        "station": r.station.as_str(),
                        "idPA": r.ec.as_str(),
                        "status": r.status.as_str(),
                        "attempts": r.attempts,
                        "lastError": r.last_error,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ResendParams {
    station: Option<String>,
}

async fn resend(
    req: HttpRequest,
    path: web::Path<String>,
    params: web::Query<ResendParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &node) {
        return refused;
    }
    let receipt_id = path.into_inner();
    let station = params.station.as_deref();
    let result = node.resend(&receipt_id, station).await;
    let outcome = match &result {
        Ok(n) => format!("{n} copies queued"),
        Err(e) => e.code().to_string(),
    };
    node.audit(&who(&req, &node), "resend", &receipt_id, station, &outcome);
    match result {
        Ok(n) => HttpResponse::Accepted().json(json!({ "queued": n })),
        Err(e) => error(actix_web::http::StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// The official node's answer to a job trigger (`ActionResponse`: `success`, `action`,
/// `description`), as its monitoring API's `jobs/trigger/{job}` route writes it: `text/plain`,
/// HTTP 200 when the job ran, 500 when it failed (the official node framework's
/// `NodoRoute.jobTrigger` and `PollerActor`, published in `pagopa/pagopa-fdr-nodo-dei-pagamenti`).
fn job_answer(status: actix_web::http::StatusCode, job: &str, description: &str) -> HttpResponse {
    let body = json!({
        "success": status.is_success(),
        "action": format!("Trigger job {job}"),
        "description": description,
    });
    let content_type = if status.is_success() {
        "text/plain; charset=UTF-8"
    } else {
        "application/json"
    };
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body.to_string())
}

/// `GET /monitoring/v1/jobs/trigger/{job}`: runs one of the official scheduler jobs now and
/// answers when its pass is complete. `mod3CancelV2` cancels the expired tokens, `paSendRt`
/// retries every receipt copy still to deliver; any other job is unknown here (404).
async fn trigger_job(
    req: HttpRequest,
    path: web::Path<String>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &node) {
        return refused;
    }
    let job = path.into_inner();
    let ok = actix_web::http::StatusCode::OK;
    match job.as_str() {
        "mod3CancelV2" => {
            node.cancellation_job().await;
            job_answer(ok, &job, "Job triggered")
        }
        "paSendRt" => match node.retry_receipts_now().await {
            Ok(_) => job_answer(ok, &job, "Job triggered"),
            Err(e) => job_answer(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                &job,
                &e.to_string(),
            ),
        },
        _ => job_answer(
            actix_web::http::StatusCode::NOT_FOUND,
            &job,
            &format!("job {job} not found: this node runs mod3CancelV2 and paSendRt"),
        ),
    }
}

/// The admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(crate::http::health))
        .route("/admin/journal", web::get().to(journal))
        .route(
            "/admin/payments/{fiscal_code}/{notice_number}",
            web::get().to(payment),
        )
        .route("/admin/recipients", web::get().to(recipients))
        .route(
            "/admin/receipts/{receipt_id}/resend",
            web::post().to(resend),
        )
        // Both spellings the official BDD suite's harness calls.
        .route(
            "/monitoring/v1/jobs/trigger/{job}",
            web::get().to(trigger_job),
        )
        .route("/jobs/trigger/{job}", web::get().to(trigger_job));
}

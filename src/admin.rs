//! The admin listener: Prometheus metrics, the admin API (the journal, one payment's story,
//! receipt copies and re-sending them, the service levels), the official monitoring API's job
//! triggers and the operator console. Off unless `node.admin_listen` is set.
//!
//! Every route is declared once, in [`ROUTES`] (the `routes!` table below): that table is what
//! is served, and `tests/admin_api.rs` checks it against the OpenAPI document the listener
//! publishes at `/admin/openapi.json`, then walks that document to check that every route but
//! the public ones refuses a call without the token. The token is checked in one place, the
//! [`authorize`] middleware, before any handler runs: from `Authorization: Bearer <token>`, or
//! from the console's cookie (set by its login form). With tokens configured, each has an id
//! (`admin_token`'s is `admin`, `[node.admin_tokens]` names the others): the audit of a re-send
//! names it, with the caller's address.
//!
//! Errors are JSON everywhere but in the console's pages, in one shape: `{"error": "…"}`.

pub mod console;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::codec::types::{FiscalCode, NoticeNumber};
use crate::config::NodeSection;
use crate::engine::{NoticeKey, RecipientStatus};
use crate::fault::NodeFault;
use crate::journal::story::row_json;
use crate::journal::{Cursor, JournalQuery, parse_time};
use crate::node::Node;

/// The OpenAPI document of this listener.
pub const OPENAPI: &str = include_str!("admin/openapi.json");

/// Whether a route needs the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, the console's login form and its style sheet and script.
    Public,
    /// Only with an admin token (when the node has any).
    Token,
}

/// One route of the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// The path, with `{name}` for a path parameter (the OpenAPI and actix syntax alike).
    pub path: &'static str,
    pub access: Access,
}

impl Route {
    /// Whether `path` is an instance of this route's path.
    fn matches_path(&self, path: &str) -> bool {
        let mut want = self.path.split('/');
        let mut have = path.split('/');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w.starts_with('{') => {
                    if h.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(h)) if w == h => {}
                _ => return false,
            }
        }
    }
}

/// Declares the routes: [`ROUTES`] and the function that serves them, from one table.
macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $access:ident; )+) => {
        /// Every route the admin listener serves.
        pub const ROUTES: &[Route] = &[
            $( Route { method: stringify!($method), path: $path, access: Access::$access }, )+
        ];

        fn serve_routes(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::method(Method::$method).to($handler)); )+
        }
    };
}

routes! {
    GET "/health" => crate::http::health, Public;
    GET "/metrics" => metrics, Token;
    GET "/admin/openapi.json" => openapi, Token;
    GET "/admin/journal" => journal, Token;
    GET "/admin/payments/{fiscal_code}/{notice_number}" => payment, Token;
    GET "/admin/recipients" => recipients, Token;
    POST "/admin/receipts/{receipt_id}/resend" => resend, Token;
    GET "/admin/service-levels" => service_levels, Token;
    // Both spellings the official BDD suite's harness calls.
    GET "/monitoring/v1/jobs/trigger/{job}" => trigger_job, Token;
    GET "/jobs/trigger/{job}" => trigger_job, Token;
    GET "/admin/config" => get_config, Token;
    POST "/admin/config" => post_config, Token;
    PATCH "/admin/config" => patch_config, Token;
    // Both spellings, as for the job triggers.
    GET "/monitoring/v1/config/refresh/{what}" => refresh_config, Token;
    GET "/config/refresh/{what}" => refresh_config, Token;
    GET "/console/" => console::home, Token;
    GET "/console/live" => console::live, Token;
    GET "/console/journal" => console::journal, Token;
    GET "/console/payments/{fiscal_code}/{notice_number}" => console::payment, Token;
    GET "/console/receipts" => console::receipts, Token;
    POST "/console/receipts/{receipt_id}/resend" => console::resend, Token;
    GET "/console/login" => console::login_form, Public;
    POST "/console/login" => console::login, Public;
    POST "/console/logout" => console::logout, Token;
    GET "/console/assets/console.css" => console::css, Public;
    GET "/console/assets/console.js" => console::js, Public;
}

/// The admin routes, the token check in front of them, and JSON errors for requests that reach
/// no route or carry unreadable parameters.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| bad_request_error(format!("bad query parameters: {e}"))),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| bad_request_error(format!("bad path parameters: {e}"))),
    )
    .app_data(
        web::FormConfig::default()
            .error_handler(|e, _| bad_request_error(format!("bad form: {e}"))),
    )
    // A whole configuration (`POST /admin/config`) may list thousands of parties.
    .app_data(web::PayloadConfig::new(CONFIG_BODY_LIMIT));
    serve_routes(cfg);
    cfg.default_service(web::to(no_route));
}

/// The token check: every request to a route that is not [`Access::Public`] (and to no route
/// at all) passes here first. A caller the node recognises goes on with its [`Operator`] in the
/// request's extensions; any other is refused (a console page sends it to the login form).
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let public = ROUTES.iter().any(|r| {
        r.access == Access::Public
            && r.method == req.method().as_str()
            && r.matches_path(req.path())
    });
    if public {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let Some(node) = req.app_data::<web::Data<Arc<Node>>>().cloned() else {
        let refused = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "admin listener without a node",
        );
        return Ok(req.into_response(refused).map_into_right_body());
    };
    match identify(req.request(), &node.registry().config().node) {
        Ok(operator) => {
            req.extensions_mut().insert(operator);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => {
            tracing::info!(
                target: "pagonode::audit",
                address = %peer(req.request()),
                method = %req.method(),
                path = req.path(),
                reason = refusal.why(),
                "admin call refused"
            );
            let response = refusal.response(req.request());
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Who made an admin call: the id of the token it carried and the address it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's id; `-` when the node has no admin token.
    pub token_id: String,
    pub address: String,
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "token {} from {}", self.token_id, self.address)
    }
}

/// The id of `admin_token`, in the audit.
pub const DEFAULT_TOKEN_ID: &str = "admin";

/// The configured admin tokens, with their ids.
pub fn tokens(node: &NodeSection) -> impl Iterator<Item = (&str, &str)> {
    node.admin_token
        .iter()
        .map(|t| (DEFAULT_TOKEN_ID, t.as_str()))
        .chain(
            node.admin_tokens
                .iter()
                .map(|(id, t)| (id.as_str(), t.as_str())),
        )
}

/// The id of the token `given` is, compared in constant time with each.
fn token_id<'a>(node: &'a NodeSection, given: &[u8]) -> Option<&'a str> {
    let mut found = None;
    for (id, token) in tokens(node) {
        if bool::from(given.ct_eq(token.as_bytes())) {
            found = Some(id);
        }
    }
    found
}

/// The console's cookie: the token, hex-encoded (any byte can then travel in a cookie).
pub const COOKIE: &str = "pagonode_admin";

/// The value of the cookie `name`, if the request carries it.
fn cookie<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn peer(req: &HttpRequest) -> String {
    req.peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// Why a call was refused.
enum Refusal {
    /// No token, or not one of the node's.
    NoToken,
    /// The console's cookie on a form posted from another site.
    ForeignOrigin,
}

impl Refusal {
    fn why(&self) -> &'static str {
        match self {
            Refusal::NoToken => "no valid admin token",
            Refusal::ForeignOrigin => "console form posted from another origin",
        }
    }

    fn response(&self, req: &HttpRequest) -> HttpResponse {
        let console = req.path().starts_with("/console");
        match self {
            Refusal::NoToken if console && req.method() == Method::GET => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/console/login"))
                .finish(),
            Refusal::NoToken if console => console::refused(StatusCode::UNAUTHORIZED, self.why()),
            Refusal::NoToken => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "admin token required: Authorization: Bearer <token>",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
            Refusal::ForeignOrigin => console::refused(StatusCode::FORBIDDEN, self.why()),
        }
    }
}

/// The operator making `req`, if the node recognises one.
fn identify(req: &HttpRequest, node: &NodeSection) -> Result<Operator, Refusal> {
    let address = peer(req);
    if tokens(node).next().is_none() {
        return Ok(Operator {
            token_id: "-".into(),
            address,
        });
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(id) = bearer.and_then(|b| token_id(node, b.as_bytes())) {
        return Ok(Operator {
            token_id: id.into(),
            address,
        });
    }
    let cookie = cookie(req, COOKIE).and_then(console::hex_decode);
    let Some(id) = cookie.and_then(|c| token_id(node, &c)) else {
        return Err(Refusal::NoToken);
    };
    // The cookie is SameSite=Strict; a form posted from another origin is refused besides.
    if req.method() != Method::GET && !same_origin(req) {
        return Err(Refusal::ForeignOrigin);
    }
    Ok(Operator {
        token_id: id.into(),
        address,
    })
}

/// Whether a request's `Origin` (when it has one) is the listener it was sent to.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let info = req.connection_info();
    origin.to_str().ok() == Some(&format!("{}://{}", info.scheme(), info.host()))
}

/// The one error shape of the admin API.
pub fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

fn bad_request_error(message: String) -> actix_web::Error {
    actix_web::error::InternalError::from_response(
        message.clone(),
        error(StatusCode::BAD_REQUEST, message),
    )
    .into()
}

/// A request no route serves: 405 if the path is a route's, with another method; else 404.
async fn no_route(req: HttpRequest) -> HttpResponse {
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.matches_path(req.path()))
        .map(|r| r.method)
        .collect();
    let (status, message) = if methods.is_empty() {
        (
            StatusCode::NOT_FOUND,
            format!("no such route: {}", req.path()),
        )
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not allowed on {}: use {}",
                req.method(),
                req.path(),
                methods.join(" or ")
            ),
        )
    };
    if req.path().starts_with("/console") {
        console::refused(status, &message)
    } else {
        error(status, message)
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(node: web::Data<Arc<Node>>) -> HttpResponse {
    match node.render_metrics().await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Query parameters of `GET /admin/journal` (and of the console's journal search, whose form
/// sends empty fields: an empty value is no filter).
#[derive(Debug, Default, Clone, Deserialize)]
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
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl JournalParams {
    pub fn to_query(&self) -> Result<JournalQuery, String> {
        let time = |v: &Option<String>| given(v).as_deref().map(parse_time).transpose();
        Ok(JournalQuery {
            notice_number: given(&self.notice),
            fiscal_code: given(&self.ec),
            token: given(&self.token),
            psp: given(&self.psp),
            primitive: given(&self.primitive),
            outcome: given(&self.outcome),
            from: time(&self.from)?,
            to: time(&self.to)?,
            after: given(&self.after)
                .map(|a| a.parse::<Cursor>())
                .transpose()?,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

/// `GET /admin/journal`: one page of rows, in time order; `next_after` continues it.
async fn journal(params: web::Query<JournalParams>, node: web::Data<Arc<Node>>) -> HttpResponse {
    let q = match params.to_query() {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match node.journal_page(&q).await {
        Ok(rows) => {
            let next = (rows.len() == q.limit)
                .then(|| rows.last().map(|r| Cursor::of(r).to_string()))
                .flatten();
            HttpResponse::Ok().json(json!({
                "entries": rows.iter().map(row_json).collect::<Vec<_>>(),
                "next_after": next,
            }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A notice from the path, or the answer refusing it.
pub fn notice_key(fc: String, nn: String) -> Result<NoticeKey, String> {
    Ok(NoticeKey {
        fiscal_code: FiscalCode::new(fc)?,
        notice_number: NoticeNumber::new(nn)?,
    })
}

async fn payment(path: web::Path<(String, String)>, node: web::Data<Arc<Node>>) -> HttpResponse {
    let (fc, nn) = path.into_inner();
    let key = match notice_key(fc, nn) {
        Ok(key) => key,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match node.notice_story(&key).await {
        Ok(story) => HttpResponse::Ok().json(story),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientParams {
    status: Option<String>,
    limit: Option<usize>,
}

/// A `status` parameter: PENDING, NOTIFIED or FAILED (any case); anything else is refused.
pub fn recipient_status(s: Option<&str>) -> Result<RecipientStatus, String> {
    let s = s.unwrap_or("FAILED");
    RecipientStatus::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("status '{s}' is not one of PENDING, NOTIFIED, FAILED"))
}

async fn recipients(
    params: web::Query<RecipientParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let status = match recipient_status(params.status.as_deref()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match node
        .recipients_by_status(status, params.limit.unwrap_or(100).clamp(1, 1000))
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendParams {
    station: Option<String>,
}

/// Queues a receipt's copies again for `operator`, and audits it: a log line here, and the
/// journal rows of the re-sent copies (committed with them) name the operator.
pub async fn resend_as(
    node: &Node,
    operator: &Operator,
    receipt_id: &str,
    station: Option<&str>,
) -> Result<usize, NodeFault> {
    let result = node
        .resend(receipt_id, station, &operator.to_string())
        .await;
    tracing::info!(
        target: "pagonode::audit",
        token = %operator.token_id,
        address = %operator.address,
        receipt = receipt_id,
        station = station.unwrap_or("(all)"),
        copies = result.as_ref().ok(),
        error = result.as_ref().err().map(|e| e.to_string()),
        "admin: receipt re-send"
    );
    result
}

/// The status for a failed re-send: an unknown receipt or station is 404.
pub fn resend_status(f: &NodeFault) -> StatusCode {
    match f {
        NodeFault::Semantica(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn resend(
    path: web::Path<String>,
    params: web::Query<ResendParams>,
    operator: web::ReqData<Operator>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let id = path.into_inner();
    match resend_as(&node, &operator, &id, params.station.as_deref()).await {
        Ok(n) => HttpResponse::Accepted().json(json!({ "queued": n })),
        Err(e) => error(resend_status(&e), e.to_string()),
    }
}

/// `GET /admin/service-levels`: the live service levels (the console's view, as JSON).
async fn service_levels(node: web::Data<Arc<Node>>) -> HttpResponse {
    let levels = node.metrics().service_levels(node.now());
    let list = |l: &[crate::metrics::Level], key: &str| {
        l.iter()
            .map(|l| {
                json!({
                    key: l.name,
                    "answers": l.answers,
                    "within2s": l.within,
                    "ratio": l.within as f64 / l.answers.max(1) as f64,
                    "met": l.met(),
                })
            })
            .collect::<Vec<_>>()
    };
    HttpResponse::Ok().json(json!({
        "windowSeconds": crate::metrics::SLA_WINDOW_MS / 1000,
        "target": crate::metrics::SLA_TARGET_PERCENT as f64 / 100.0,
        "stations": list(&levels.stations, "station"),
        "psps": list(&levels.psps, "psp"),
    }))
}

/// The largest configuration document `POST`/`PATCH /admin/config` read.
const CONFIG_BODY_LIMIT: usize = 16 << 20;

/// `GET /admin/config`: the running configuration as TOML (canonical, secrets redacted), its
/// version in a leading comment and in `X-Config-Version`.
async fn get_config(node: web::Data<Arc<Node>>) -> HttpResponse {
    let active = node.active_version();
    let text = crate::reconfig::redacted(node.registry().config());
    let at = crate::journal::story::timestamp(active.applied_at);
    HttpResponse::Ok()
        .content_type("application/toml; charset=utf-8")
        .insert_header(("X-Config-Version", active.version.to_string()))
        .body(format!(
            "# configuration version {}, applied by {} at {at}\n{text}",
            active.version, active.applied_by
        ))
}

/// The answer to a configuration applied, or refused (400 naming the key, and the line for a
/// document that does not parse; 409 when the node has no file to read; 500 when the store
/// failed: in every case nothing changed).
fn applied_answer(
    result: Result<crate::node::Applied, crate::node::ApplyError>,
    operator: &Operator,
    how: &str,
) -> HttpResponse {
    use crate::node::ApplyError;
    tracing::info!(
        target: "pagonode::audit",
        token = %operator.token_id,
        address = %operator.address,
        version = result.as_ref().ok().map(|a| a.version),
        changed = result.as_ref().ok().map(|a| !a.diff.is_empty()),
        error = result.as_ref().err().map(|e| e.to_string()),
        "admin: configuration {how}"
    );
    match result {
        Ok(a) => HttpResponse::Ok().json(json!({
            "version": a.version,
            "changed": !a.diff.is_empty(),
            "diff": a.diff.lines().collect::<Vec<_>>(),
        })),
        Err(ApplyError::Config(e)) => config_refused(&e),
        Err(e @ ApplyError::Patch(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ ApplyError::NoFile) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ ApplyError::Store(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// 400 for a configuration refused, naming its key.
fn config_refused(e: &crate::config::ConfigError) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": e.to_string(), "key": e.key }))
}

/// `POST /admin/config`: a whole TOML document, checked as at start, applied as a new version.
async fn post_config(
    body: web::Bytes,
    operator: web::ReqData<Operator>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the configuration is not UTF-8");
    };
    let running = node.registry();
    // Lines are the document's own unless it carried redacted secrets (then rewritten).
    let restored = crate::reconfig::restore_secrets(text, running.config());
    let result = match crate::config::Config::from_toml_str(restored.as_deref().unwrap_or(text)) {
        Ok(config) => {
            node.apply_config(config, &operator.token_id, crate::node::Origin::Admin)
                .await
        }
        Err(e) => Err(e.into()),
    };
    // Errors name the line of the document sent (also a key read at start only, and in a
    // document whose redacted secrets were filled in above).
    let result = result.map_err(|e| match e {
        crate::node::ApplyError::Config(c) => c.located_in(text).into(),
        other => other,
    });
    applied_answer(result, &operator, "document")
}

/// `PATCH /admin/config`: a JSON merge patch (RFC 7386) of the running configuration, entities
/// addressed by id (see [`crate::reconfig`]), applied as a new version.
async fn patch_config(
    body: web::Bytes,
    operator: web::ReqData<Operator>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not JSON: {e}")),
    };
    let result = node.patch_config(&patch, &operator.token_id).await;
    applied_answer(result, &operator, "patch")
}

/// What `/config/refresh/{what}` accepts: the official node's cache names (this node has one
/// configuration: each refreshes it whole).
const REFRESHABLE: &[&str] = &["CONFIG", "ALL", "PA", "PSP"];

/// `GET /config/refresh/{CONFIG|ALL|PA|PSP}`: reads the configuration file again (a node
/// started without one adopts the last stored version), in the official `ActionResponse`.
async fn refresh_config(
    path: web::Path<String>,
    operator: web::ReqData<Operator>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let what = path.into_inner();
    let action = format!("Refresh configuration {what}");
    if !REFRESHABLE.contains(&what.as_str()) {
        let why = format!(
            "unknown configuration '{what}': one of {}",
            REFRESHABLE.join(", ")
        );
        return action_answer(StatusCode::NOT_FOUND, &action, &why);
    }
    let result = match node.reload_file(&operator.token_id).await {
        Err(crate::node::ApplyError::NoFile) => node.adopt_stored().await.map(|_| ()),
        other => other.map(drop),
    };
    tracing::info!(
        target: "pagonode::audit",
        token = %operator.token_id,
        address = %operator.address,
        error = result.as_ref().err().map(|e| e.to_string()),
        "admin: configuration refresh"
    );
    let version = node.active_version().version;
    match result {
        Ok(()) => action_answer(
            StatusCode::OK,
            &action,
            &format!("configuration version {version} in force"),
        ),
        Err(crate::node::ApplyError::Config(e)) => {
            action_answer(StatusCode::BAD_REQUEST, &action, &e.to_string())
        }
        Err(e) => action_answer(StatusCode::INTERNAL_SERVER_ERROR, &action, &e.to_string()),
    }
}

/// The official node's answer to a job trigger (`ActionResponse`: `success`, `action`,
/// `description`), as its monitoring API's `jobs/trigger/{job}` route writes it: `text/plain`,
/// HTTP 200 when the job ran, 500 when it failed (the official node framework's
/// `NodoRoute.jobTrigger` and `PollerActor`, published in `pagopa/pagopa-fdr-nodo-dei-pagamenti`).
/// (The one admin answer not in the `{"error": …}` shape: the official suite reads this one.)
fn job_answer(status: StatusCode, job: &str, description: &str) -> HttpResponse {
    action_answer(status, &format!("Trigger job {job}"), description)
}

/// An `ActionResponse` (see [`job_answer`]).
fn action_answer(status: StatusCode, action: &str, description: &str) -> HttpResponse {
    let body = json!({
        "success": status.is_success(),
        "action": action,
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
async fn trigger_job(path: web::Path<String>, node: web::Data<Arc<Node>>) -> HttpResponse {
    let job = path.into_inner();
    match job.as_str() {
        "mod3CancelV2" => {
            node.cancellation_job().await;
            job_answer(StatusCode::OK, &job, "Job triggered")
        }
        "paSendRt" => match node.retry_receipts_now().await {
            Ok(_) => job_answer(StatusCode::OK, &job, "Job triggered"),
            Err(e) => job_answer(StatusCode::INTERNAL_SERVER_ERROR, &job, &e.to_string()),
        },
        _ => job_answer(
            StatusCode::NOT_FOUND,
            &job,
            &format!("job {job} not found: this node runs mod3CancelV2 and paSendRt"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_path_matches_its_instances_only() {
        let r = Route {
            method: "GET",
            path: "/admin/payments/{fiscal_code}/{notice_number}",
            access: Access::Token,
        };
        assert!(r.matches_path("/admin/payments/77777777777/302000100000009424"));
        assert!(!r.matches_path("/admin/payments/77777777777"));
        assert!(!r.matches_path("/admin/payments/77777777777//"));
        assert!(!r.matches_path("/admin/payments/77777777777/3/x"));
    }

    #[test]
    fn a_cursor_reads_back_what_it_writes() {
        let c = Cursor {
            at: 1_733_000_000_123,
            id: 42,
        };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!("42".parse::<Cursor>().is_err());
    }
}

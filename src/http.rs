//! The HTTP layer (actix-web): nodeForPsp on any POST path, the WSDL (the operations the node
//! answers, at the address it was asked on) and the XSDs at `?wsdl`, a health endpoint; the
//! admin listener (journal, payments, receipt re-send, job triggers) is separate and off unless
//! configured.

use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::front::Peer;
use crate::front::certs::PeerCertificate;
use crate::front::refusals::Reason;
use crate::logging::RequestId;
use crate::node::{Node, SoapReply};

/// The contract files the node serves as they are (the project's own, see `wsdl/README.md`),
/// by the path the WSDL's `schemaLocation`s use. The nodeForPsp WSDL is served reduced to the
/// operations the node answers ([`crate::wsdl`]).
pub const CONTRACT_FILES: &[(&str, &str)] = &[
    ("paForNode.wsdl", include_str!("../wsdl/paForNode.wsdl")),
    (
        "xsd/nodeForPsp.xsd",
        include_str!("../wsdl/xsd/nodeForPsp.xsd"),
    ),
    (
        "xsd/paForNode.xsd",
        include_str!("../wsdl/xsd/paForNode.xsd"),
    ),
    (
        "xsd/common-types.xsd",
        include_str!("../wsdl/xsd/common-types.xsd"),
    ),
    (
        "xsd/nodoPerPsp.xsd",
        include_str!("../wsdl/xsd/nodoPerPsp.xsd"),
    ),
    (
        "xsd/soap-envelope.xsd",
        include_str!("../wsdl/xsd/soap-envelope.xsd"),
    ),
    (
        "catalogo/CatalogoServizi_2_0_0.xsd",
        include_str!("../wsdl/catalogo/CatalogoServizi_2_0_0.xsd"),
    ),
    (
        "catalogo/TassaAutomobilistica_1_1_0.xsd",
        include_str!("../wsdl/catalogo/TassaAutomobilistica_1_1_0.xsd"),
    ),
    (
        "catalogo/A001_Passaporto_1_0_0.xsd",
        include_str!("../wsdl/catalogo/A001_Passaporto_1_0_0.xsd"),
    ),
    (
        "catalogo/D847_Pesca_1_0_0.xsd",
        include_str!("../wsdl/catalogo/D847_Pesca_1_0_0.xsd"),
    ),
];

fn xml(status: u16, body: String) -> HttpResponse {
    xml_response(status).body(body)
}

fn xml_response(status: u16) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK),
    );
    response.insert_header(("Content-Type", "text/xml; charset=utf-8"));
    response
}

/// The node's answer, as HTTP: SOAP, or the front door's JSON (401, 408, 429) as an API
/// gateway writes it. A 408 closes the connection.
fn answer(reply: SoapReply) -> HttpResponse {
    if !reply.json {
        return xml(reply.status, reply.body);
    }
    let mut res = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(reply.status)
            .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED),
    );
    if let Some(secs) = reply.retry_after_s {
        res.insert_header(("Retry-After", secs.to_string()));
    }
    if reply.status == 408 {
        res.force_close();
    }
    res.content_type(ContentType::json()).body(reply.body)
}

/// nodeForPsp. The work runs in the request's span (its id on every line), and the answer
/// names the id.
async fn soap(req: HttpRequest, payload: web::Payload, node: web::Data<Arc<Node>>) -> HttpResponse {
    let id = RequestId::new();
    let started = std::time::Instant::now();
    let span = id.span();
    let reply = read_and_handle(&req, payload, &node)
        .instrument(span.clone())
        .await;
    node.metrics().psp_request(
        reply.operation,
        reply.fault,
        reply.status != 200,
        started.elapsed(),
    );
    span.in_scope(|| {
        tracing::debug!(
            operation = reply.operation.map_or("unknown", |op| op.soap_action()),
            status = reply.status,
            micros = started.elapsed().as_micros() as u64,
            "nodeForPsp request answered"
        );
    });
    let mut response = answer(reply);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    response
}

/// Before the body is read: the address's rate (HTTP 429) and the subscription key (HTTP 401),
/// as the official API gateway checks them. Then the body, up to the configured size (an
/// oversize body is answered with PPT_SINTASSI_EXTRAXSD in the operation's response, like any
/// unreadable request) and within the body timeout (else HTTP 408 and the connection closed).
async fn read_and_handle(req: &HttpRequest, mut payload: web::Payload, node: &Node) -> SoapReply {
    let front = node.front();
    let action = req
        .headers()
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok());
    let query = (!req.query_string().is_empty()).then(|| req.query_string());
    let mut peer = Peer {
        addr: req.peer_addr().map(|a| a.ip()),
        certificate: req.conn_data::<PeerCertificate>().cloned(),
        key_broker: None,
    };
    // Only what the headers say names the operation here: nothing of the body is read yet.
    let refused = |reason: Reason, code: &str, peer: &Peer| {
        let op = crate::codec::detect_operation(action, query, b"");
        node.tell_refusal(op, reason, code, None, peer);
    };
    if let Some(ip) = peer.addr
        && let Err(wait) = front.rates.check_address(ip)
    {
        refused(Reason::AddressRate, "HTTP_429", &peer);
        let op = crate::codec::detect_operation(action, query, b"");
        return node.over_rate(op, wait);
    }
    let keys = front.keys();
    let key = req.headers().get(keys.header()).map(|v| v.as_bytes());
    match keys.check(key, req.query_string()) {
        Ok(broker) => peer.key_broker = broker.map(str::to_string),
        Err(refusal) => {
            refused(Reason::SubscriptionKey, "HTTP_401", &peer);
            return SoapReply::unauthorized(refusal);
        }
    }
    let limit = node.registry().config().node.max_body_bytes;
    let read = tokio::time::timeout(front.body_timeout, async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            match chunk {
                Ok(c) if body.len() + c.len() <= limit => body.extend_from_slice(&c),
                Ok(c) => {
                    // Keep what identifies the operation, drop the rest.
                    let room = limit.saturating_sub(body.len());
                    body.extend_from_slice(&c[..room.min(c.len())]);
                    return (body, true);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "request body unreadable");
                    return (body, true);
                }
            }
        }
        (body, false)
    })
    .await;
    let Ok((body, too_big)) = read else {
        refused(Reason::BodyTimeout, "HTTP_408", &peer);
        return SoapReply::body_timeout();
    };
    node.handle_request(&peer, action, query, &body, too_big)
        .await
}

/// `GET …?wsdl` (and the XSDs the WSDL imports, by relative path).
async fn contract(req: HttpRequest, node: web::Data<Arc<Node>>) -> HttpResponse {
    let path = req.path();
    let query = req.query_string();
    if query.eq_ignore_ascii_case("wsdl") || query.to_ascii_lowercase().starts_with("wsdl") {
        if path.contains("pa-for-node") || path.contains("paForNode") {
            return contract_file("paForNode.wsdl");
        }
        return served_wsdl(&req, &node, path);
    }
    if path.ends_with("nodeForPsp.wsdl") {
        return served_wsdl(&req, &node, "/node-for-psp/v1");
    }
    if let Some(name) = query.strip_prefix("xsd=") {
        return contract_file(name);
    }
    if let Some((name, _)) = CONTRACT_FILES.iter().find(|(name, _)| path.ends_with(name)) {
        return contract_file(name);
    }
    if path.ends_with("/health") || path == "/health" {
        return health(node).await;
    }
    HttpResponse::NotFound()
        .content_type(ContentType::plaintext())
        .body("not found: POST SOAP requests here, or GET ?wsdl\n")
}

/// The nodeForPsp WSDL, its address `node.public_url` or `endpoint` on the host and scheme the
/// request came by.
fn served_wsdl(req: &HttpRequest, node: &Node, endpoint: &str) -> HttpResponse {
    let address = match &node.registry().config().node.public_url {
        Some(url) => url.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}{endpoint}", info.scheme(), info.host())
        }
    };
    xml(200, crate::wsdl::served_node_for_psp(&address))
}

fn contract_file(name: &str) -> HttpResponse {
    match CONTRACT_FILES.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => xml(200, body.to_string()),
        None => HttpResponse::NotFound()
            .content_type(ContentType::plaintext())
            .body(format!("no contract file {name}\n")),
    }
}

/// Liveness and a few numbers: 200 when the store answers and no commit or read failed
/// recently ([`crate::node::STORE_FAILURE_WINDOW`]), 503 otherwise.
pub async fn health(node: web::Data<Arc<Node>>) -> HttpResponse {
    let h = node.health().await;
    let (notices, payments, activating, receipts) = h.engine;
    // The store's error text (SQL, paths) goes to the log, not to whoever asks.
    if let Err(e) = &h.store {
        tracing::warn!(error = %e, "health: store down");
    }
    let body = serde_json::json!({
        "status": if h.store.is_ok() { "UP" } else { "DOWN" },
        "store": {
            "status": if h.store.is_ok() { "ok" } else { "failing" },
            "transactions": h.store_stats.transactions,
            "commit_jobs": h.store_stats.commit_jobs,
        },
        "engine": {
            "notices": notices,
            "payments": payments,
            "activations_in_flight": activating,
            "receipts_in_delivery": receipts,
            "deadlines_pending": h.deadlines,
        },
        "front": node.front().stats(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if h.store.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The nodeForPsp routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .default_service(web::route().to(dispatch));
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    if req.method() == actix_web::http::Method::POST {
        soap(req, payload, node).await
    } else if req.method() == actix_web::http::Method::GET {
        contract(req, node).await
    } else {
        HttpResponse::MethodNotAllowed()
            .content_type(ContentType::plaintext())
            .body("use POST for SOAP, GET ?wsdl for the contract\n")
    }
}

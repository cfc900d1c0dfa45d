//! The operator console at `/console/`: server-rendered pages (maud) on the admin listener,
//! behind the same token as the admin API. A browser logs in with a form that puts the token in
//! an HttpOnly, SameSite=Strict cookie (Secure when the listener has TLS); the one script
//! (`console.js`, a few lines, no build) refreshes the live service-level view.
//!
//! Pages: the live view (service levels per station and per PSP, deadlines, receipts in
//! delivery), the journal search, a payment's story (its attempts classified
//! POSITIVE/NEGATIVE/TO_VERIFY, its receipt copies, every exchange with its XML
//! pretty-printed and passwords masked), and the FAILED receipt copies with a re-send button.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::{COOKIE, JournalParams, Operator, notice_key, resend_as, token_id};
use crate::engine::RecipientStatus;
use crate::journal::story::timestamp;
use crate::journal::{Cursor, JournalRow};
use crate::metrics::{Level, SLA_TARGET_PERCENT, SLA_WINDOW_MS};
use crate::node::Node;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// A page of the console.
fn page(title: &str, body: Markup) -> HttpResponse {
    page_with(StatusCode::OK, title, true, body)
}

fn page_with(status: StatusCode, title: &str, nav: bool, body: Markup) -> HttpResponse {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "pagonode · " (title) }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                @if nav {
                    header {
                        nav {
                            a.brand href="/console/" { "pagonode" }
                            a href="/console/" { "Service levels" }
                            a href="/console/journal" { "Journal" }
                            a href="/console/receipts" { "Failed receipts" }
                            form.logout method="post" action="/console/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html.into_string())
}

/// A console page saying why a request was refused.
pub fn refused(status: StatusCode, why: &str) -> HttpResponse {
    page_with(
        status,
        status.canonical_reason().unwrap_or("Refused"),
        false,
        html! {
            p.error { (why) }
            p { a href="/console/" { "Back to the console" } }
        },
    )
}

fn failed(why: impl std::fmt::Display) -> HttpResponse {
    refused(StatusCode::INTERNAL_SERVER_ERROR, &why.to_string())
}

pub async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(CSS)
}

pub async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(JS)
}

/// Hex, as the cookie carries the token.
fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string; `None` if it is not one.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether the console is served over TLS (its cookie is then `Secure`).
fn secure(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn login_page(status: StatusCode, error: Option<&str>) -> HttpResponse {
    page_with(
        status,
        "Log in",
        false,
        html! {
            @if let Some(e) = error { p.error { (e) } }
            form.login method="post" action="/console/login" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" autofocus;
                button #login type="submit" { "Log in" }
            }
            p.hint {
                "The token is the node's " code { "node.admin_token" } " (or one of "
                code { "[node.admin_tokens]" } "). It is kept in a cookie of this browser until you log out."
            }
        },
    )
}

/// `GET /console/login`.
pub async fn login_form(node: web::Data<Arc<Node>>) -> HttpResponse {
    if super::tokens(&node.registry().config().node)
        .next()
        .is_none()
    {
        return see_other("/console/");
    }
    login_page(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /console/login`: a valid token goes into the cookie.
pub async fn login(
    req: HttpRequest,
    form: web::Form<Login>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let registry = node.registry();
    let node_cfg = &registry.config().node;
    let Some(id) = token_id(node_cfg, form.token.as_bytes()) else {
        tracing::info!(target: "pagonode::audit", address = %super::peer(&req), "console login refused");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not an admin token of this node."),
        );
    };
    tracing::info!(target: "pagonode::audit", token = id, address = %super::peer(&req), "console login");
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        hex_encode(form.token.as_bytes()),
        if secure(&req) { "; Secure" } else { "" }
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/"))
        .insert_header((header::SET_COOKIE, cookie))
        .finish()
}

/// `POST /console/logout`.
pub async fn logout() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/login"))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish()
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// `GET /console/`: the live view, refreshed by the script from `/console/live`.
pub async fn home(node: web::Data<Arc<Node>>) -> HttpResponse {
    page(
        "Service levels",
        html! {
            form.search method="get" action="/console/journal" {
                input type="search" name="notice" placeholder="Notice number (18 digits)" size="24";
                button type="submit" { "Find" }
            }
            div #live data-refresh="/console/live" data-every="2000" { (live_view(&node).await) }
        },
    )
}

/// `GET /console/live`: the live view alone.
pub async fn live(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(live_view(&node).await.into_string())
}

fn level_rows(levels: &[Level], empty: &str) -> Markup {
    html! {
        @if levels.is_empty() {
            tr { td colspan="4" .muted { (empty) } }
        }
        @for l in levels {
            tr.(if l.met() { "met" } else { "missed" }) {
                td { (l.name) }
                td.num { (l.answers) }
                td.num { (l.within) }
                td.num { (format!("{:.1}%", l.percent())) }
            }
        }
    }
}

async fn live_view(node: &Node) -> Markup {
    let now = node.now();
    let levels = node.metrics().service_levels(now);
    let health = node.health().await;
    let (_, payments, activating, _) = health.engine;
    let failed = node
        .failed_recipients()
        .await
        .map_or_else(|e| e.to_string(), |n| n.to_string());
    let window = SLA_WINDOW_MS / 60_000;
    let config = node.active_version();
    html! {
        p.muted { "Last " (window) " minutes, updated " time { (timestamp(now)) } ". Service level: "
            (SLA_TARGET_PERCENT) "% within 2 s." }
        div.cards {
            div.card { span.big #failed-copies { (failed) } span { a href="/console/receipts" { "FAILED receipt copies" } } }
            div.card { span.big { (health.deadlines) } span { "payments waiting for their outcome" } }
            div.card { span.big { (payments) } span { "payments in memory" } }
            div.card { span.big { (activating) } span { "activations waiting for their station" } }
            div.card { span.big { (if health.store.is_ok() { "UP" } else { "DOWN" }) } span { "store" } }
            div.card #config-version { span.big { "v" (config.version) } span { "configuration, applied by "
                (config.applied_by) " at " time { (timestamp(config.applied_at)) } } }
        }
        h2 { "EC stations: answers within 2 s" }
        table #stations {
            thead { tr { th { "Station" } th { "Answers" } th { "Within 2 s" } th { "Share" } } }
            tbody { (level_rows(&levels.stations, "No station was called in the window.")) }
        }
        h2 { "PSPs: spontaneous payments' outcomes within 2 s of the activation" }
        table #psps {
            thead { tr { th { "PSP" } th { "Outcomes" } th { "Within 2 s" } th { "Share" } } }
            tbody { (level_rows(&levels.psps, "No spontaneous payment's outcome in the window.")) }
        }
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// `GET /console/journal`: the search form and one page of matching rows, in time order.
pub async fn journal(
    req: HttpRequest,
    params: web::Query<JournalParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let p = params.into_inner();
    let form = html! {
        form.filters method="get" action="/console/journal" {
            label { "Notice" input name="notice" value=(opt(&p.notice)) size="20"; }
            label { "EC" input name="ec" value=(opt(&p.ec)) size="12"; }
            label { "Token" input name="token" value=(opt(&p.token)) size="34"; }
            label { "PSP" input name="psp" value=(opt(&p.psp)) size="12"; }
            label { "Outcome" input name="outcome" value=(opt(&p.outcome)) placeholder="OK, KO, PPT_…" size="16"; }
            label { "From" input name="from" value=(opt(&p.from)) placeholder="2026-01-31T00:00:00Z" size="22"; }
            label { "To" input name="to" value=(opt(&p.to)) size="22"; }
            button #search type="submit" { "Search" }
        }
    };
    let q = match p.to_query() {
        Ok(q) => q,
        Err(e) => {
            return page_with(
                StatusCode::BAD_REQUEST,
                "Journal",
                true,
                html! { (form) p.error { (e) } },
            );
        }
    };
    let rows = match node.journal_page(&q).await {
        Ok(rows) => rows,
        Err(e) => return failed(e),
    };
    let next = (rows.len() == q.limit)
        .then(|| rows.last().map(Cursor::of))
        .flatten()
        .map(|c| {
            let mut query: Vec<(String, String)> =
                web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                    .map(|q| q.into_inner())
                    .unwrap_or_default();
            query.retain(|(k, _)| k != "after");
            query.push(("after".into(), c.to_string()));
            let encoded = query
                .iter()
                .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            format!("/console/journal?{encoded}")
        });
    page(
        "Journal",
        html! {
            (form)
            @if rows.is_empty() { p.muted { "No row matches." } }
            @else { (journal_table(&rows, false)) }
            @if let Some(next) = next { p { a #next href=(next) { "Next page" } } }
        },
    )
}

/// Percent-encodes a query component.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Rows as a table; `payloads`: each row's message under it, pretty-printed.
fn journal_table(rows: &[JournalRow], payloads: bool) -> Markup {
    html! {
        table.journal {
            thead { tr {
                th { "Time" } th { "Component" } th { "Event" } th { "" } th { "Notice" }
                th { "Token" } th { "PSP" } th { "Station" } th { "Outcome" }
            } }
            tbody {
                @for r in rows {
                    @let e = &r.entry;
                    tr.(outcome_class(e.outcome.as_deref())) {
                        td.time { (timestamp(e.at)) }
                        td { (e.component) }
                        td { (e.primitive) }
                        td { (e.subtype.map_or("", |s| s.as_str())) }
                        td {
                            @match (&e.fiscal_code, &e.notice_number) {
                                (Some(fc), Some(nn)) => a href=(format!("/console/payments/{fc}/{nn}")) { (nn) },
                                (None, Some(nn)) => a href=(format!("/console/journal?notice={nn}")) { (nn) },
                                _ => "",
                            }
                        }
                        td.token { (opt(&e.token)) }
                        td { (opt(&e.psp)) }
                        td { (opt(&e.station)) }
                        td.outcome { (opt(&e.outcome)) }
                    }
                    @if payloads && (e.payload.is_some() || e.detail.is_some()) {
                        tr.payload { td colspan="9" {
                            @if let Some(d) = &e.detail { p.detail { (d) } }
                            @if let Some(p) = &e.payload {
                                details {
                                    summary { (e.primitive) " " (e.subtype.map_or("", |s| s.as_str())) " message" }
                                    pre.xml { (pretty_xml(&crate::codec::mask::mask_unread(p))) }
                                }
                            }
                        } }
                    }
                }
            }
        }
    }
}

fn outcome_class(outcome: Option<&str>) -> &'static str {
    match outcome {
        Some("OK") => "ok",
        Some(o) if o == "KO" || o.starts_with("PPT_") || o.starts_with("PAA_") => "ko",
        _ => "",
    }
}

fn classification_badge(c: &str) -> Markup {
    let class = match c {
        "POSITIVE" => "positive",
        "NEGATIVE" => "negative",
        "TO_VERIFY" => "to-verify",
        _ => "in-progress",
    };
    html! { span.badge.(class) { (c) } }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// `GET /console/payments/{fiscal_code}/{notice_number}`: a payment's story.
pub async fn payment(
    path: web::Path<(String, String)>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let (fc, nn) = path.into_inner();
    let key = match notice_key(fc, nn) {
        Ok(k) => k,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let story = match node.notice_story(&key).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let rows = match node.notice_rows(&key).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let back = format!(
        "/console/payments/{}/{}",
        key.fiscal_code.as_str(),
        key.notice_number.as_str()
    );
    let attempts = story["attempts"].as_array().cloned().unwrap_or_default();
    let title = format!(
        "Notice {} of EC {}",
        key.notice_number.as_str(),
        key.fiscal_code.as_str()
    );
    page(
        &title,
        html! {
            p.muted { "IUV " (key.notice_number.iuv()) ". " (attempts.len()) " attempt(s) to pay it." }
            @if attempts.is_empty() { p { "The node knows nothing about this notice." } }
            @for (i, a) in attempts.iter().enumerate() {
                section.attempt {
                    h2 {
                        "#" (i + 1) " " (classification_badge(a["classification"].as_str().unwrap_or("")))
                        @if let Some(s) = a["status"].as_str() { " " span.status { (s) } }
                    }
                    dl {
                        dt { "Token" } dd.token { (text(&a["paymentToken"])) }
                        dt { "PSP" } dd { (text(&a["idPSP"])) " channel " (text(&a["idChannel"])) }
                        dt { "Station" } dd { (text(&a["station"])) }
                        dt { "Asked at" } dd { (text(&a["at"])) }
                        @if !a["amount"].is_null() { dt { "Amount" } dd { (text(&a["amount"])) " €" } }
                        @if !a["deadline"].is_null() { dt { "Deadline" } dd { (text(&a["deadline"])) } }
                        @if !a["outcome"].is_null() {
                            dt { "Outcome" } dd { (text(&a["outcome"]["outcome"])) " at " (text(&a["outcome"]["receivedAt"])) }
                        }
                        @if !a["refusedWith"].is_null() { dt { "Refused with" } dd { (text(&a["refusedWith"])) } }
                    }
                    @if let Some(recipients) = a["recipients"].as_array().filter(|r| !r.is_empty()) {
                        h3 { "Receipt copies" }
                        table.recipients {
                            thead { tr { th { "Station" } th { "EC" } th { "Status" } th { "Attempts" } th { "Last error" } th { "" } } }
                            tbody {
                                @for r in recipients {
                                    tr {
                                        td { (text(&r["station"])) }
                                        td { (text(&r["idPA"])) }
                                        td.status { (text(&r["status"])) }
                                        td.num { (text(&r["attempts"])) }
                                        td { (text(&r["lastError"])) }
                                        td {
                                            @if r["status"] == "FAILED" {
                                                (resend_form(&text(&a["paymentToken"]), &text(&r["station"]), &back))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Exchanges and state changes" }
            (journal_table(&rows, true))
        },
    )
}

fn resend_form(receipt_id: &str, station: &str, back: &str) -> Markup {
    html! {
        form.resend method="post" action=(format!("/console/receipts/{receipt_id}/resend")) {
            input type="hidden" name="station" value=(station);
            input type="hidden" name="back" value=(back);
            button.resend type="submit" data-receipt=(receipt_id) data-station=(station) { "Re-send" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ReceiptsParams {
    /// What the last re-send did (shown once, after the redirect).
    done: Option<String>,
}

/// `GET /console/receipts`: the FAILED receipt copies, each with a re-send button.
pub async fn receipts(
    params: web::Query<ReceiptsParams>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let list = match node
        .recipients_by_status(RecipientStatus::Failed, 1000)
        .await
    {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    page(
        "Failed receipt copies",
        html! {
            @if let Some(done) = &params.done { p.notice #done { (done) } }
            p.muted { "Copies whose delivery attempts ran out. Re-sending queues a copy again: it is delivered from its first attempt on." }
            @if list.is_empty() { p #none { "No FAILED copy." } }
            @else {
                table #failed {
                    thead { tr { th { "Receipt (payment token)" } th { "Station" } th { "EC" } th { "Attempts" } th { "Last error" } th { "" } } }
                    tbody {
                        @for r in &list {
                            tr {
                                td.token { a href=(format!("/console/journal?token={}", r.receipt_id.as_str())) { (r.receipt_id.as_str()) } }
                                td { (r.station.as_str()) }
                                td { (r.ec.as_str()) }
                                td.num { (r.attempts) }
                                td { (r.last_error.as_deref().unwrap_or("")) }
                                td { (resend_form(r.receipt_id.as_str(), r.station.as_str(), "/console/receipts")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct ResendForm {
    station: Option<String>,
    /// The console page to go back to.
    back: Option<String>,
}

/// `POST /console/receipts/{receipt_id}/resend`: the re-send button.
pub async fn resend(
    path: web::Path<String>,
    form: web::Form<ResendForm>,
    operator: web::ReqData<Operator>,
    node: web::Data<Arc<Node>>,
) -> HttpResponse {
    let id = path.into_inner();
    let station = form.station.as_deref().filter(|s| !s.is_empty());
    let done = match resend_as(&node, &operator, &id, station).await {
        Ok(n) => format!(
            "Receipt {id}: {n} cop{} queued for delivery.",
            if n == 1 { "y" } else { "ies" }
        ),
        Err(e) => return refused(super::resend_status(&e), &e.to_string()),
    };
    // Back to a console page only (never to another site).
    let back = form
        .back
        .as_deref()
        .filter(|b| b.starts_with("/console/") && !b.contains("//"))
        .unwrap_or("/console/receipts");
    let sep = if back.contains('?') { '&' } else { '?' };
    see_other(&format!("{back}{sep}done={}", url_encode(&done)))
}

/// The deepest indentation [`pretty_xml`] writes: deeper elements stay at it.
const MAX_INDENT: usize = 24;

/// A message laid out one element per line, indented by depth; the text, entities and markup
/// as they were. A message that is not well-formed is shown as it was.
pub fn pretty_xml(xml: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = String::with_capacity(xml.len() + xml.len() / 2);
    let mut depth: usize = 0;
    // Whether the element just opened has had text (its end tag then stays on its line).
    let mut inline = false;
    let line = |out: &mut String, depth: usize| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.extend(std::iter::repeat_n("  ", depth.min(MAX_INDENT)));
    };
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(_) => return xml.to_string(),
        };
        match event {
            Event::Start(e) => {
                line(&mut out, depth);
                out.push('<');
                out.push_str(&e);
                out.push('>');
                depth += 1;
                inline = false;
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                if !inline {
                    line(&mut out, depth);
                }
                out.push_str("</");
                out.push_str(&e);
                out.push('>');
                inline = false;
            }
            Event::Empty(e) => {
                line(&mut out, depth);
                out.push('<');
                out.push_str(&e);
                out.push_str("/>");
                inline = false;
            }
            Event::Text(t) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
            Event::Text(t) => {
                out.push_str(&t);
                inline = true;
            }
            Event::GeneralRef(r) => {
                out.push('&');
                out.push_str(&r);
                out.push(';');
                inline = true;
            }
            Event::CData(c) => {
                out.push_str("<![CDATA[");
                out.push_str(&c);
                out.push_str("]]>");
                inline = true;
            }
            Event::Comment(c) => {
                line(&mut out, depth);
                out.push_str("<!--");
                out.push_str(&c);
                out.push_str("-->");
            }
            Event::Decl(d) => {
                out.push_str("<?");
                out.push_str(&d);
                out.push_str("?>");
            }
            Event::PI(p) => {
                line(&mut out, depth);
                out.push_str("<?");
                out.push_str(&p);
                out.push_str("?>");
            }
            Event::DocType(d) => {
                line(&mut out, depth);
                out.push_str("<!DOCTYPE ");
                out.push_str(&d);
                out.push('>');
            }
            Event::Eof => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_by_depth_with_their_text_inline() {
        let xml = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\"><s:Body><a><b>1 &amp; 2</b><c/><d><![CDATA[<x>]]></d></a></s:Body></s:Envelope>";
        assert_eq!(
            pretty_xml(xml),
            "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"x\">\n  <s:Body>\n    <a>\n      <b>1 &amp; 2</b>\n      <c/>\n      <d><![CDATA[<x>]]></d>\n    </a>\n  </s:Body>\n</s:Envelope>"
        );
        assert_eq!(
            pretty_xml("<a><b></a>"),
            "<a><b></a>",
            "not well-formed: as it was"
        );
    }

    #[test]
    fn indentation_stops_deepening() {
        let deep = format!("{}{}", "<a>".repeat(1000), "</a>".repeat(1000));
        let pretty = pretty_xml(&deep);
        assert!(pretty.lines().all(|l| l.len() <= 2 * MAX_INDENT + 4));
    }

    #[test]
    fn the_token_travels_in_hex() {
        let token = "s3cr3t; with=odd,chars";
        assert_eq!(
            hex_decode(&hex_encode(token.as_bytes())).as_deref(),
            Some(token.as_bytes())
        );
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}

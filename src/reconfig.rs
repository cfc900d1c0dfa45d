//! Runtime configuration: what may change while the node runs, the canonical text of a
//! configuration (what the store keeps, version after version), what `GET /admin/config` shows
//! of it (secrets redacted), the per-key difference between two versions (the journal's record
//! of a change), and JSON merge patches (RFC 7386) addressed by entity id.
//!
//! Entities (the arrays of tables: `[[psp]]`, `[[station]]`, …) are addressed by their id: `id`,
//! an EC's `fiscal_code`, a station link's `ec:aux_digit:code` (code empty for aux digits 1 and
//! 2), a service provider's `id` within its service.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, Database};

/// Declares the keys read once, at start: listeners, the store, TLS, threads, the outbound
/// clients, the schedules' parameters. Each instance keeps its own (two nodes on one PostgreSQL
/// may listen on different addresses): a new document must repeat the running values, and a
/// version adopted from the store takes this instance's.
macro_rules! instance_local {
    ($( $section:ident $(. $field:ident)? ),+ $(,)?) => {
        /// The keys read at start only, as TOML paths.
        pub const RESTART_KEYS: &[&str] = &[
            $( concat!(stringify!($section) $(, ".", stringify!($field))?), )+
        ];

        /// The first key read at start only whose value differs between the two.
        fn changed_instance_local(current: &Config, new: &Config) -> Option<&'static str> {
            $(
                if current.$section $(.$field)? != new.$section $(.$field)? {
                    return Some(concat!(stringify!($section) $(, ".", stringify!($field))?));
                }
            )+
            None
        }

        /// `new` with `current`'s values of the keys read at start only.
        fn keep_instance_local(new: &mut Config, current: &Config) {
            $( new.$section $(.$field)? = current.$section $(.$field)?.clone(); )+
            new.file = current.file.clone();
        }
    };
}

instance_local! {
    node.listen,
    node.tls_cert,
    node.tls_key,
    node.tls_client_ca,
    node.tls_client_auth,
    node.database,
    node.admin_listen,
    node.workers,
    // The station clients' limit (see `EcClient`).
    node.max_xml_depth,
    limits,
    outbound,
    log,
    receipts.per_station_concurrency,
    // The store's receipt leases are sized on it (several nodes on one PostgreSQL).
    timings.receipt_timeout_ms,
    timings.expiry,
    timings.cancellation_job_interval_ms,
}

/// Refuses a change the running node cannot take: a key read at start only, or a station's
/// own outbound client (its proxy, client certificate or CA bundle), built at start.
pub fn check_runtime_change(current: &Config, new: &Config) -> Result<(), ConfigError> {
    let restart = |key: String| ConfigError {
        key,
        message: "is read at start only: restart the node to change it (keep the running value \
                  in a configuration applied at runtime)"
            .into(),
        line: None,
    };
    if let Some(key) = changed_instance_local(current, new) {
        return Err(restart(key.into()));
    }
    for (i, s) in new.station.iter().enumerate() {
        let before = current.station.iter().find(|c| c.id == s.id);
        let own = |st: &crate::config::StationConfig| {
            (
                st.proxy.clone(),
                st.client_cert.clone(),
                st.client_key.clone(),
                st.ca_bundle.clone(),
            )
        };
        let unchanged = match before {
            Some(b) => own(b) == own(s),
            None => own(s) == (None, None, None, None),
        };
        if !unchanged {
            return Err(restart(format!("station[{i}].proxy")));
        }
    }
    Ok(())
}

/// A configuration stored by any instance, made this instance's: its keys read at start only
/// are this instance's, and the whole is checked again (as at start).
pub fn adopt(stored: &str, running: &Config) -> Result<Config, ConfigError> {
    let mut cfg = Config::from_toml_str(stored)?;
    keep_instance_local(&mut cfg, running);
    cfg.check()?;
    check_runtime_change(running, &cfg)?;
    Ok(cfg)
}

/// A document applied at runtime, made ready to compare with the running one: the database
/// from the environment (as at start), and the file it is read again from.
pub fn prepare(mut new: Config, running: &Config) -> Config {
    new.apply_env();
    if new.file.is_none() {
        new.file = running.file.clone();
    }
    new
}

/// The canonical TOML of a configuration: what the store keeps and the diffs compare. The
/// database's password is masked (each instance has its own `node.database`). A configuration
/// read from TOML always writes back (its paths are UTF-8, unset keys are left out): the
/// fallback, a comment, would be refused by any node reading it.
pub fn canonical(config: &Config) -> String {
    let mut c = config.clone();
    c.node.database = Database::parse(&config.node.database.to_string());
    toml::to_string(&c).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
}

/// The hash of what instances share of a configuration (its keys read at start only left
/// out): at start, a stored version wins over the file while the file's hash is the one it was
/// applied with.
pub fn shared_hash(config: &Config) -> String {
    let mut c = config.clone();
    keep_instance_local(&mut c, &Config::default());
    let digest = Sha256::digest(canonical(&c).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys whose values are secrets: shown as [`REDACTED`], and in diffs as "changed".
const SECRET_KEYS: &[&str] = &[
    "password",
    "admin_token",
    "admin_tokens",
    "subscription_keys",
];

pub const REDACTED: &str = "********";

fn secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// The running configuration as `GET /admin/config` shows it: canonical TOML, secrets redacted.
pub fn redacted(config: &Config) -> String {
    let mut doc = json_of(config);
    redact(&mut doc);
    toml::to_string(&doc).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
}

fn redact(v: &mut Json) {
    match v {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                if secret(k) {
                    mask(v);
                } else {
                    redact(v);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn mask(v: &mut Json) {
    match v {
        Json::Object(map) => map.values_mut().for_each(mask),
        Json::Array(items) => items.iter_mut().for_each(mask),
        other => *other = Json::String(REDACTED.into()),
    }
}

/// A configuration as JSON (its canonical shape).
fn json_of(config: &Config) -> Json {
    let text = canonical(config);
    toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or(Json::Null)
}

/// A document shown by `GET /admin/config` and sent back: each secret left as [`REDACTED`]
/// takes the running value of the same key (entities matched by id). `None`: the document
/// holds no redacted value (or does not parse: it is then refused as it is).
pub fn restore_secrets(text: &str, running: &Config) -> Option<String> {
    if !text.contains(REDACTED) {
        return None;
    }
    let mut doc = serde_json::to_value(toml::from_str::<toml::Table>(text).ok()?).ok()?;
    let mut current = serde_json::to_value(running).ok()?;
    drop_nulls(&mut current);
    restore("", &mut doc, &current);
    toml::to_string(&doc).ok()
}

fn redacted_somewhere(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains(REDACTED),
        Json::Array(items) => items.iter().any(redacted_somewhere),
        Json::Object(map) => map.values().any(redacted_somewhere),
        _ => false,
    }
}

fn restore(table: &str, doc: &mut Json, current: &Json) {
    match (doc, current) {
        (Json::Object(d), Json::Object(c)) => {
            for (k, v) in d.iter_mut() {
                let Some(cv) = c.get(k) else { continue };
                if (secret(k) || k == "database") && redacted_somewhere(v) {
                    *v = cv.clone();
                } else {
                    restore(k, v, cv);
                }
            }
        }
        (Json::Array(items), Json::Array(running)) => {
            for item in items.iter_mut() {
                let Some(id) = entity_id(table, item) else {
                    continue;
                };
                if let Some(c) = running
                    .iter()
                    .find(|r| entity_id(table, r).as_deref() == Some(id.as_str()))
                {
                    restore(table, item, c);
                }
            }
        }
        _ => {}
    }
}

/// An entity's id, if `item` is one of an array of entities named `table`.
fn entity_id(table: &str, item: &Json) -> Option<String> {
    let field = |name: &str| item.get(name).map(scalar_text);
    match table {
        "ec" => field("fiscal_code"),
        "station_link" => {
            let code = field("segregation_code")
                .or_else(|| field("application_code"))
                .unwrap_or_default();
            Some(format!("{}:{}:{code}", field("ec")?, field("aux_digit")?))
        }
        _ => field("id"),
    }
}

/// The field an entity's id is read from (none for station links: their id is composite).
fn id_field(table: &str) -> Option<&'static str> {
    match table {
        "ec" => Some("fiscal_code"),
        "station_link" => None,
        _ => Some("id"),
    }
}

fn scalar_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `items` are entities of `table` (tables, each with an id).
fn entities(table: &str, items: &[Json]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.is_object() && entity_id(table, i).is_some())
}

/// Every value of a configuration by its path, entities addressed by id
/// (`station.77777777777_01.enabled`).
fn flatten(prefix: &str, table: &str, v: &Json, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Json::Object(map) => {
            for (k, v) in map {
                // Below a secret table (`admin_tokens`), every value is secret.
                let name = if secret(table) { table } else { k };
                flatten(&join(k), name, v, out);
            }
        }
        Json::Array(items) if entities(table, items) => {
            for item in items {
                let id = entity_id(table, item).unwrap_or_default();
                flatten(&join(&id), table, item, out);
            }
        }
        other => {
            let shown = if secret(table) {
                REDACTED.to_string()
            } else {
                other.to_string()
            };
            // A secret's value never leaves: its fingerprint only tells that it changed.
            let fingerprint = if secret(table) {
                let d = Sha256::digest(other.to_string().as_bytes());
                d.iter().take(8).map(|b| format!("{b:02x}")).collect()
            } else {
                String::new()
            };
            out.insert(prefix.to_string(), format!("{shown}\u{0}{fingerprint}"));
        }
    }
}

/// What changed from `old` to `new`, one line per key: `+ key = value`, `- key = value`,
/// `~ key: old -> new` (secrets as [`REDACTED`]). Empty: nothing changed.
pub fn diff(old: &Config, new: &Config) -> String {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", "", &json_of(old), &mut a);
    flatten("", "", &json_of(new), &mut b);
    let shown = |v: &str| v.split('\u{0}').next().unwrap_or("").to_string();
    let mut lines = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => lines.push(format!("- {k} = {}", shown(v))),
            Some(w) if w != v => lines.push(format!("~ {k}: {} -> {}", shown(v), shown(w))),
            Some(_) => {}
        }
    }
    for (k, v) in &b {
        if !a.contains_key(k) {
            lines.push(format!("+ {k} = {}", shown(v)));
        }
    }
    lines.join("\n")
}

/// Why a merge patch cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("a merge patch is a JSON object")]
    NotAnObject,
    #[error("the patched configuration cannot be written as TOML: {0}")]
    Toml(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Applies a JSON merge patch (RFC 7386) to `running`, entities addressed by id (`null`
/// removes one, an unknown id adds one), and checks the result as a whole document.
pub fn patch(running: &Config, patch: &Json) -> Result<Config, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject);
    }
    let mut doc = serde_json::to_value(running).map_err(|e| PatchError::Toml(e.to_string()))?;
    merge("", &mut doc, patch);
    drop_nulls(&mut doc);
    let text = toml::to_string(&doc).map_err(|e| PatchError::Toml(e.to_string()))?;
    // The document checked is made here: a line of it would point nowhere the caller sees.
    let mut cfg = Config::from_toml_str(&text).map_err(|mut e| {
        e.line = None;
        if let Some(at) = e.key.find(" (line ") {
            e.key.truncate(at);
        }
        e
    })?;
    cfg.file = running.file.clone();
    Ok(cfg)
}

/// Unset options (`null` in JSON) are absent keys in TOML.
fn drop_nulls(v: &mut Json) {
    match v {
        Json::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Json::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// RFC 7386 on `target`, except that arrays of entities are merged by id.
fn merge(table: &str, target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if let Json::Array(items) = target
        && (items.is_empty() || entities(table, items))
    {
        merge_entities(table, items, p);
        return;
    }
    if !target.is_object() {
        *target = Json::Object(Default::default());
    }
    let Json::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(k, t.entry(k.clone()).or_insert(Json::Null), v);
        }
    }
}

/// Merges a patch object keyed by entity id into an array of entities (order kept, new ones
/// last).
fn merge_entities(table: &str, items: &mut Vec<Json>, patch: &serde_json::Map<String, Json>) {
    for (id, change) in patch {
        let at = items
            .iter()
            .position(|i| entity_id(table, i).as_deref() == Some(id.as_str()));
        match (at, change.is_null()) {
            (Some(i), true) => {
                items.remove(i);
            }
            (Some(i), false) => merge(table, &mut items[i], change),
            (None, true) => {}
            (None, false) => {
                let mut item = Json::Object(Default::default());
                if let (Some(field), Json::Object(m)) = (id_field(table), &mut item) {
                    m.insert(field.into(), Json::String(id.clone()));
                }
                merge(table, &mut item, change);
                items.push(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_text_reads_back_as_the_same_configuration() {
        let c = Config::example();
        let back = Config::from_toml_str(&canonical(&c)).unwrap();
        assert_eq!(back, c);
        assert_eq!(diff(&c, &back), "");
    }

    #[test]
    fn a_patch_addresses_entities_by_id() {
        let c = Config::example();
        let station = c.station[0].id.clone();
        let p = serde_json::json!({
            "station": { station.clone(): { "enabled": false } },
            "timings": { "token_default_ms": 60000 },
        });
        let n = patch(&c, &p).unwrap();
        assert!(!n.station[0].enabled);
        assert_eq!(n.timings.token_default_ms, 60_000);
        assert_eq!(n.station.len(), c.station.len());
        let d = diff(&c, &n);
        assert!(
            d.contains(&format!("~ station.{station}.enabled: true -> false")),
            "{d}"
        );
        let removed = patch(
            &c,
            &serde_json::json!({ "psp": { c.psp[0].id.clone(): null } }),
        );
        // The removed PSP is still named by a channel: refused as at start.
        assert!(matches!(removed, Err(PatchError::Config(_))), "{removed:?}");
        let bad = patch(&c, &serde_json::json!({ "timings": { "token_max_ms": 0 } }));
        let Err(PatchError::Config(e)) = bad else {
            panic!("{bad:?}")
        };
        assert_eq!((e.key.as_str(), e.line), ("timings.token_max_ms", None));
        let bad = patch(
            &c,
            &serde_json::json!({ "timings": { "token_max_ms": "soon" } }),
        );
        let Err(PatchError::Config(e)) = bad else {
            panic!("{bad:?}")
        };
        assert_eq!(
            (e.key.as_str(), e.line),
            ("timings.token_max_ms", None),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_redacted_and_their_changes_still_shown() {
        let c = Config::example();
        let shown = redacted(&c);
        assert!(!shown.contains(&c.channel[0].password), "{shown}");
        assert!(shown.contains(REDACTED));
        let mut n = c.clone();
        n.channel[0].password = "anotherpwd".into();
        let d = diff(&c, &n);
        assert!(d.contains("password"), "{d}");
        assert!(!d.contains("anotherpwd") && !d.contains(&c.channel[0].password));
    }

    #[test]
    fn a_shown_configuration_sent_back_keeps_the_running_secrets() {
        let mut c = Config::example();
        c.node
            .admin_tokens
            .insert("alice".into(), "alice-secret-token".into());
        let shown = redacted(&c);
        let restored = restore_secrets(&shown, &c).expect("redacted values");
        let back = Config::from_toml_str(&restored).unwrap();
        assert_eq!(back, c);
        assert_eq!(restore_secrets(&canonical(&c), &c), None);
    }

    #[test]
    fn keys_read_at_start_are_refused_at_runtime() {
        let c = Config::example();
        let mut n = c.clone();
        n.node.listen = "127.0.0.1:1".into();
        assert_eq!(check_runtime_change(&c, &n).unwrap_err().key, "node.listen");
        let mut n = c.clone();
        n.limits.keep_alive_ms += 1;
        assert_eq!(check_runtime_change(&c, &n).unwrap_err().key, "limits");
        assert!(RESTART_KEYS.contains(&"timings.expiry"));
        let mut n = c.clone();
        n.psp[0].enabled = false;
        assert!(check_runtime_change(&c, &n).is_ok());
        assert_eq!(
            shared_hash(&c),
            shared_hash(&{
                let mut d = c.clone();
                d.node.listen = "0.0.0.0:9".into();
                d
            })
        );
        assert_ne!(shared_hash(&c), shared_hash(&n));
    }
}

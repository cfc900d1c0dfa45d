//! Every rule by which the configuration refuses a value, one row each: the shipped example
//! configuration with one change must fail to load, naming the key at fault. The example itself
//! must load (so each row fails for its own change, not for the base).

use pagonode::config::{Config, ConfigError};
use toml::{Table, Value};

const EXAMPLE: &str = include_str!("../pagonode.example.toml");

/// The `i`-th table of the array of tables `name`.
fn nth<'t>(t: &'t mut Table, name: &str, i: usize) -> &'t mut Table {
    t[name].as_array_mut().unwrap()[i].as_table_mut().unwrap()
}

/// Sets `key` of the `[section]` table (created if missing).
fn set(t: &mut Table, section: &str, key: &str, v: impl Into<Value>) {
    t.entry(section)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .unwrap()
        .put(key, v);
}

/// Appends a copy of the `i`-th table of `name`, changed by `f`.
fn push_copy(t: &mut Table, name: &str, i: usize, f: impl FnOnce(&mut Table)) {
    let mut copy = nth(t, name, i).clone();
    f(&mut copy);
    t[name].as_array_mut().unwrap().push(Value::Table(copy));
}

/// `insert` without the old value, so that each change is a statement.
trait Put {
    fn put(&mut self, key: &str, v: impl Into<Value>);
}

impl Put for Table {
    fn put(&mut self, key: &str, v: impl Into<Value>) {
        self.insert(key.into(), v.into());
    }
}

fn long(n: usize) -> String {
    "1".repeat(n)
}

type Change = fn(&mut Table);

/// (the key the error must name, the change).
const RULES: &[(&str, Change)] = &[
    // [log]
    ("log.level", |t| set(t, "log", "level", "nonsense=[")),
    // [timings]
    ("timings.token_default_ms", |t| {
        set(t, "timings", "token_default_ms", 0)
    }),
    ("timings.outcome_deadline_ms", |t| {
        set(t, "timings", "outcome_deadline_ms", 0)
    }),
    ("timings.ec_timeout_ms", |t| {
        set(t, "timings", "ec_timeout_ms", 0)
    }),
    ("timings.receipt_timeout_ms", |t| {
        set(t, "timings", "receipt_timeout_ms", 0)
    }),
    ("timings.cancellation_job_interval_ms", |t| {
        set(t, "timings", "cancellation_job_interval_ms", 0)
    }),
    ("timings.token_max_ms", |t| {
        set(t, "timings", "token_max_ms", 0)
    }),
    ("timings.token_max_ms", |t| {
        set(t, "timings", "token_max_ms", 1_800_001)
    }),
    ("timings.token_default_ms", |t| {
        set(t, "timings", "token_max_ms", 60_000);
        set(t, "timings", "token_default_ms", 60_001);
    }),
    // [receipts]
    ("receipts.max_attempts", |t| {
        set(t, "receipts", "max_attempts", 0)
    }),
    ("receipts.retry_interval_ms", |t| {
        set(t, "receipts", "retry_interval_ms", 0)
    }),
    ("receipts.per_station_concurrency", |t| {
        set(t, "receipts", "per_station_concurrency", 0)
    }),
    // [journal]
    ("journal.retention_days", |t| {
        set(t, "journal", "retention_days", 0)
    }),
    // [node]
    ("node.max_body_bytes", |t| {
        set(t, "node", "max_body_bytes", 1023)
    }),
    ("node.max_xml_depth", |t| {
        set(t, "node", "max_xml_depth", 15)
    }),
    ("node.public_url", |t| {
        set(t, "node", "public_url", "ftp://pagonode.example.org/")
    }),
    ("node.tls_cert", |t| set(t, "node", "tls_cert", "cert.pem")),
    ("node.tls_cert", |t| set(t, "node", "tls_key", "key.pem")),
    ("node.workers", |t| set(t, "node", "workers", 0)),
    ("node.admin_token", |t| set(t, "node", "admin_token", "")),
    ("node.admin_token", |t| set(t, "node", "admin_token", "  ")),
    // The front door: mTLS, subscription keys, limits, station calls.
    ("node.tls_client_ca", |t| {
        set(t, "node", "tls_client_ca", "ca.pem")
    }),
    ("node.tls_client_auth", |t| {
        set(t, "node", "tls_client_auth", "required")
    }),
    ("node.subscription_key_header", |t| {
        set(t, "node", "subscription_key_header", "a b")
    }),
    ("limits.header_timeout_ms", |t| {
        set(t, "limits", "header_timeout_ms", 0)
    }),
    ("limits.body_timeout_ms", |t| {
        set(t, "limits", "body_timeout_ms", 0)
    }),
    ("limits.max_connections", |t| {
        set(t, "limits", "max_connections", 0)
    }),
    ("limits.max_connections_per_address", |t| {
        set(t, "limits", "max_connections_per_address", 0)
    }),
    ("outbound.client_cert", |t| {
        set(t, "outbound", "client_cert", "node.pem")
    }),
    ("outbound.max_response_bytes", |t| {
        set(t, "outbound", "max_response_bytes", 1000)
    }),
    ("psp_broker[0].subscription_keys", |t| {
        let keys: Vec<Value> = (0..3)
            .map(|i| format!("key-{i}-0123456789abcdef").into())
            .collect();
        nth(t, "psp_broker", 0).put("subscription_keys", keys);
    }),
    ("psp_broker[0].subscription_keys", |t| {
        nth(t, "psp_broker", 0).put("subscription_keys", vec![Value::from("short")]);
    }),
    ("psp_broker[1].subscription_keys", |t| {
        let key = Value::from("the-same-key-0123456789");
        nth(t, "psp_broker", 0).put("subscription_keys", vec![key.clone()]);
        nth(t, "psp_broker", 1).put("subscription_keys", vec![key]);
    }),
    ("psp_broker[0].client_cert_sha256", |t| {
        nth(t, "psp_broker", 0).put("client_cert_sha256", vec![Value::from("ab:cd")]);
    }),
    ("psp_broker[0].client_cert_subjects", |t| {
        nth(t, "psp_broker", 0).put("client_cert_subjects", vec![Value::from("CN psp")]);
    }),
    ("psp_broker[0].client_cert_sha256", |t| {
        // Pinned certificates without the CAs to verify them against.
        nth(t, "psp_broker", 0).put("client_cert_subjects", vec![Value::from("CN=psp")]);
    }),
    ("station[0].max_response_bytes", |t| {
        nth(t, "station", 0).put("max_response_bytes", 1000);
    }),
    ("station[0].client_cert", |t| {
        nth(t, "station", 0).put("client_key", "key.pem");
    }),
    ("node.admin_tokens.alice", |t| {
        let tokens: Table = toml::from_str("alice = \"\"").unwrap();
        set(t, "node", "admin_tokens", tokens)
    }),
    ("node.admin_tokens.admin", |t| {
        let tokens: Table = toml::from_str("admin = \"a-long-enough-token\"").unwrap();
        set(t, "node", "admin_tokens", tokens)
    }),
    ("node.admin_tokens.al ice", |t| {
        let tokens: Table = toml::from_str("\"al ice\" = \"a-long-enough-token\"").unwrap();
        set(t, "node", "admin_tokens", tokens)
    }),
    // [[psp]]
    ("psp[1]", |t| nth(t, "psp", 1).put("id", "60000000001")),
    ("psp[0].id", |t| nth(t, "psp", 0).put("id", long(36))),
    ("psp[0].name", |t| nth(t, "psp", 0).put("name", "")),
    ("psp[0].name", |t| {
        nth(t, "psp", 0).put("name", "n".repeat(71))
    }),
    // [[psp_broker]]
    ("psp_broker[1]", |t| {
        nth(t, "psp_broker", 1).put("id", "60000000001")
    }),
    ("psp_broker[0].id", |t| {
        nth(t, "psp_broker", 0).put("id", long(36))
    }),
    // [[channel]]
    ("channel[1]", |t| {
        nth(t, "channel", 1).put("id", "60000000001_01")
    }),
    ("channel[0].id", |t| {
        nth(t, "channel", 0).put("id", long(36))
    }),
    ("channel[0].broker", |t| {
        nth(t, "channel", 0).put("broker", "60000000009")
    }),
    ("channel[0].password", |t| {
        nth(t, "channel", 0).put("password", "short")
    }),
    ("channel[0].password", |t| {
        nth(t, "channel", 0).put("password", "sixteen-chars-pw")
    }),
    ("channel[0].psps", |t| {
        nth(t, "channel", 0).put("psps", Value::Array(vec!["60000000009".into()]))
    }),
    ("channel[0].outcome_deadline_ms", |t| {
        nth(t, "channel", 0).put("outcome_deadline_ms", 0)
    }),
    // [[ec]]
    ("ec[1]", |t| {
        nth(t, "ec", 1).put("fiscal_code", "77777777777")
    }),
    ("ec[0].fiscal_code", |t| {
        nth(t, "ec", 0).put("fiscal_code", "7777777777")
    }),
    ("ec[0].name", |t| nth(t, "ec", 0).put("name", "")),
    ("ec[0].name", |t| {
        nth(t, "ec", 0).put("name", "n".repeat(141))
    }),
    ("ec[0].ibans[0]", |t| {
        nth(t, "ec", 0).put("ibans", Value::Array(vec!["not an iban".into()]))
    }),
    // [[ec_broker]]
    ("ec_broker[1]", |t| {
        nth(t, "ec_broker", 1).put("id", "77777777777")
    }),
    ("ec_broker[0].id", |t| {
        nth(t, "ec_broker", 0).put("id", long(36))
    }),
    // [[station]]
    ("station[1]", |t| {
        nth(t, "station", 1).put("id", "77777777777_01")
    }),
    ("station[0].id", |t| {
        nth(t, "station", 0).put("id", long(36))
    }),
    ("station[0].broker", |t| {
        nth(t, "station", 0).put("broker", "11111111111")
    }),
    ("station[0].url", |t| {
        nth(t, "station", 0).put("url", "ftp://127.0.0.1/pa")
    }),
    ("station[0].url", |t| {
        nth(t, "station", 0).put("url", "http://x")
    }),
    ("station[0].version", |t| {
        nth(t, "station", 0).put("version", 3)
    }),
    ("station[0].timeout_ms", |t| {
        nth(t, "station", 0).put("timeout_ms", 0)
    }),
    ("station[0].timeout_ms", |t| {
        nth(t, "station", 0).put("receipt_timeout_ms", 0)
    }),
    // [[station_link]]
    ("station_link[0].ec", |t| {
        nth(t, "station_link", 0).put("ec", "12345678901")
    }),
    ("station_link[0].station", |t| {
        nth(t, "station_link", 0).put("station", "77777777777_99")
    }),
    ("station_link[0].segregation_code", |t| {
        nth(t, "station_link", 0).put("segregation_code", "2")
    }),
    ("station_link[0].application_code", |t| {
        let l = nth(t, "station_link", 0);
        l.put("aux_digit", 0);
        l.remove("segregation_code");
        l.put("application_code", "x1");
    }),
    ("station_link[0].segregation_code", |t| {
        nth(t, "station_link", 0).remove("segregation_code");
    }),
    ("station_link[0].application_code", |t| {
        nth(t, "station_link", 0).put("aux_digit", 0);
    }),
    ("station_link[0].aux_digit", |t| {
        nth(t, "station_link", 0).put("aux_digit", 1);
    }),
    ("station_link[0].aux_digit", |t| {
        let l = nth(t, "station_link", 0);
        l.put("aux_digit", 4);
        l.remove("segregation_code");
    }),
    ("station_link[4].station", |t| {
        push_copy(t, "station_link", 0, |l| {
            l.put("station", "77777777777_05");
        })
    }),
    // [[service]] and its providers
    ("service[1]", |t| nth(t, "service", 1).put("id", "00001")),
    ("service[0].id", |t| nth(t, "service", 0).put("id", "1")),
    ("service[0].xsd", |t| {
        nth(t, "service", 0).put("xsd", "Unknown_1_0_0")
    }),
    ("service[0].description", |t| {
        nth(t, "service", 0).put("description", "")
    }),
    ("service[0].description", |t| {
        nth(t, "service", 0).put("description", "d".repeat(71))
    }),
    ("service[0].provider[0].id", |t| {
        provider(t).put("id", "42");
    }),
    ("service[1].provider[0].id", |t| {
        let p = nth(t, "service", 1)["provider"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap();
        p.put("id", "00042");
    }),
    ("service[0].provider[0].ec", |t| {
        provider(t).put("ec", long(36));
    }),
    ("service[0].provider[0].station", |t| {
        provider(t).put("station", "77777777777_99");
    }),
    ("service[0].provider[0].valid_to", |t| {
        provider(t).put("valid_to", "2023-12-31");
    }),
    ("service[0].provider[0].commission", |t| {
        provider(t).put("commission", "S");
    }),
];

fn provider(t: &mut Table) -> &mut Table {
    nth(t, "service", 0)["provider"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
}

/// Structural mistakes the reader refuses before any rule: (what the error must mention,
/// the change).
const STRUCTURE: &[(&str, Change)] = &[
    ("admin_tokn", |t| set(t, "node", "admin_tokn", "x")),
    ("expiry", |t| set(t, "timings", "expiry", "lazy")),
    ("over_rate", |t| set(t, "limits", "over_rate", "sometimes")),
    ("max_attempts", |t| set(t, "receipts", "max_attempts", -1)),
    ("retention_days", |t| {
        set(t, "journal", "retention_days", "forever")
    }),
];

fn load(change: Change) -> Result<Config, ConfigError> {
    let mut t: Table = toml::from_str(EXAMPLE).unwrap();
    change(&mut t);
    Config::from_toml_str(&toml::to_string(&t).unwrap())
}

#[test]
fn the_base_configuration_loads() {
    load(|_| {}).expect("the example configuration is valid");
}

#[test]
fn every_rule_refuses_its_value_naming_the_key() {
    let mut wrong = Vec::new();
    for (i, (key, change)) in RULES.iter().enumerate() {
        match load(*change) {
            Ok(_) => wrong.push(format!("rule {i} ({key}): accepted")),
            Err(e) if e.key != *key => wrong.push(format!("rule {i} ({key}): refused as {e}")),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(RULES.len() >= 60, "{} rules", RULES.len());
}

#[test]
fn structural_mistakes_are_refused_naming_the_place() {
    for (what, change) in STRUCTURE {
        let e = load(*change).expect_err(what);
        assert!(
            e.to_string().contains(what),
            "{what}: the error does not name it: {e}"
        );
    }
}

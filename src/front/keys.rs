//! Subscription keys, as the API gateway in front of the official node checks them: every call
//! carries its subscription's key in the `Ocp-Apim-Subscription-Key` header (or the query
//! parameter of that name); a missing or unknown key is answered HTTP 401 with a small JSON body
//! before the request is read (pagoPA developer portal, "Come ottenere le subscription key";
//! Azure API Management, "Subscriptions in Azure API Management"). Each PSP broker has up to two
//! keys, primary and secondary, so that a key can be rotated without a pause.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Config;

/// Why a request's key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Missing,
    Invalid,
}

impl KeyRefusal {
    /// The gateway's own wording (Azure API Management's 401 answers).
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Missing => {
                "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
            }
            KeyRefusal::Invalid => {
                "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
            }
        }
    }
}

/// The configured keys, by their SHA-256 (a lookup by hash takes the same time whatever the
/// key presented shares with a real one).
#[derive(Debug, Default)]
pub struct SubscriptionKeys {
    header: String,
    brokers: HashMap<[u8; 32], String>,
}

impl SubscriptionKeys {
    pub fn new(config: &Config) -> SubscriptionKeys {
        let brokers = config
            .psp_broker
            .iter()
            .flat_map(|b| {
                b.subscription_keys
                    .iter()
                    .map(move |k| (hash(k), b.id.clone()))
            })
            .collect();
        SubscriptionKeys {
            header: config.node.subscription_key_header.clone(),
            brokers,
        }
    }

    /// Whether keys are checked at all (some broker has one).
    pub fn enabled(&self) -> bool {
        !self.brokers.is_empty()
    }

    /// The broker whose key the request carries (`Ok(None)` when keys are off): in the header,
    /// or else in the query parameter of the same name.
    pub fn check(&self, header: Option<&[u8]>, query: &str) -> Result<Option<&str>, KeyRefusal> {
        if !self.enabled() {
            return Ok(None);
        }
        let from_query = || {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.eq_ignore_ascii_case(&self.header))
                .map(|(_, value)| value.as_bytes())
        };
        let key = header.or_else(from_query).ok_or(KeyRefusal::Missing)?;
        self.brokers
            .get(&hash_bytes(key))
            .map(|b| Some(b.as_str()))
            .ok_or(KeyRefusal::Invalid)
    }

    /// The header the key travels in.
    pub fn header(&self) -> &str {
        &self.header
    }
}

fn hash(key: &str) -> [u8; 32] {
    hash_bytes(key.as_bytes())
}

fn hash_bytes(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_in_the_header_or_the_query() {
        let mut config = Config::example();
        config.psp_broker[0].subscription_keys = vec![
            "primary-key-0123456789".into(),
            "secondary-key-0123456".into(),
        ];
        let keys = SubscriptionKeys::new(&config);
        let broker = config.psp_broker[0].id.as_str();
        assert_eq!(
            keys.check(Some(b"primary-key-0123456789"), ""),
            Ok(Some(broker))
        );
        assert_eq!(
            keys.check(None, "wsdl&Ocp-Apim-Subscription-Key=secondary-key-0123456"),
            Ok(Some(broker))
        );
        assert_eq!(keys.check(None, "x=1"), Err(KeyRefusal::Missing));
        assert_eq!(
            keys.check(Some(b"primary-key-012345678"), ""),
            Err(KeyRefusal::Invalid)
        );
        config.psp_broker[0].subscription_keys.clear();
        assert_eq!(SubscriptionKeys::new(&config).check(None, ""), Ok(None));
    }
}

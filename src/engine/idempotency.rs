//! Idempotency of activatePaymentNotice and sendPaymentOutcome (official BDD tests
//! `activatePaymentNotice_IDMP_ACT_*`, `sendPaymentOutcome_IDMP_SPO_*`): per
//! (PSP, key, primitive), a hash of the whole request and the response it got. The same request
//! again gets the stored response byte for byte; a different one `PPT_ERRORE_IDEMPOTENZA`.
//! Semantic failures are cached too; syntax failures never are (they never reach the engine).

use sha2::{Digest, Sha256};

use super::expiry::activate_primitive;
use super::{Engine, IdemEntry, IdemKey, Millis, Payment, PspRef, Reply, Step, Write};
use crate::codec::types::PaymentToken;
use crate::codec::{Message, Operation, write_envelope};
use crate::config::Timings;
use crate::fault::NodeFault;

/// The idempotency part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemCtx {
    pub key: IdemKey,
    /// SHA-256 of the request's canonical form (see [`request_hash`]).
    pub hash: [u8; 32],
}

/// Who asked, and how to answer them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCtx {
    pub operation: Operation,
    pub psp: PspRef,
    /// The caller broker's `FAULT_BEAN_ESTESO`.
    pub extended_faults: bool,
    pub idem: Option<IdemCtx>,
}

/// The hash of a request: SHA-256 of its canonical serialization without the password's
/// content, so two requests differing in anything else (an optional element present or not, a
/// value) differ, and formatting does not. The password stays out so that the cache holds
/// nothing to guess it from: the official node hashes the whole request (official BDD tests
/// `IDMP_ACT_5_2`, `SEM_APNR_20`), where a different password makes a different request; here
/// a request is authenticated before the cache is consulted, so a wrong password never reaches
/// it, and a right one is the same request (docs/decisions.md, "Idempotency").
pub fn request_hash<M: Message>(m: &M) -> [u8; 32] {
    let canonical = write_envelope(m);
    let mut hash = Sha256::new();
    // The writer escapes `<` in text: the first `<password>` is the element, its content ends
    // at the next `<`.
    match canonical.split_once("<password>") {
        Some((before, rest)) => {
            hash.update(before.as_bytes());
            hash.update(b"<password>");
            hash.update(&rest.as_bytes()[rest.find('<').unwrap_or(rest.len())..]);
        }
        None => hash.update(canonical.as_bytes()),
    }
    hash.finalize().into()
}

/// What the idempotency cache says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemCheck {
    /// No valid entry: process the request.
    Fresh,
    /// The same request was answered: send this again. `unconfirmed`: the entry was written
    /// recently and its commit may not be durable yet; the answer it repeats acknowledges that
    /// commit, so it may be sent only once everything queued before is durable.
    Replay { reply: Reply, unconfirmed: bool },
    /// The key was used for a different request.
    Mismatch,
}

const MINUTE_MS: u64 = 60_000;

/// What the engine remembers of an entry it wrote or deleted recently (the store may not have
/// the change yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recent {
    Entry(IdemEntry),
    /// The entry cached for this token was deleted.
    Deleted(PaymentToken),
}

impl Engine {
    /// Looks the request up: entries written recently (maybe not yet committed) first, then the
    /// one the driver read from the store.
    pub fn check_idempotency(
        &self,
        idem: &IdemCtx,
        stored: Option<IdemEntry>,
        now: Millis,
    ) -> IdemCheck {
        let (entry, unconfirmed) = match self.recent_idem.get(&idem.key) {
            Some((_, Recent::Entry(e))) => (Some(e.clone()), true),
            // Deleted meanwhile: the stored entry is gone too, unless it is another token's.
            Some((_, Recent::Deleted(token))) => {
                (stored.filter(|e| e.token.as_ref() != Some(token)), false)
            }
            None => (stored, false),
        };
        match entry {
            Some(e) if e.valid_to > now => {
                if e.request_hash == idem.hash {
                    IdemCheck::Replay {
                        reply: e.reply,
                        unconfirmed,
                    }
                } else {
                    IdemCheck::Mismatch
                }
            }
            _ => IdemCheck::Fresh,
        }
    }

    /// What a request gets when an identical (or different) request with the same key was
    /// answered after the driver consulted the cache and before this command took the engine
    /// lock: a PSP re-sending while its first request is still being processed. The entry
    /// written meanwhile wins, so the twin gets the same answer and does not overwrite it with
    /// its own evaluation (e.g. `PPT_ESITO_GIA_ACQUISITO` in place of the accepted outcome).
    /// Any valid entry found here was written after the driver's check, which would otherwise
    /// have answered from it.
    pub(super) fn answered_meanwhile(&self, ctx: &RequestCtx, now: Millis) -> Option<Step> {
        let idem = ctx.idem.as_ref()?;
        match self.recent_idem.get(&idem.key) {
            Some((_, Recent::Entry(e))) if e.valid_to > now => {
                Some(if e.request_hash == idem.hash {
                    Step {
                        reply_after_queued: true,
                        ..Step::reply(e.reply.clone())
                    }
                } else {
                    self.idempotency_mismatch(ctx)
                })
            }
            _ => None,
        }
    }

    /// The answer to a key reused for another request: no side effects, nothing cached.
    pub fn idempotency_mismatch(&self, ctx: &RequestCtx) -> Step {
        Step::reply(Reply::ko(
            ctx.operation,
            &NodeFault::ErroreIdempotenza,
            ctx.extended_faults,
        ))
    }

    /// Refuses a request with `fault`: the KO reply, cached under the request's key.
    pub fn refuse(
        &mut self,
        ctx: &RequestCtx,
        fault: &NodeFault,
        timings: &Timings,
        now: Millis,
    ) -> Step {
        let reply = Reply::ko(ctx.operation, fault, ctx.extended_faults);
        let mut step = Step::default();
        let minutes = match ctx.operation {
            Operation::SendPaymentOutcome | Operation::SendPaymentOutcomeV2 => {
                timings.idempotency_outcome_minutes
            }
            _ => timings.idempotency_failure_minutes,
        };
        self.cache(ctx, &reply, None, now + minutes * MINUTE_MS, now, &mut step);
        step.reply = Some(reply);
        step
    }

    /// Caches `reply` under the request's key (if it has one).
    pub(super) fn cache(
        &mut self,
        ctx: &RequestCtx,
        reply: &Reply,
        token: Option<PaymentToken>,
        valid_to: Millis,
        now: Millis,
        step: &mut Step,
    ) {
        let Some(idem) = &ctx.idem else { return };
        // A key holds the first valid OK answer given under it (as the stores enforce): a
        // request with the same key that started before that answer was cached, and finished
        // after, keeps its own answer without taking the key.
        if let Some((_, Recent::Entry(held))) = self.recent_idem.get(&idem.key)
            && held.keeps_key_at(now)
        {
            return;
        }
        let entry = IdemEntry {
            key: idem.key.clone(),
            request_hash: idem.hash,
            reply: reply.clone(),
            token,
            valid_to,
            inserted_at: now,
        };
        step.writes.push(Write::PutIdempotency(entry.clone()));
        self.recent_idem
            .insert(idem.key.clone(), (now, Recent::Entry(entry)));
        self.recent_idem_order.push_back((now, idem.key.clone()));
    }

    /// Deletes the entry an activation cached, once its token has an outcome or expired
    /// (official BDD tests IDMP_SPO_08/09/10/19, IDMP_ACT_10). Only that entry: if the PSP has since reused the key for
    /// another request, the newer entry stays. A tombstone stays in memory until the deletion is
    /// surely committed.
    pub(super) fn uncache_activation(&mut self, p: &Payment, now: Millis, step: &mut Step) {
        let Some(key) = &p.idempotency_key else {
            return;
        };
        let key = IdemKey {
            psp: p.psp.id_psp.to_string(),
            key: key.to_string(),
            primitive: activate_primitive(p.psp_version),
        };
        let token = p.token.clone();
        let newer = matches!(self.recent_idem.get(&key), Some((_, Recent::Entry(e))) if e.token.as_ref() != Some(&token));
        if !newer {
            self.recent_idem
                .insert(key.clone(), (now, Recent::Deleted(token.clone())));
            self.recent_idem_order.push_back((now, key.clone()));
        }
        step.writes.push(Write::DeleteIdempotency { key, token });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::common::QrCode;
    use crate::codec::node_for_psp::ActivatePaymentNoticeReq;
    use crate::codec::types::{Amount, FiscalCode, NoticeNumber, Password, Text35};

    fn request(password: &str, cents: u64) -> ActivatePaymentNoticeReq {
        let t = |s: &str| Text35::new(s).unwrap();
        ActivatePaymentNoticeReq {
            id_psp: t("60000000001"),
            id_broker_psp: t("60000000001"),
            id_channel: t("60000000001_01"),
            password: Password::new(password).unwrap(),
            idempotency_key: None,
            qr_code: QrCode {
                fiscal_code: FiscalCode::new("77777777777").unwrap(),
                notice_number: NoticeNumber::new("302000100000009424").unwrap(),
            },
            expiration_time: None,
            amount: Amount::from_cents(cents).unwrap(),
            due_date: None,
            payment_note: None,
        }
    }

    #[test]
    fn the_hash_holds_everything_but_the_password() {
        let h = request_hash(&request("pwdpwdpwd", 1000));
        assert_eq!(h, request_hash(&request("another1<&>", 1000)));
        assert_ne!(h, request_hash(&request("pwdpwdpwd", 1001)));
    }
}

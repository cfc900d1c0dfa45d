//! Validated values of the pagoPA simple types. Each newtype can only hold what its XSD type
//! allows, so a message built from them is valid by construction.

use std::fmt;

use base64::Engine as _;

use super::schema::{Content, Simple, check_length, check_xml_chars, collapse, collapse_runs};
use super::xml::{Violation, XmlReader, XmlWriter, any_byte};
use crate::xml_enum;

/// `xsd:string` restricted to `MIN..=MAX` characters (`stText35`, `stText140`, ...).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text<const MIN: usize, const MAX: usize>(String);

impl<const MIN: usize, const MAX: usize> Text<MIN, MAX> {
    /// Checks length (in characters) and that every character may appear in XML.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_length(&s, MIN, MAX)?;
        check_xml_chars(&s)?;
        Ok(Text(s))
    }

    /// Cuts `s` to at most `MAX` characters (for values the node composes from longer ones).
    /// Panics if the result would be shorter than `MIN`.
    pub fn truncated(s: &str) -> Self {
        let cut: String = s
            .chars()
            .filter(|&c| super::xml::is_xml_char(c))
            .take(MAX)
            .collect();
        Self::new(cut).expect("truncated text within bounds")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MIN: usize, const MAX: usize> Simple for Text<MIN, MAX> {
    fn parse(text: &str) -> Result<Self, String> {
        check_length(text, MIN, MAX)?;
        Ok(Text(text.to_string()))
    }
    fn write(&self, w: &mut XmlWriter) {
        w.text(&self.0)
    }
}

impl<const MIN: usize, const MAX: usize> std::ops::Deref for Text<MIN, MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MIN: usize, const MAX: usize> fmt::Debug for Text<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MIN: usize, const MAX: usize> fmt::Display for Text<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `stText16`.
pub type Text16 = Text<1, 16>;
/// `stText20` (`pspPartitaIVA`).
pub type Text20 = Text<1, 20>;
/// `stText35`, also `stIdPSP`, `stIdBroker`, `stIdChannel`.
pub type Text35 = Text<1, 35>;
/// `stText70`.
pub type Text70 = Text<1, 70>;
/// `stText140`.
pub type Text140 = Text<1, 140>;
/// `stText210`.
pub type Text210 = Text<1, 210>;
/// Unrestricted `xsd:string` (fault strings, `receiptId`).
pub type XsdString = Text<0, { usize::MAX }>;
/// `stIdentificativoServizio` / `stIdentificativoSoggettoServizio`: exactly 5 characters.
pub type ServiceCode = Text<5, 5>;
/// paForNode `stIBAN`: free text of 1..35 characters (looser than the PSP-side pattern).
pub type PaIban = Text<1, 35>;
/// `stEntityUniqueIdentifierValue`: 2..16 characters.
pub type EntityUniqueIdentifierValue = Text<2, 16>;

/// Implements `Simple` for a string newtype checked by `$check` (which gets the raw text).
macro_rules! checked_string {
    ($(#[$m:meta])* $name:ident, $check:expr) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok($name(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Simple for $name {
            fn parse(text: &str) -> Result<Self, String> {
                $name::new(text)
            }
            fn write(&self, w: &mut XmlWriter) {
                w.text(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        // Maps keyed by the value can be searched with a `&str` (hash and order are the text's).
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

fn ascii_digits(s: &str, n: usize, what: &str) -> Result<(), String> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "value '{s}' is not a {what} ({n} digits, pattern [0-9]{{{n}}})"
        ))
    }
}

checked_string!(
    /// `stFiscalCodePA`: the 11-digit fiscal code of a creditor entity.
    FiscalCode,
    |s| ascii_digits(s, 11, "fiscal code")
);

checked_string!(
    /// `stNoticeNumber`: the 18-digit notice number ("numero avviso"),
    /// `[auxDigit][segregation or application code][IUV base][check digits]`.
    NoticeNumber,
    |s| ascii_digits(s, 18, "notice number")
);

impl NoticeNumber {
    /// The aux digit (first digit): 0..3 in use; it decides how the rest is read.
    pub fn aux_digit(&self) -> u8 {
        self.0.as_bytes()[0] - b'0'
    }

    /// Digits 2-3: the segregation code (aux digit 3) or the application code (aux digit 0).
    pub fn routing_code(&self) -> &str {
        &self.0[1..3]
    }

    /// The IUV ("identificativo univoco di versamento") the notice carries: the 17 digits after
    /// the aux digit for aux 3 (segregation code + IUV base + check), else the last 15 digits
    /// (after aux digit and application code).
    pub fn iuv(&self) -> &str {
        if self.aux_digit() == 3 {
            &self.0[1..]
        } else {
            &self.0[3..]
        }
    }
}

checked_string!(
    /// `stPostalAccount`: a 12-digit postal account (verificaBollettino).
    PostalAccount,
    |s| ascii_digits(s, 12, "postal account")
);

checked_string!(
    /// `stPaymentToken`: 1..35 characters. The node issues 32 lowercase hex digits.
    PaymentToken,
    |s| check_length(s, 1, 35).and_then(|_| check_xml_chars(s))
);

checked_string!(
    /// `stIdempotencyKey`: `[a-zA-Z0-9]{2,18}_[a-zA-Z0-9]{10}` (SANP 3.9.0 pattern).
    IdempotencyKey,
    |s| {
        let ok = s.split_once('_').is_some_and(|(p, r)| {
            (2..=18).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_alphanumeric())
                && r.len() == 10
                && r.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if ok {
            Ok(())
        } else {
            Err(format!("value '{s}' does not match pattern [a-zA-Z0-9]{{2,18}}_[a-zA-Z0-9]{{10}}"))
        }
    }
);

checked_string!(
    /// nodeForPsp `stIBAN`: `[a-zA-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}`.
    Iban,
    |s| {
        let b = s.as_bytes();
        let ok = (5..=34).contains(&b.len())
            && b[..2].iter().all(u8::is_ascii_alphabetic)
            && b[2..4].iter().all(u8::is_ascii_digit)
            && b[4..].iter().all(u8::is_ascii_alphanumeric);
        if ok { Ok(()) } else { Err(format!("value '{s}' does not match pattern [a-zA-Z]{{2}}[0-9]{{2}}[a-zA-Z0-9]{{1,30}}")) }
    }
);

checked_string!(
    /// `stNazioneProvincia`: two upper-case ASCII letters (country or province code).
    CountryCode,
    |s| {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(())
        } else {
            Err(format!("value '{s}' does not match pattern [A-Z]{{2}}"))
        }
    }
);

checked_string!(
    /// `stEMail`: `[a-zA-Z0-9_\.\+\-]+@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*`, at most 256 characters.
    Email,
    |s| {
        check_length(s, 0, 256)?;
        let local_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
        let label_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let ok = s.split_once('@').is_some_and(|(l, d)| local_ok(l) && d.split('.').all(label_ok));
        if ok { Ok(()) } else { Err(format!("value '{s}' is not an e-mail address as stEMail defines it")) }
    }
);

/// `stPassword`: 8..15 characters. Never printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_length(&s, 8, 15)?;
        check_xml_chars(&s)?;
        Ok(Password(s))
    }

    /// The secret, for comparison (in constant time, by the registry) and for writing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Read as a secret: the reader keeps where the value lies, so that the journal can store the
/// request without it ([`super::mask`]).
impl Content for Password {
    fn read(r: &mut XmlReader<'_>) -> Result<Self, Violation> {
        let text = r.read_secret_text()?;
        // The length is reported, the value never.
        check_length(&text, 8, 15).map_err(|e| r.invalid(format!("password {e}")))?;
        let password = Password(text.into_owned());
        r.close_simple();
        Ok(password)
    }
    fn write(&self, w: &mut XmlWriter) {
        w.text(&self.0)
    }
}

/// Parses an `xsd:decimal` lexical value restricted by the pagoPA amount pattern `\d+\.\d{2}`
/// into cents. Whitespace is collapsed first, as for every decimal.
fn parse_amount_cents(text: &str) -> Result<u64, String> {
    let v = collapse(text);
    let bad = || {
        format!("value '{v}' is not an amount with exactly two decimals (pattern \\d+\\.\\d{{2}})")
    };
    let (int, frac) = v.split_once('.').ok_or_else(bad)?;
    if int.is_empty()
        || frac.len() != 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    if int.len() > 9 {
        return Err(format!("value '{v}' exceeds the maximum 999999999.99"));
    }
    let units: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    Ok(units * 100 + frac.parse::<u64>().map_err(|_| bad())?)
}

const MAX_CENTS: u64 = 99_999_999_999;

fn write_cents(cents: u64, w: &mut XmlWriter) {
    w.raw(&itoa_cents(cents));
}

fn itoa_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `stAmount`: 0.00..=999999999.99 with exactly two decimals, held as integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn from_cents(cents: u64) -> Result<Self, String> {
        if cents > MAX_CENTS {
            Err(format!("amount {cents} cents exceeds 999999999.99"))
        } else {
            Ok(Amount(cents))
        }
    }

    pub fn cents(self) -> u64 {
        self.0
    }

    /// Checked sum: `None` past the schema maximum.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        Amount::from_cents(self.0.checked_add(other.0)?).ok()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&itoa_cents(self.0))
    }
}

impl Simple for Amount {
    fn parse(text: &str) -> Result<Self, String> {
        parse_amount_cents(text).map(Amount)
    }
    fn write(&self, w: &mut XmlWriter) {
        write_cents(self.0, w)
    }
}

/// `stAmountNotZero`: 0.01..=999999999.99 with exactly two decimals, held as integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AmountNotZero(u64);

impl AmountNotZero {
    pub fn from_cents(cents: u64) -> Result<Self, String> {
        if cents == 0 {
            Err("amount 0.00 is below the minimum 0.01".into())
        } else if cents > MAX_CENTS {
            Err(format!("amount {cents} cents exceeds 999999999.99"))
        } else {
            Ok(AmountNotZero(cents))
        }
    }

    pub fn cents(self) -> u64 {
        self.0
    }

    pub fn amount(self) -> Amount {
        Amount(self.0)
    }
}

impl TryFrom<Amount> for AmountNotZero {
    type Error = String;
    fn try_from(a: Amount) -> Result<Self, String> {
        AmountNotZero::from_cents(a.0)
    }
}

impl fmt::Display for AmountNotZero {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&itoa_cents(self.0))
    }
}

impl Simple for AmountNotZero {
    fn parse(text: &str) -> Result<Self, String> {
        let cents = parse_amount_cents(text)?;
        if cents == 0 {
            return Err(format!(
                "value '{}' is below the minimum 0.01",
                collapse(text)
            ));
        }
        Ok(AmountNotZero(cents))
    }
    fn write(&self, w: &mut XmlWriter) {
        write_cents(self.0, w)
    }
}

/// Parses an `xsd:integer` lexical value (`[+-]?[0-9]+` after collapsing whitespace).
/// Returns (negative, digits without leading zeros).
fn integer_lexical(text: &str) -> Result<(bool, &str), String> {
    let v = collapse(text);
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("value '{v}' is not an integer"));
    }
    let digits = digits.trim_start_matches('0');
    Ok((neg && !digits.is_empty(), digits))
}

/// Parses an `xsd:int` (32-bit) value.
fn parse_int(text: &str) -> Result<i32, String> {
    let (neg, digits) = integer_lexical(text)?;
    let mag: i64 = if digits.is_empty() {
        0
    } else if digits.len() > 10 {
        return Err(format!(
            "value '{}' is out of the range of xsd:int",
            collapse(text)
        ));
    } else {
        digits.parse().map_err(|_| "not an integer".to_string())?
    };
    let v = if neg { -mag } else { mag };
    i32::try_from(v)
        .map_err(|_| format!("value '{}' is out of the range of xsd:int", collapse(text)))
}

impl Simple for i32 {
    fn parse(text: &str) -> Result<Self, String> {
        parse_int(text)
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.to_string())
    }
}

impl Simple for bool {
    fn parse(text: &str) -> Result<Self, String> {
        match collapse(text) {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            v => Err(format!("value '{v}' is not a boolean (true, false, 1, 0)")),
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(if *self { "true" } else { "false" })
    }
}

/// `stIdTransfer`: an `xsd:int` enumerated 1..5 (a value check: `01` and `+1` are valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdTransfer(u8);

impl IdTransfer {
    pub fn new(n: u8) -> Result<Self, String> {
        if (1..=5).contains(&n) {
            Ok(IdTransfer(n))
        } else {
            Err(format!("idTransfer {n} is not in 1..5"))
        }
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Simple for IdTransfer {
    fn parse(text: &str) -> Result<Self, String> {
        let v = parse_int(text)?;
        if (1..=5).contains(&v) {
            Ok(IdTransfer(v as u8))
        } else {
            Err(format!(
                "value '{}' is not one of 1, 2, 3, 4, 5",
                collapse(text)
            ))
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.0.to_string())
    }
}

/// `stExpirationTime`: an `xsd:integer` of milliseconds, at most 1800000, no lower bound in the
/// schema (the engine refuses values that are not positive). Values below `i64::MIN` saturate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpirationTime(i64);

impl ExpirationTime {
    pub const MAX_MS: i64 = 1_800_000;

    pub fn from_millis(ms: i64) -> Result<Self, String> {
        if ms > Self::MAX_MS {
            Err(format!("expirationTime {ms} exceeds the maximum 1800000"))
        } else {
            Ok(ExpirationTime(ms))
        }
    }
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl Simple for ExpirationTime {
    fn parse(text: &str) -> Result<Self, String> {
        let (neg, digits) = integer_lexical(text)?;
        let too_big = || format!("value '{}' exceeds the maximum 1800000", collapse(text));
        if digits.len() > 18 {
            return if neg {
                Ok(ExpirationTime(i64::MIN))
            } else {
                Err(too_big())
            };
        }
        let mag: i64 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| too_big())?
        };
        let v = if neg { -mag } else { mag };
        if v > Self::MAX_MS {
            Err(too_big())
        } else {
            Ok(ExpirationTime(v))
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.0.to_string())
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

fn two_digits(s: &[u8]) -> Option<u32> {
    (s.len() == 2 && s.iter().all(u8::is_ascii_digit))
        .then(|| ((s[0] - b'0') * 10 + (s[1] - b'0')) as u32)
}

/// Parses `-?YYYY-MM-DD` at the start of `s`; returns (year, month, day, rest).
fn parse_date_part(s: &str) -> Option<(i64, u32, u32, &str)> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ylen = body.bytes().take_while(u8::is_ascii_digit).count();
    if ylen < 4 || (ylen > 4 && body.starts_with('0')) || ylen > 12 {
        return None;
    }
    let year: i64 = body[..ylen].parse().ok()?;
    if year == 0 {
        return None;
    }
    let rest = &body.as_bytes()[ylen..];
    if rest.len() < 6 || rest[0] != b'-' || rest[3] != b'-' {
        return None;
    }
    let month = two_digits(&rest[1..3])?;
    let day = two_digits(&rest[4..6])?;
    let year = if neg { -year } else { year };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some((year, month, day, &body[ylen + 6..]))
}

/// Checks an optional timezone suffix: `Z` or `(+|-)hh:mm` within ±14:00.
fn valid_timezone(tz: &str) -> bool {
    if tz.is_empty() || tz == "Z" {
        return true;
    }
    let b = tz.as_bytes();
    if b.len() != 6 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
        return false;
    }
    match (two_digits(&b[1..3]), two_digits(&b[4..6])) {
        (Some(h), Some(m)) => m < 60 && h * 60 + m <= 14 * 60,
        _ => false,
    }
}

/// `stISODate` (`xsd:date`): `YYYY-MM-DD` with an optional timezone; kept in its lexical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IsoDate(String);

impl IsoDate {
    pub fn from_naive(d: chrono::NaiveDate) -> Self {
        IsoDate(d.format("%Y-%m-%d").to_string())
    }

    /// The calendar date, ignoring any timezone suffix.
    pub fn naive(&self) -> chrono::NaiveDate {
        let (y, m, d, _) = parse_date_part(&self.0).expect("validated date");
        chrono::NaiveDate::from_ymd_opt(y as i32, m, d).unwrap_or(chrono::NaiveDate::MIN)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Simple for IsoDate {
    fn parse(text: &str) -> Result<Self, String> {
        let v = collapse(text);
        match parse_date_part(v) {
            Some((_, _, _, tz)) if valid_timezone(tz) => Ok(IsoDate(v.to_string())),
            _ => Err(format!("value '{v}' is not a valid xsd:date (YYYY-MM-DD)")),
        }
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.0)
    }
}

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `xsd:dateTime` (`stISODateTime`, `retentionDate`): `YYYY-MM-DDThh:mm:ss[.f+][tz]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IsoDateTime(String);

impl IsoDateTime {
    /// A UTC timestamp with millisecond precision and no timezone suffix, as the node writes them.
    pub fn from_utc(t: chrono::DateTime<chrono::Utc>) -> Self {
        IsoDateTime(t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Simple for IsoDateTime {
    fn parse(text: &str) -> Result<Self, String> {
        let v = collapse(text);
        let bad = || format!("value '{v}' is not a valid xsd:dateTime (YYYY-MM-DDThh:mm:ss)");
        let (_, _, _, rest) = parse_date_part(v).ok_or_else(bad)?;
        let b = rest.as_bytes();
        if b.len() < 9 || b[0] != b'T' || b[3] != b':' || b[6] != b':' {
            return Err(bad());
        }
        let (h, m, s) = match (
            two_digits(&b[1..3]),
            two_digits(&b[4..6]),
            two_digits(&b[7..9]),
        ) {
            (Some(h), Some(m), Some(s)) => (h, m, s),
            _ => return Err(bad()),
        };
        let mut tail = &rest[9..];
        let mut frac_zero = true;
        if let Some(f) = tail.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(bad());
            }
            frac_zero = f[..n].bytes().all(|b| b == b'0');
            tail = &f[n..];
        }
        // 24:00:00 is the end of the day in XSD 1.0; every other time must be a real one.
        let time_ok = (h < 24 && m < 60 && s < 60) || (h == 24 && m == 0 && s == 0 && frac_zero);
        if !time_ok || !valid_timezone(tail) {
            return Err(bad());
        }
        Ok(IsoDateTime(v.to_string()))
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.0)
    }
}

impl fmt::Display for IsoDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes `xsd:base64Binary` strictly: whitespace is ignored, everything else must be
/// canonical base64 with correct padding and zero trailing bits.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String;
    // Vectorized: base64 values run to kilobytes, and are mostly without whitespace.
    let v = if any_byte(text.as_bytes(), |b| {
        (b == b' ') | (b == b'\t') | (b == b'\n') | (b == b'\r')
    }) {
        compact = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
            .collect();
        compact.as_str()
    } else {
        text
    };
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|e| format!("not valid base64: {e}"))
}

/// Encodes bytes as canonical base64 (no line breaks).
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `xsd:base64Binary`: the decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Base64Binary(pub Vec<u8>);

impl Simple for Base64Binary {
    fn parse(text: &str) -> Result<Self, String> {
        decode_base64(text).map(Base64Binary)
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&encode_base64(&self.0))
    }
}

/// `stBase64Binary72` (`hashDocumento`): base64 whose collapsed lexical form is 4..72 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashDocumento(String);

impl HashDocumento {
    pub fn new(lexical: &str) -> Result<Self, String> {
        <Self as Simple>::parse(lexical)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Simple for HashDocumento {
    fn parse(text: &str) -> Result<Self, String> {
        // base64Binary collapses whitespace: the pattern sees internal runs as one space.
        let v = collapse_runs(text);
        decode_base64(&v)?;
        check_length(&v, 4, 72).map_err(|e| format!("hashDocumento {e} (pattern .{{4,72}})"))?;
        Ok(HashDocumento(v.into_owned()))
    }
    fn write(&self, w: &mut XmlWriter) {
        w.raw(&self.0)
    }
}

xml_enum! {
    /// `stOutcome`.
    pub enum Outcome { Ok = "OK", Ko = "KO" }
}

xml_enum! {
    /// `stPaymentMethodFee` (activatePaymentNoticeV2 `paymentMethod`).
    pub enum PaymentMethodFee {
        Bbt = "BBT", Bp = "BP", Ad = "AD", Cp = "CP", Po = "PO", Obep = "OBEP", Jif = "JIF", Mybk = "MYBK", Ppal = "PPAL",
    }
}

xml_enum! {
    /// `stTouchpointFee` (activatePaymentNoticeV2 `touchPoint`).
    pub enum TouchpointFee {
        Io = "IO", Wisp = "WISP", Checkout = "CHECKOUT", Psp = "PSP", Atm = "ATM", Betting = "BETTING", Ts = "TS", Hb = "HB", Pos = "POS",
    }
}

xml_enum! {
    /// `stPaymentMethod` (sendPaymentOutcome `details/paymentMethod`).
    pub enum PaymentMethod { Cash = "cash", CreditCard = "creditCard", Bancomat = "bancomat", Other = "other" }
}

xml_enum! {
    /// `stPaymentChannel`.
    pub enum PaymentChannel { FrontOffice = "frontOffice", Atm = "atm", OnLine = "onLine", App = "app", Other = "other" }
}

xml_enum! {
    /// `stEntityUniqueIdentifierType`: F natural person, G legal person.
    pub enum EntityUniqueIdentifierType { F = "F", G = "G" }
}

xml_enum! {
    /// `stAmountOption` / `stAmountOptionPSP`: how the payable amount relates to the option's.
    pub enum AmountOption { Eq = "EQ", Ls = "LS", Gt = "GT", Any = "ANY" }
}

xml_enum! {
    /// `stTransferType` (Poste Italiane only).
    pub enum TransferType { Postal = "POSTAL", Pagopa = "PAGOPA" }
}

xml_enum! {
    /// `stCommissione`.
    pub enum Commissione { Y = "Y", N = "N" }
}

xml_enum! {
    /// `stTipoBolloDigitale`.
    pub enum TipoBollo { Ordinario = "01" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_xsd() {
        for (s, c) in [
            ("10.00", 1000),
            ("010.00", 1000),
            (" 10.00 ", 1000),
            ("0.00", 0),
            ("999999999.99", MAX_CENTS),
            ("0000999999999.99", MAX_CENTS),
        ] {
            assert_eq!(Amount::parse(s).unwrap().cents(), c, "{s}");
        }
        for s in [
            "10",
            "10.5",
            "-1.00",
            "+1.00",
            "1,00",
            "10.123",
            "1000000000.00",
            ".50",
            "1.00e2",
            "",
            "1 0.00",
            "١.٠٠",
        ] {
            assert!(Amount::parse(s).is_err(), "{s}");
        }
        assert!(AmountNotZero::parse("0.00").is_err());
        assert!(AmountNotZero::parse("0.01").is_ok());
    }

    #[test]
    fn dates_follow_the_xsd() {
        for s in [
            "2030-12-31",
            "2030-12-31Z",
            "2030-12-31+01:00",
            "2024-02-29",
            " 2030-01-01 ",
            "-0001-01-01",
            "12345-01-01",
            "2030-01-01+14:00",
        ] {
            assert!(IsoDate::parse(s).is_ok(), "{s}");
        }
        for s in [
            "2030-13-01",
            "2023-02-29",
            "2030-1-01",
            "30-01-01",
            "0000-01-01",
            "2030-01-01+14:01",
            "2030-01-01T00:00:00",
            "02030-01-01",
            "",
        ] {
            assert!(IsoDate::parse(s).is_err(), "{s}");
        }
        for s in [
            "2030-01-15T10:20:30",
            "2030-01-15T10:20:30.123Z",
            "2030-01-15T10:20:30+01:00",
            "2030-01-15T24:00:00",
        ] {
            assert!(IsoDateTime::parse(s).is_ok(), "{s}");
        }
        for s in [
            "2030-01-15",
            "2030-01-15T10:20",
            "2030-01-15T25:00:00",
            "2030-01-15T10:20:30.",
            "2030-01-15T24:00:01",
        ] {
            assert!(IsoDateTime::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn integers_compare_by_value() {
        assert_eq!(IdTransfer::parse("01").unwrap().get(), 1);
        assert_eq!(IdTransfer::parse("+5").unwrap().get(), 5);
        assert!(IdTransfer::parse("6").is_err());
        assert!(IdTransfer::parse("1.0").is_err());
        assert_eq!(
            ExpirationTime::parse("-99999999999999999999999")
                .unwrap()
                .millis(),
            i64::MIN
        );
        assert!(ExpirationTime::parse("1800001").is_err());
        assert!(ExpirationTime::parse("0001800000").is_ok());
    }

    #[test]
    fn patterns() {
        assert!(IdempotencyKey::new("60000000001_a1B2c3D4e5").is_ok());
        assert!(IdempotencyKey::new("AGID_01_a1B2c3D4e5").is_err());
        assert!(Iban::new("IT60X0542811101000000123456").is_ok());
        assert!(Iban::new("IT60 X054").is_err());
        assert!(Email::new("a@b").is_ok());
        assert!(Email::new("a@b.").is_err());
        assert!(Text35::parse("").is_err());
        assert_eq!(
            NoticeNumber::new("302000100000009424").unwrap().iuv(),
            "02000100000009424"
        );
    }

    #[test]
    fn hash_documento_pattern_sees_the_collapsed_form() {
        let hash = "2yF7Xv1eN5Gq0m1kz6nX9gW8bq3kZ0y1cY5tJ2oH1aU=";
        let spread = format!("{}\n          {}", &hash[..22], &hash[22..]);
        assert_eq!(
            HashDocumento::parse(&spread).unwrap().as_str(),
            format!("{} {}", &hash[..22], &hash[22..])
        );
        assert!(HashDocumento::parse(&"QUJD".repeat(18)).is_ok());
        assert!(
            HashDocumento::parse(&format!("{} {}", "QUJD".repeat(9), "QUJD".repeat(9))).is_err()
        );
    }

    #[test]
    fn base64_is_strict() {
        assert!(decode_base64("QUJD").is_ok());
        assert!(decode_base64("QU JD\n").is_ok());
        for s in ["cia", "cia$", "%%%", "@@@@", "QR==", "QUJD="] {
            assert!(decode_base64(s).is_err(), "{s}");
        }
    }
}

//! The SOAP exchanges of the journal on disk: append-only segment files.
//!
//! Why files and not a database table: the node journals about ten rows of a few kilobytes per
//! payment, a row per request and per response. In SQLite each row was a B-tree insert plus two
//! index updates, and every byte was written twice (WAL, then checkpoint); with the journal on,
//! the load generator measured 3–30% fewer payments per second (11% typical). Here the thread
//! that saw the exchange encodes its rows into one buffer ([`Rows`]), and the journal writer
//! numbers them and appends them to the open segment with one `write` per batch: no index,
//! bytes written once.
//!
//! Layout: a directory `<stem>.journal/` beside the state database, holding segments
//! `<first id>.seg` (20 digits, so names sort as ids do). A segment is [`MAGIC`] then blocks,
//! one per batch the writer writes: `[stored length u32][raw length u32][CRC-32 of the stored
//! bytes u32][stored bytes]`, little-endian, the stored bytes being the LZ4 block compression
//! of the raw ones: records `[body length u32][CRC-32 of body u32][body]`, the body being the
//! row (see [`RowRef::encode`]). Compression is worth it here: consecutive rows are SOAP
//! messages that differ in a few values, and it shrinks what the disk must take beside the
//! state commits several times over. (Segments of format 1, records without blocks, are still
//! read.) A segment is sealed when it reaches [`SEGMENT_BYTES`] or spans [`SEGMENT_SPAN_MS`]:
//! its summary (ids, times, a Bloom filter of its keys) goes to `<first id>.idx`, so readers
//! skip segments that cannot match. Retention deletes whole segments. A torn block at the end
//! of the open segment (a crash in the middle of a write) is cut off when the writer reopens
//! it; readers stop at it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Category, Cursor, JournalEntry, JournalQuery, JournalRow, Subtype};
use crate::engine::Millis;

/// The first bytes of every segment written now (format version 2: compressed blocks).
pub const MAGIC: &[u8; 8] = b"PGNJRN02";
/// The first bytes of a segment of format version 1 (records straight after it, uncompressed):
/// still read, never written.
const MAGIC_V1: &[u8; 8] = b"PGNJRN01";
/// The first bytes of every segment summary.
const INDEX_MAGIC: &[u8; 8] = b"PGNJIX01";
/// A segment is sealed once it holds this many bytes (compressed)...
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// ... or this many lookup keys (its Bloom filter full: see [`BLOOM_BITS`])...
const SEGMENT_KEYS: u64 = BLOOM_BITS as u64 / BITS_PER_KEY;
/// ... or once its rows span this long (so retention can delete rows about when they expire).
pub const SEGMENT_SPAN_MS: Millis = 3_600_000;
/// Bytes before each body: its length and its CRC-32.
const FRAME: usize = 8;
/// Bytes before each block: its stored (compressed) length, its raw length, the CRC-32 of the
/// stored bytes.
const BLOCK_HEADER: usize = 12;
/// The writer closes a block once its raw rows reach this (one batch is normally far less: a
/// backlog after a disk stall is cut into blocks of this size)...
const BLOCK_RAW: usize = 4 << 20;
/// ... so a block claiming more than this is taken for damage, not allocated.
const BLOCK_RAW_MAX: usize = 256 << 20;
/// A body's fixed part: id, time, duration, category, subtype.
const FIXED: usize = 8 + 8 + 8 + 1 + 1;
/// The encoding of an absent text or duration.
const NONE_LEN: u32 = u32::MAX;
const NONE_DURATION: u64 = u64::MAX;
/// The Bloom filter of the open segment: sized for the keys of a full one ([`SEGMENT_KEYS`]:
/// some 50,000 rows, four keys each, about 180 MB of rows before compression). Sealing folds it
/// down to about [`BITS_PER_KEY`] bits per key (about 1% false positives with
/// [`BLOOM_HASHES`] hashes), so a quiet hour's segment does not carry a filter sized for a
/// busy one.
const BLOOM_BITS: usize = 1 << 21;
const BLOOM_MIN_BITS: usize = 1 << 10;
const BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u64 = 7;

/// One journal row, borrowed: what the payment path encodes and what readers decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub at: Millis,
    pub component: &'a str,
    pub category: Option<Category>,
    pub primitive: &'a str,
    pub subtype: Option<Subtype>,
    pub fiscal_code: Option<&'a str>,
    pub notice_number: Option<&'a str>,
    pub iuv: Option<&'a str>,
    pub token: Option<&'a str>,
    pub psp: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub station: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub caller: Option<&'a str>,
    pub callee: Option<&'a str>,
    pub payload: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub duration_ms: Option<u64>,
}

fn category_code(c: Option<Category>) -> u8 {
    match c {
        None => 0,
        Some(Category::Interface) => 1,
        Some(Category::Internal) => 2,
    }
}

fn subtype_code(s: Option<Subtype>) -> u8 {
    match s {
        None => 0,
        Some(Subtype::Req) => 1,
        Some(Subtype::Resp) => 2,
        Some(Subtype::Intern) => 3,
    }
}

impl<'a> RowRef<'a> {
    fn texts(&self) -> [Option<&'a str>; 14] {
        [
            Some(self.component),
            Some(self.primitive),
            self.fiscal_code,
            self.notice_number,
            self.iuv,
            self.token,
            self.psp,
            self.channel,
            self.station,
            self.outcome,
            self.caller,
            self.callee,
            self.payload,
            self.detail,
        ]
    }

    /// Appends the body: id, time, duration, category, subtype (fixed width), then each text
    /// as its length and bytes (length `u32::MAX`: absent).
    fn encode(&self, id: u64, out: &mut Vec<u8>) {
        let texts = self.texts();
        out.reserve(
            FIXED
                + texts
                    .iter()
                    .map(|t| 4 + t.map_or(0, str::len))
                    .sum::<usize>(),
        );
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&self.at.to_le_bytes());
        out.extend_from_slice(&self.duration_ms.unwrap_or(NONE_DURATION).to_le_bytes());
        out.push(category_code(self.category));
        out.push(subtype_code(self.subtype));
        for t in texts {
            match t {
                Some(t) => {
                    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
                None => out.extend_from_slice(&NONE_LEN.to_le_bytes()),
            }
        }
    }

    /// Reads a body written by [`RowRef::encode`]; `None` if it is not one.
    fn decode(body: &'a [u8]) -> Option<(u64, RowRef<'a>)> {
        let (fixed, mut rest) = body.split_at_checked(FIXED)?;
        let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
        let mut text = || -> Option<Option<&'a str>> {
            let (len, tail) = rest.split_at_checked(4)?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
            if len == NONE_LEN {
                rest = tail;
                return Some(None);
            }
            let (t, tail) = tail.split_at_checked(len as usize)?;
            rest = tail;
            Some(Some(std::str::from_utf8(t).ok()?))
        };
        let mut row = RowRef {
            at: u64_at(8),
            duration_ms: Some(u64_at(16)).filter(|&d| d != NONE_DURATION),
            category: match fixed[24] {
                0 => None,
                1 => Some(Category::Interface),
                2 => Some(Category::Internal),
                _ => return None,
            },
            subtype: match fixed[25] {
                0 => None,
                1 => Some(Subtype::Req),
                2 => Some(Subtype::Resp),
                3 => Some(Subtype::Intern),
                _ => return None,
            },
            component: text()??,
            primitive: text()??,
            ..RowRef::default()
        };
        for slot in [
            &mut row.fiscal_code,
            &mut row.notice_number,
            &mut row.iuv,
            &mut row.token,
            &mut row.psp,
            &mut row.channel,
            &mut row.station,
            &mut row.outcome,
            &mut row.caller,
            &mut row.callee,
            &mut row.payload,
            &mut row.detail,
        ] {
            *slot = text()?;
        }
        rest.is_empty().then_some((u64_at(0), row))
    }

    /// Whether the row passes the query's filters (all but the id).
    pub fn matches(&self, q: &JournalQuery) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        eq(&q.notice_number, self.notice_number)
            && eq(&q.fiscal_code, self.fiscal_code)
            && eq(&q.token, self.token)
            && eq(&q.psp, self.psp)
            && eq(&q.primitive, Some(self.primitive))
            && eq(&q.outcome, self.outcome)
            && q.from.is_none_or(|f| self.at >= f)
            && q.to.is_none_or(|t| self.at < t)
    }

    /// The keys a segment's Bloom filter holds: the ones queries look rows up by.
    fn keys(&self) -> impl Iterator<Item = (u8, &'a [u8])> {
        [
            (b'f', self.fiscal_code),
            (b'n', self.notice_number),
            (b't', self.token),
            (b'p', self.psp),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?.as_bytes())))
    }

    pub fn to_entry(&self) -> JournalEntry {
        let own = |v: Option<&str>| v.map(str::to_string);
        JournalEntry {
            at: self.at,
            component: self.component.to_string(),
            category: self.category,
            primitive: self.primitive.to_string(),
            subtype: self.subtype,
            fiscal_code: own(self.fiscal_code),
            notice_number: own(self.notice_number),
            iuv: own(self.iuv),
            token: own(self.token),
            psp: own(self.psp),
            channel: own(self.channel),
            station: own(self.station),
            outcome: own(self.outcome),
            caller: own(self.caller),
            callee: own(self.callee),
            payload: own(self.payload),
            detail: own(self.detail),
            duration_ms: self.duration_ms,
        }
    }
}

impl JournalEntry {
    pub fn as_row(&self) -> RowRef<'_> {
        RowRef {
            at: self.at,
            component: &self.component,
            category: self.category,
            primitive: &self.primitive,
            subtype: self.subtype,
            fiscal_code: self.fiscal_code.as_deref(),
            notice_number: self.notice_number.as_deref(),
            iuv: self.iuv.as_deref(),
            token: self.token.as_deref(),
            psp: self.psp.as_deref(),
            channel: self.channel.as_deref(),
            station: self.station.as_deref(),
            outcome: self.outcome.as_deref(),
            caller: self.caller.as_deref(),
            callee: self.callee.as_deref(),
            payload: self.payload.as_deref(),
            detail: self.detail.as_deref(),
            duration_ms: self.duration_ms,
        }
    }
}

/// Rows encoded by the thread that saw the exchange, in one buffer. Their ids and checksums
/// are left blank: the journal writer fills them in the order it writes (ids order the whole
/// journal, state changes included).
#[derive(Debug)]
pub struct Rows {
    buf: Vec<u8>,
    count: u64,
}

/// Buffers of written [`Rows`], kept for the next ones instead of freed: freed in bulk on the
/// writer thread, they made the allocator hand memory back to the kernel, and the payment path
/// then paid page faults (zeroed pages) to get it back.
static SPARE_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// At most this many spare buffers (what a few batches of a busy node use)...
const SPARE_MAX: usize = 4096;
/// ... none larger than this (a rare huge message's buffer is freed).
const SPARE_CAPACITY_MAX: usize = 64 << 10;

fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() > SPARE_CAPACITY_MAX {
        return;
    }
    if let Ok(mut spare) = SPARE_BUFFERS.lock()
        && spare.len() < SPARE_MAX
    {
        buf.clear();
        spare.push(buf);
    }
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::new()
    }
}

impl Rows {
    /// Empty rows, in a recycled buffer when there is one.
    pub fn new() -> Rows {
        let buf = SPARE_BUFFERS
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default();
        Rows { buf, count: 0 }
    }

    pub fn push(&mut self, row: &RowRef<'_>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME]);
        row.encode(0, &mut self.buf);
        let len = (self.buf.len() - start - FRAME) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    /// Passes each row to `each`, in order (a store that keeps the journal in a table).
    pub fn each<'a>(&'a self, mut each: impl FnMut(&RowRef<'a>)) {
        let mut at = 0;
        while let Some(frame) = self.buf.get(at..at + FRAME) {
            let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
            if let Some((_, row)) = self
                .buf
                .get(at + FRAME..at + FRAME + len)
                .and_then(RowRef::decode)
            {
                each(&row);
            }
            at += FRAME + len;
        }
    }

    /// The rows, decoded (for a store that keeps the journal in memory).
    pub fn entries(&self) -> Vec<JournalEntry> {
        let mut out = Vec::new();
        self.each(|row| out.push(row.to_entry()));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Gives the rows ids from `first_id` on and seals each with its checksum.
    fn number(&mut self, first_id: u64, summary: &mut Summary) {
        let mut at = 0;
        let mut id = first_id;
        while at < self.buf.len() {
            let len =
                u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let body = at + FRAME;
            self.buf[body..body + 8].copy_from_slice(&id.to_le_bytes());
            let crc = crc32fast::hash(&self.buf[body..body + len]);
            self.buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            if let Some((row_at, keys)) = summary_fields(&self.buf[body..body + len]) {
                summary.add(id, row_at, keys);
            }
            id += 1;
            at = body + len;
        }
    }
}

/// What a sealed segment holds, for readers to skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    first_id: u64,
    last_id: u64,
    count: u64,
    min_at: Millis,
    max_at: Millis,
    /// Keys added to the filter.
    keys: u64,
    /// A Bloom filter of the rows' keys; its length in bits is a power of two.
    bloom: Vec<u64>,
}

/// The time and the lookup keys ([`RowRef::keys`]) of a body the writer has just numbered: its
/// own encoding, so the texts are skipped over, not decoded (the messages are most of the bytes).
fn summary_fields(body: &[u8]) -> Option<(Millis, impl Iterator<Item = (u8, &[u8])>)> {
    let at = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    let mut rest = body.get(FIXED..)?;
    // Texts 0-6: component, primitive, fiscal code, notice number, IUV, token, PSP.
    let mut texts: [Option<&[u8]>; 7] = [None; 7];
    for text in &mut texts {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?);
        rest = tail;
        if len != NONE_LEN {
            let (t, tail) = rest.split_at_checked(len as usize)?;
            (*text, rest) = (Some(t), tail);
        }
    }
    let keys = [
        (b'f', texts[2]),
        (b'n', texts[3]),
        (b't', texts[5]),
        (b'p', texts[6]),
    ];
    Some((at, keys.into_iter().filter_map(|(k, v)| Some((k, v?)))))
}

/// The bit positions of a key in a filter of `bits` bits (a power of two). Positions are taken
/// modulo the size, so a filter folded in half (its halves OR-ed) still holds every key.
fn bloom_positions(kind: u8, key: &[u8], bits: usize) -> impl Iterator<Item = usize> {
    // Two 32-bit hashes combined (Kirsch–Mitzenmacher): enough for a filter.
    let h1 = crc32fast::hash(key) as u64;
    let mut h = crc32fast::Hasher::new_with_initial(0x9e37_79b9 ^ kind as u32);
    h.update(key);
    let h2 = (h.finalize() as u64) | 1;
    let mask = bits as u64 - 1;
    (0..BLOOM_HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
}

impl Summary {
    fn new(first_id: u64) -> Summary {
        Summary {
            first_id,
            // No row yet: nothing at or after `first_id`.
            last_id: first_id.saturating_sub(1),
            count: 0,
            min_at: Millis::MAX,
            max_at: 0,
            keys: 0,
            bloom: vec![0; BLOOM_BITS / 64],
        }
    }

    fn bits(&self) -> usize {
        self.bloom.len() * 64
    }

    fn add<'k>(&mut self, id: u64, at: Millis, keys: impl Iterator<Item = (u8, &'k [u8])>) {
        self.last_id = self.last_id.max(id);
        self.count += 1;
        self.min_at = self.min_at.min(at);
        self.max_at = self.max_at.max(at);
        let bits = self.bits();
        for (kind, key) in keys {
            self.keys += 1;
            for bit in bloom_positions(kind, key, bits) {
                self.bloom[bit / 64] |= 1 << (bit % 64);
            }
        }
    }

    /// Folds the filter down to the size its keys need.
    fn shrink(&mut self) {
        let want = (self.keys * BITS_PER_KEY)
            .next_power_of_two()
            .clamp(BLOOM_MIN_BITS as u64, BLOOM_BITS as u64) as usize;
        while self.bits() > want {
            let half = self.bloom.len() / 2;
            let (low, high) = self.bloom.split_at_mut(half);
            low.iter_mut().zip(high.iter()).for_each(|(l, h)| *l |= h);
            self.bloom.truncate(half);
        }
    }

    fn may_hold(&self, kind: u8, key: &str) -> bool {
        bloom_positions(kind, key.as_bytes(), self.bits())
            .all(|bit| self.bloom[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Whether a row matching `q` may be in the segment.
    fn may_match(&self, q: &JournalQuery) -> bool {
        self.count > 0
            && q.after.is_none_or(|c| self.max_at >= c.at)
            && q.from.is_none_or(|f| self.max_at >= f)
            && q.to.is_none_or(|t| self.min_at < t)
            && [
                (b'n', &q.notice_number),
                (b't', &q.token),
                (b'f', &q.fiscal_code),
                (b'p', &q.psp),
            ]
            .iter()
            .all(|(kind, key)| key.as_deref().is_none_or(|k| self.may_hold(*kind, k)))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56 + self.bloom.len() * 8 + 4);
        out.extend_from_slice(INDEX_MAGIC);
        for v in [
            self.first_id,
            self.last_id,
            self.count,
            self.min_at,
            self.max_at,
            self.keys,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for w in &self.bloom {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Summary> {
        let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
        let (head, bloom) = body.split_at_checked(56)?;
        let words = bloom.len() / 8;
        if crc32fast::hash(body).to_le_bytes() != crc
            || !head.starts_with(INDEX_MAGIC)
            || bloom.len() % 8 != 0
            || !words.is_power_of_two()
            || words * 64 < BLOOM_MIN_BITS
        {
            return None;
        }
        let word =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Summary {
            first_id: word(head, 8),
            last_id: word(head, 16),
            count: word(head, 24),
            min_at: word(head, 32),
            max_at: word(head, 40),
            keys: word(head, 48),
            bloom: (0..words).map(|i| word(bloom, i * 8)).collect(),
        })
    }
}

fn segment_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

fn index_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.idx"))
}

/// The segments of a journal directory, by first id (none if the directory does not exist).
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for e in entries {
        let name = e?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Passes each record of `buf` to `each`, in order, until a torn or damaged one or until
/// `each` returns false. Returns the bytes of the records read and whether `each` stopped.
fn records(buf: &[u8], each: &mut impl FnMut(u64, &RowRef<'_>) -> bool) -> (usize, bool) {
    let mut at = 0;
    while let Some(frame) = buf.get(at..at + FRAME) {
        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        let Some(body) = buf.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        let Some((id, row)) = (crc32fast::hash(body) == crc)
            .then(|| RowRef::decode(body))
            .flatten()
        else {
            break;
        };
        if !each(id, &row) {
            return (at, true);
        }
        at += FRAME + len;
    }
    (at, false)
}

/// Reads a segment's records in order, stopping at its end, at the first torn or damaged
/// block (or record), or when `each` returns false. Returns the offset where the sound part
/// of the segment ends (0 if it has not even its first bytes).
fn scan(path: &Path, mut each: impl FnMut(u64, &RowRef<'_>) -> bool) -> io::Result<u64> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0; 8];
    if r.read_exact(&mut magic).is_err() {
        // Created, its first bytes never written: a crash right after a rotation.
        return Ok(0);
    }
    if &magic == MAGIC_V1 {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        return Ok((MAGIC_V1.len() + records(&buf, &mut each).0) as u64);
    }
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a journal segment", path.display()),
        ));
    }
    let mut offset = MAGIC.len() as u64;
    let (mut stored, mut raw) = (Vec::new(), Vec::new());
    loop {
        let mut header = [0; BLOCK_HEADER];
        if r.read_exact(&mut header).is_err() {
            return Ok(offset);
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (stored_len, raw_len, crc) = (word(0) as usize, word(4) as usize, word(8));
        stored.clear();
        if raw_len > BLOCK_RAW_MAX
            || (&mut r).take(stored_len as u64).read_to_end(&mut stored)? != stored_len
            || crc32fast::hash(&stored) != crc
        {
            return Ok(offset);
        }
        raw.resize(raw_len, 0);
        if lz4_flex::block::decompress_into(&stored, &mut raw).ok() != Some(raw_len) {
            return Ok(offset);
        }
        match records(&raw, &mut each) {
            (read, false) if read == raw_len => offset += (BLOCK_HEADER + stored_len) as u64,
            _ => return Ok(offset),
        }
    }
}

/// A sealed segment's summary (its `.idx` file), if it has a sound one.
fn sealed_summary(dir: &Path, first_id: u64) -> Option<Summary> {
    fs::read(index_path(dir, first_id))
        .ok()
        .and_then(|b| Summary::from_bytes(&b))
}

/// A segment's summary, read from its rows.
fn summary_of_rows(dir: &Path, first_id: u64) -> io::Result<(Summary, u64)> {
    let mut s = Summary::new(first_id);
    let end = scan(&segment_path(dir, first_id), |id, row| {
        s.add(id, row.at, row.keys());
        true
    })?;
    Ok((s, end))
}

/// The first `q.limit` exchange rows matching `q` after `q.after`, in time order (then by id).
/// Rows are roughly in time order across segments, not exactly (each is numbered when it is
/// written, after the exchange), so every segment that may hold one is read, but a sealed one
/// whose rows all come after the page found so far is skipped by its summary.
pub fn query(dir: &Path, q: &JournalQuery) -> io::Result<Vec<JournalRow>> {
    let limit = q.limit.clamp(1, 10_000);
    let mut rows: Vec<JournalRow> = Vec::new();
    // Once `limit` rows are found, the last of them: nothing after it can be on the page.
    let mut bound: Option<Cursor> = None;
    let keep = |rows: &mut Vec<JournalRow>, bound: &mut Option<Cursor>| {
        rows.sort_unstable_by_key(Cursor::of);
        rows.truncate(limit);
        if rows.len() == limit {
            *bound = rows.last().map(Cursor::of);
        }
    };
    for first in segments(dir)? {
        if sealed_summary(dir, first)
            .is_some_and(|s| !s.may_match(q) || bound.is_some_and(|b| s.min_at > b.at))
        {
            continue;
        }
        let scanned = scan(&segment_path(dir, first), |id, row| {
            let place = Cursor {
                at: row.at,
                id: id as i64,
            };
            if q.after.is_none_or(|a| place > a)
                && bound.is_none_or(|b| place < b)
                && row.matches(q)
            {
                rows.push(JournalRow {
                    id: id as i64,
                    entry: row.to_entry(),
                });
                if rows.len() >= 2 * limit {
                    keep(&mut rows, &mut bound);
                }
            }
            true
        });
        match scanned {
            // Deleted by retention while we read: its rows are gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        };
        keep(&mut rows, &mut bound);
    }
    Ok(rows)
}

/// The journal writer's side of the segments. Not thread-safe: one writer thread owns it.
pub struct SegmentWriter {
    dir: PathBuf,
    open: Option<OpenSegment>,
    /// Rows numbered but not yet written: one block, one `write` per batch.
    pending: Vec<u8>,
    /// The block being written (kept for its capacity).
    block: Vec<u8>,
    /// Bytes written to segments since the writer was opened.
    written: u64,
}

struct OpenSegment {
    file: File,
    /// Bytes on disk (what a failed write is cut back to).
    size: u64,
    summary: Summary,
}

/// Starts writing a range of the file to the disk without waiting for it, so the periodic sync
/// finds little left to do: the disk gets the journal as a steady trickle instead of a burst
/// every second that state commits would queue behind.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor this `File` owns; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "journal: sync_file_range");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn starts_with(path: &Path, magic: &[u8; 8]) -> io::Result<bool> {
    let mut first = [0; 8];
    File::open(path)?.read_exact(&mut first)?;
    Ok(&first == magic)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SegmentWriter {
    /// Opens the journal directory (creating it), seals segments a crash left unsealed, and
    /// reopens the last one, cutting off a torn block at its end. Returns the writer and the
    /// highest id in the journal (0 if none).
    pub fn open(dir: &Path) -> io::Result<(SegmentWriter, u64)> {
        fs::create_dir_all(dir)?;
        // The directory may be new: its own name must be durable before any row in it can be
        // (syncing the directory's content does not make its entry in the parent durable).
        sync_dir(
            dir.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
        let ids = segments(dir)?;
        let mut w = SegmentWriter {
            dir: dir.to_path_buf(),
            open: None,
            pending: Vec::new(),
            block: Vec::new(),
            written: 0,
        };
        let mut last_id = 0;
        for (i, &first) in ids.iter().enumerate() {
            if let Some(s) = sealed_summary(dir, first) {
                last_id = last_id.max(s.last_id);
                continue;
            }
            let (summary, end) = summary_of_rows(dir, first)?;
            last_id = last_id.max(summary.last_id);
            let path = segment_path(dir, first);
            // A version 1 segment is sealed as it is: blocks are not appended to it.
            let current = end == 0 || starts_with(&path, MAGIC)?;
            let mut file = OpenOptions::new().append(true).open(&path)?;
            let size = if end == 0 {
                file.set_len(0)?;
                file.write_all(MAGIC)?;
                file.sync_all()?;
                MAGIC.len() as u64
            } else {
                if file.metadata()?.len() != end {
                    tracing::warn!(segment = %path.display(), keep = end, "journal: cutting off a torn tail");
                    file.set_len(end)?;
                    file.sync_all()?;
                }
                end
            };
            let seg = OpenSegment {
                file,
                size,
                summary,
            };
            if i + 1 == ids.len() && current {
                w.open = Some(seg);
            } else {
                w.seal(seg)?;
            }
        }
        Ok((w, last_id))
    }

    /// Numbers `rows` from `first_id` on and queues them for the next [`SegmentWriter::write`].
    /// Rotates first if the open segment is full or its rows span too long.
    pub fn append(&mut self, mut rows: Rows, first_id: u64) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let full = self.open.as_ref().is_some_and(|s| {
            s.size + self.pending.len() as u64 >= SEGMENT_BYTES
                || s.summary.keys >= SEGMENT_KEYS
                || s.summary.count > 0
                    && first_at(&rows).saturating_sub(s.summary.min_at) >= SEGMENT_SPAN_MS
        });
        if full {
            self.write()?;
            if let Some(seg) = self.open.take() {
                self.seal(seg)?;
            }
        }
        if self.open.is_none() {
            let path = segment_path(&self.dir, first_id);
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            file.write_all(MAGIC)?;
            sync_dir(&self.dir)?;
            self.open = Some(OpenSegment {
                file,
                size: MAGIC.len() as u64,
                summary: Summary::new(first_id),
            });
        }
        let seg = self.open.as_mut().expect("a segment is open");
        rows.number(first_id, &mut seg.summary);
        self.pending.extend_from_slice(&rows.buf);
        recycle(rows.buf);
        if self.pending.len() >= BLOCK_RAW {
            self.write()?;
        }
        Ok(())
    }

    /// Writes the queued rows as one compressed block (to the page cache: see
    /// [`SegmentWriter::sync`]). On failure the segment is cut back to its last whole block and
    /// the queued rows are dropped.
    pub fn write(&mut self) -> io::Result<()> {
        let Some(seg) = self.open.as_mut() else {
            self.pending.clear();
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        // The rows are mostly SOAP messages, alike from one payment to the next: compressed,
        // they take several times fewer bytes to copy and to put on the disk, where they
        // would otherwise compete with the state commits' syncs.
        let block = &mut self.block;
        block.clear();
        block.resize(
            BLOCK_HEADER + lz4_flex::block::get_maximum_output_size(self.pending.len()),
            0,
        );
        let stored = lz4_flex::block::compress_into(&self.pending, &mut block[BLOCK_HEADER..]);
        let result = stored.map_err(io::Error::other).and_then(|stored| {
            block.truncate(BLOCK_HEADER + stored);
            let crc = crc32fast::hash(&block[BLOCK_HEADER..]);
            block[..4].copy_from_slice(&(stored as u32).to_le_bytes());
            block[4..8].copy_from_slice(&(self.pending.len() as u32).to_le_bytes());
            block[8..12].copy_from_slice(&crc.to_le_bytes());
            seg.file.write_all(block)
        });
        match result {
            Ok(()) => {
                start_writeback(&seg.file, seg.size, block.len() as u64);
                seg.size += block.len() as u64;
                self.written += block.len() as u64;
            }
            Err(_) => {
                if seg.file.set_len(seg.size).is_err() {
                    // Cannot cut it back: the rest of this segment is unreadable after the torn
                    // record, so the next rows start a new one.
                    self.open = None;
                }
            }
        }
        self.pending.clear();
        result
    }

    /// Bytes written to segments since the writer was opened.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Makes the written rows durable.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.open {
            Some(seg) => seg.file.sync_data(),
            None => Ok(()),
        }
    }

    /// Closes a segment for good: its bytes and its summary durable.
    fn seal(&mut self, mut seg: OpenSegment) -> io::Result<()> {
        seg.file.sync_all()?;
        seg.summary.shrink();
        let first = seg.summary.first_id;
        let tmp = self.dir.join(format!("{first:020}.idx.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&seg.summary.to_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, index_path(&self.dir, first))?;
        sync_dir(&self.dir)
    }

    /// Deletes the segments whose rows are all older than `before` (retention works in whole
    /// segments: a row goes at most [`SEGMENT_SPAN_MS`] after its time). Returns how many.
    pub fn retain(&mut self, before: Millis) -> io::Result<usize> {
        self.write()?;
        if self
            .open
            .as_ref()
            .is_some_and(|s| s.summary.count > 0 && s.summary.max_at < before)
            && let Some(seg) = self.open.take()
        {
            self.seal(seg)?;
        }
        let open = self.open.as_ref().map(|s| s.summary.first_id);
        let mut deleted = 0;
        for first in segments(&self.dir)? {
            if Some(first) == open {
                continue;
            }
            let max_at = match sealed_summary(&self.dir, first) {
                Some(s) => s.max_at,
                None => summary_of_rows(&self.dir, first)?.0.max_at,
            };
            if max_at < before {
                fs::remove_file(segment_path(&self.dir, first))?;
                let _ = fs::remove_file(index_path(&self.dir, first));
                deleted += 1;
            }
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

/// The time of the first of `rows` (a body's second field), read without decoding the row.
fn first_at(rows: &Rows) -> Millis {
    rows.buf
        .get(FRAME + 8..FRAME + 16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> JournalEntry {
        JournalEntry {
            at: 1_700_000_000_000 + i,
            component: "nodeForPsp".into(),
            category: Some(Category::Interface),
            primitive: "activatePaymentNotice".into(),
            subtype: Some(if i.is_multiple_of(2) {
                Subtype::Req
            } else {
                Subtype::Resp
            }),
            notice_number: Some(format!("3{:017}", i / 2)),
            token: i.is_multiple_of(3).then(|| format!("tok{i}")),
            payload: Some(format!("<x>{i}</x>")),
            duration_ms: (i % 2 == 1).then_some(i),
            ..JournalEntry::default()
        }
    }

    /// Writes rows `from..from + n`, a block each (as batches of one row).
    fn write_rows(w: &mut SegmentWriter, from: u64, n: u64) {
        for i in from..from + n {
            let mut rows = Rows::default();
            rows.push(&row(i).as_row());
            w.append(rows, i).unwrap();
            w.write().unwrap();
        }
    }

    /// Every row, page after page.
    fn all(dir: &Path) -> Vec<JournalRow> {
        let mut rows: Vec<JournalRow> = Vec::new();
        loop {
            let q = JournalQuery {
                after: rows.last().map(Cursor::of),
                limit: 10_000,
                ..JournalQuery::default()
            };
            let page = query(dir, &q).unwrap();
            if page.is_empty() {
                return rows;
            }
            rows.extend(page);
        }
    }

    #[test]
    fn rows_round_trip_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, last) = SegmentWriter::open(dir.path()).unwrap();
        assert_eq!(last, 0);
        write_rows(&mut w, 1, 50);
        let rows = all(dir.path());
        assert_eq!(rows.len(), 50);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.id, i as i64 + 1);
            assert_eq!(r.entry, row(i as u64 + 1));
        }
    }

    #[test]
    fn queries_filter_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        write_rows(&mut w, 1, 100);
        let notice = row(40).notice_number;
        let q = JournalQuery {
            notice_number: notice.clone(),
            limit: 10,
            ..JournalQuery::default()
        };
        let hits = query(dir.path(), &q).unwrap();
        assert_eq!(hits.iter().map(|r| r.id).collect::<Vec<_>>(), [40, 41]);
        let page = query(
            dir.path(),
            &JournalQuery {
                after: Some(Cursor {
                    at: row(95).at,
                    id: 95,
                }),
                limit: 3,
                ..JournalQuery::default()
            },
        )
        .unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [96, 97, 98]);
        let timed = query(
            dir.path(),
            &JournalQuery {
                from: Some(row(10).at),
                to: Some(row(12).at),
                limit: 100,
                ..JournalQuery::default()
            },
        )
        .unwrap();
        assert_eq!(timed.iter().map(|r| r.id).collect::<Vec<_>>(), [10, 11]);
    }

    /// A journal directory holding rows 1..=n in one segment, closed; and that segment.
    fn closed_segment(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        write_rows(&mut w, 1, n);
        drop(w);
        let seg = segment_path(dir.path(), 1);
        (dir, seg)
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_writing_goes_on() {
        let (dir, seg) = closed_segment(10);
        let len = fs::metadata(&seg).unwrap().len();
        // Half of a last block: what a crash in the middle of a write leaves.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        assert_eq!(all(dir.path()).len(), 9, "readers stop at the torn block");
        let (mut w, last) = SegmentWriter::open(dir.path()).unwrap();
        assert_eq!(last, 9);
        write_rows(&mut w, 10, 5);
        let ids: Vec<i64> = all(dir.path()).iter().map(|r| r.id).collect();
        assert_eq!(ids, (1..=14).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_is_one_compressed_block_and_a_backlog_several() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        let message = |i: u64| {
            format!(
                "<soapenv:Envelope><soapenv:Body><nfp:activatePaymentNoticeV2Response><outcome>OK</outcome>\
                 <totalAmount>{i}.00</totalAmount><paymentToken>{i:032x}</paymentToken>\
                 </nfp:activatePaymentNoticeV2Response></soapenv:Body></soapenv:Envelope>"
            )
        };
        let (mut raw, mut id) = (0, 1);
        // More than a block's worth of rows in one batch: a backlog.
        while raw < 2 * BLOCK_RAW + BLOCK_RAW / 2 {
            let mut rows = Rows::default();
            let payload = message(id);
            rows.push(&RowRef {
                payload: Some(&payload),
                ..row(id).as_row()
            });
            raw += rows.buf.len();
            w.append(rows, id).unwrap();
            id += 1;
        }
        w.write().unwrap();
        drop(w);
        let rows = all(dir.path());
        assert_eq!(rows.len() as u64, id - 1);
        assert_eq!(
            rows[99].entry.payload.as_deref(),
            Some(message(100).as_str())
        );
        let stored = fs::metadata(segment_path(dir.path(), 1)).unwrap().len() as usize;
        assert!(
            stored * 4 < raw,
            "{raw} bytes of rows took {stored} on disk"
        );
        // Three blocks: two full ones and the rest.
        let (mut blocks, mut at, bytes) = (
            0,
            MAGIC.len(),
            fs::read(segment_path(dir.path(), 1)).unwrap(),
        );
        while at < bytes.len() {
            let stored = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let raw = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            assert!(raw < BLOCK_RAW + 4096);
            (blocks, at) = (blocks + 1, at + BLOCK_HEADER + stored);
        }
        assert_eq!(blocks, 3);
    }

    #[test]
    fn a_segment_whose_bloom_filter_is_full_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        // Rows with all four keys, in batches, until the filter of the first segment is full:
        // tiny rows, so neither the size nor the time span is what seals it.
        let (keyed, batch) = (
            |i: u64| JournalEntry {
                fiscal_code: Some("77777777777".into()),
                psp: Some("60000000001".into()),
                token: Some(format!("tok{i}")),
                ..row(i)
            },
            1_000,
        );
        let mut id = 1;
        while id <= SEGMENT_KEYS / 4 + batch {
            let mut rows = Rows::default();
            for i in id..id + batch {
                rows.push(&keyed(i).as_row());
            }
            w.append(rows, id).unwrap();
            w.write().unwrap();
            id += batch;
        }
        let sealed = sealed_summary(dir.path(), 1).expect("the first segment sealed");
        assert!(sealed.keys >= SEGMENT_KEYS && sealed.keys < SEGMENT_KEYS + 4 * batch);
        assert_eq!(segments(dir.path()).unwrap(), [1, sealed.last_id + 1]);
        assert!(fs::metadata(segment_path(dir.path(), 1)).unwrap().len() < SEGMENT_BYTES);
        assert_eq!(all(dir.path()).len() as u64, id - 1);
    }

    #[test]
    fn a_version_1_segment_is_read_and_sealed_and_writing_goes_on_in_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = MAGIC_V1.to_vec();
        let mut summary = Summary::new(1);
        for i in 1..=3 {
            let mut rows = Rows::default();
            rows.push(&row(i).as_row());
            rows.number(i, &mut summary);
            v1.extend_from_slice(&rows.buf);
        }
        fs::write(segment_path(dir.path(), 1), v1).unwrap();
        assert_eq!(all(dir.path()).len(), 3);
        let (mut w, last) = SegmentWriter::open(dir.path()).unwrap();
        assert_eq!(last, 3);
        assert!(sealed_summary(dir.path(), 1).is_some());
        write_rows(&mut w, 4, 2);
        assert_eq!(segments(dir.path()).unwrap(), [1, 4]);
        let ids: Vec<i64> = all(dir.path()).iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_damaged_block_ends_the_readable_segment() {
        let (dir, seg) = closed_segment(3);
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        assert_eq!(all(dir.path()).len(), 2);
    }

    #[test]
    fn sealed_segments_are_skipped_by_their_summary_and_retained_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        write_rows(&mut w, 1, 10);
        // Rows an hour later start a new segment.
        let mut later = row(11);
        later.at += SEGMENT_SPAN_MS;
        let mut rows = Rows::default();
        rows.push(&later.as_row());
        w.append(rows, 11).unwrap();
        w.write().unwrap();
        assert_eq!(segments(dir.path()).unwrap(), [1, 11]);
        let s = sealed_summary(dir.path(), 1).unwrap();
        assert_eq!((s.first_id, s.last_id, s.count), (1, 10, 10));
        assert!(s.may_hold(b'n', row(4).notice_number.as_deref().unwrap()));
        assert!(s.may_hold(b't', "tok3"), "tokens are keys too");
        assert!(!s.may_match(&JournalQuery {
            notice_number: Some("399999999999999999".into()),
            ..JournalQuery::default()
        }));
        assert_eq!(
            w.retain(row(10).at).unwrap(),
            0,
            "row 10 is not expired yet"
        );
        assert_eq!(w.retain(row(10).at + 1).unwrap(), 1);
        assert_eq!(
            all(dir.path()).iter().map(|r| r.id).collect::<Vec<_>>(),
            [11]
        );
        // Reopening finds the open segment and goes on after its last id.
        drop(w);
        let (_, last) = SegmentWriter::open(dir.path()).unwrap();
        assert_eq!(last, 11);
    }

    #[test]
    fn a_segment_left_unsealed_by_a_crash_is_sealed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = SegmentWriter::open(dir.path()).unwrap();
        write_rows(&mut w, 1, 4);
        drop(w);
        // A second segment created, the first's summary never written.
        let mut f = File::create(segment_path(dir.path(), 5)).unwrap();
        f.write_all(MAGIC).unwrap();
        let (_, last) = SegmentWriter::open(dir.path()).unwrap();
        assert_eq!(last, 4);
        assert!(
            sealed_summary(dir.path(), 1).is_some(),
            "the first one is sealed now"
        );
    }
}

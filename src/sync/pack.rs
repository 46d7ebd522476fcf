//! Packs: immutable, signed batches of one client's revisions, the unit of the shared log.
//!
//! A pack is stored at `log/<client uuid>/<sequence, 10 digits>` and never rewritten. Layout:
//!
//! ```text
//! "LOUPEPK1" | u32 header length | header (JSON) | u32 body length | body | ed25519 signature (64)
//! ```
//!
//! The header names the client, the sequence, the blake3 hash of the client's previous pack (the
//! chain), the signer's public key, the hash of the body, and the tables the body refers to by
//! index: images (content hash + path), classes (uuid + name), runs, users, clients and ops.
//! The body is a compact little-endian record per revision (about 100 bytes), so 10 000
//! revisions make a pack of about 1 MB. The signature covers everything before it, through
//! a domain-separated blake3 digest. A pack's own hash is the blake3 of all its bytes.
//!
//! Format 2 adds box attributes: after the last revision record, one entry per revision (u32
//! length, then the attributes as a JSON object; length `u32::MAX` for none). A pack none of
//! whose revisions carries attributes is written as format 1, byte for byte as before, so
//! clients that predate attributes still read it; both formats are read.
//!
//! The header may also carry two lists, left out of the JSON when empty (so packs without them
//! are byte for byte what they were): `listed`, images the signer adds to the project's image
//! list (what `loupe worker` processes; a model worker's key may not list images), and
//! `covered`, per model run the images its model processed, with or without boxes (a run's
//! coverage, which evaluation and triage use), with the run's model and settings hashes. A pack
//! may hold these and no revision at all.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{Identity, PublicKey};
use crate::model::{Attributes, BBox, BoxFlags, ReviewState};

const MAGIC: &[u8; 8] = b"LOUPEPK1";
/// The format of a pack without attributes (readable by every Loupe that syncs).
const FORMAT_1: u32 = 1;
/// Format 1 plus a section of box attributes after the revisions.
const FORMAT_2: u32 = 2;
const SIGNATURE_LEN: usize = 64;
const NONE: u32 = u32::MAX;

/// The most revisions one pack holds.
pub const MAX_PACK_REVISIONS: usize = 10_000;

/// The store key of a client's pack.
pub fn pack_key(client: Uuid, seq: u64) -> String {
    format!("log/{client}/{seq:010}")
}

/// The client and sequence a pack key names, if it is one.
pub fn parse_pack_key(key: &str) -> Option<(Uuid, u64)> {
    let mut parts = key.strip_prefix("log/")?.split('/');
    let client = Uuid::parse_str(parts.next()?).ok()?;
    let seq_text = parts.next()?;
    if parts.next().is_some() || seq_text.len() != 10 {
        return None;
    }
    Some((client, seq_text.parse().ok()?))
}

/// The values a pack carries are the store's portable form of a revision (by names and UUIDs,
/// nothing by row id): the store reads and writes them in its sync log; this module gives them
/// their wire encoding, with explicit codes for every value.
pub use crate::store::{ImageRef, NamedRef, RevId, RunCoverage, SharedRevision as PackRevision};

/// The signed header of a pack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackHeader {
    pub format: u32,
    pub client: Uuid,
    pub seq: u64,
    /// blake3 (hex) of the client's previous pack; `None` for its first.
    pub prev: Option<String>,
    pub signer: PublicKey,
    pub created_ms: i64,
    pub count: u32,
    pub body_hash: String,
    pub images: Vec<ImageRef>,
    pub classes: Vec<NamedRef>,
    pub runs: Vec<NamedRef>,
    pub users: Vec<NamedRef>,
    pub clients: Vec<Uuid>,
    pub ops: Vec<String>,
    /// Images (indices into `images`) the signer adds to the project's image list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<u32>,
    /// Runs' coverage: the images each run's model processed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covered: Vec<WireCoverage>,
}

/// One run's coverage in a pack header, by indices into the header's tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireCoverage {
    pub run: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_hash: Option<String>,
    pub images: Vec<u32>,
}

/// A decoded, signature-checked pack.
#[derive(Clone, Debug, PartialEq)]
pub struct Pack {
    pub header: PackHeader,
    pub revisions: Vec<PackRevision>,
    /// The images the pack lists (header `listed`, resolved).
    pub listed: Vec<ImageRef>,
    /// The runs' coverage the pack carries (header `covered`, resolved).
    pub covered: Vec<RunCoverage>,
    /// blake3 (hex) of the pack's bytes.
    pub hash: String,
}

/// Why a pack was refused. Nothing of a refused pack is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackProblem {
    Truncated {
        len: usize,
        expected: usize,
    },
    Malformed(String),
    /// The body does not match the hash in the signed header.
    Tampered,
    /// The signature does not verify with the key the header names.
    BadSignature {
        signer: String,
    },
    /// Validly signed, by a key that is not in the team roster.
    UnknownKey {
        signer: String,
    },
    /// A pack copied to another place in the log than the one it was signed for.
    Replayed {
        claims: String,
    },
    /// Its revisions were applied already (from another pack).
    ReplayedRevisions {
        annotation: Uuid,
        hlc: i64,
    },
    /// A revision names someone other than the signer as its author.
    ForgedAuthor {
        annotation: Uuid,
        hlc: i64,
        /// The author the revision names: `name (user id)`.
        author: String,
        /// The member whose key signed the pack: `name (key)`.
        signer: String,
    },
    /// Its clock runs further ahead of the reader's than sync allows.
    FutureClock {
        annotation: Uuid,
        lead_ms: i64,
        bound_ms: i64,
    },
    /// It does not follow the client's previous pack.
    BrokenChain {
        expected: Option<String>,
        found: Option<String>,
    },
}

impl fmt::Display for PackProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackProblem::Truncated { len, expected } => {
                write!(f, "truncated: {len} bytes, its own lengths say {expected}")
            }
            PackProblem::Malformed(why) => write!(f, "malformed: {why}"),
            PackProblem::Tampered => {
                write!(
                    f,
                    "tampered: its content does not match the hash it was signed with"
                )
            }
            PackProblem::BadSignature { signer } => write!(
                f,
                "wrong signature: not signed by the key it names ({signer})"
            ),
            PackProblem::UnknownKey { signer } => write!(
                f,
                "signed by an unknown key {signer}: not in the team roster"
            ),
            PackProblem::Replayed { claims } => {
                write!(f, "replayed: it was signed as {claims} and copied here")
            }
            PackProblem::ReplayedRevisions { annotation, hlc } => write!(
                f,
                "replayed: revision {hlc} of box {annotation} was applied already"
            ),
            PackProblem::ForgedAuthor {
                annotation,
                hlc,
                author,
                signer,
            } => write!(
                f,
                "forged author: revision {hlc} of box {annotation} names {author} as its author \
                 but the pack is signed by {signer}"
            ),
            PackProblem::FutureClock {
                annotation,
                lead_ms,
                bound_ms,
            } => write!(
                f,
                "clock ahead: box {annotation} is stamped {} s ahead of this machine's clock \
                 (at most {} s is accepted); taken once this clock catches up",
                lead_ms / 1000,
                bound_ms / 1000
            ),
            PackProblem::BrokenChain { expected, found } => write!(
                f,
                "broken chain: it follows pack {} but the client's previous pack is {}",
                found.as_deref().unwrap_or("(none)"),
                expected.as_deref().unwrap_or("(none)")
            ),
        }
    }
}

/// Builds the bytes of a pack.
pub struct PackWriter {
    images: Interner<ImageRef>,
    classes: Interner<NamedRef>,
    runs: Interner<NamedRef>,
    users: Interner<NamedRef>,
    clients: Interner<Uuid>,
    ops: Interner<String>,
    body: Vec<u8>,
    /// Each revision's attributes as JSON (`None`: none), written after the records when any
    /// revision has some.
    attributes: Vec<Option<String>>,
    count: u32,
    listed: Vec<u32>,
    covered: Vec<WireCoverage>,
}

struct Interner<T> {
    items: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T: Clone + Eq + std::hash::Hash> Interner<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn get(&mut self, item: &T) -> u32 {
        if let Some(i) = self.index.get(item) {
            return *i;
        }
        let i = u32::try_from(self.items.len()).expect("fewer than 4 billion entries per pack");
        self.items.push(item.clone());
        self.index.insert(item.clone(), i);
        i
    }
}

impl PackWriter {
    pub fn new(client: Uuid) -> Self {
        let mut clients = Interner::new();
        clients.get(&client);
        Self {
            images: Interner::new(),
            classes: Interner::new(),
            runs: Interner::new(),
            users: Interner::new(),
            clients,
            ops: Interner::new(),
            body: Vec::new(),
            attributes: Vec::new(),
            count: 0,
            listed: Vec::new(),
            covered: Vec::new(),
        }
    }

    /// Revisions in the pack.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Nothing at all: no revision, no listed image, no coverage.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.listed.is_empty() && self.covered.is_empty()
    }

    /// Adds an image to the project's image list.
    pub fn list_image(&mut self, image: &ImageRef) {
        let i = self.images.get(image);
        self.listed.push(i);
    }

    /// Adds a run's coverage.
    pub fn cover(&mut self, coverage: &RunCoverage) {
        let run = self.runs.get(&coverage.run);
        let images = coverage.images.iter().map(|i| self.images.get(i)).collect();
        self.covered.push(WireCoverage {
            run,
            model_hash: coverage.model_hash.clone(),
            settings_hash: coverage.settings_hash.clone(),
            images,
        });
    }

    pub fn push(&mut self, r: &PackRevision) {
        let b = &mut self.body;
        b.extend_from_slice(r.annotation.as_bytes());
        b.extend_from_slice(&self.users.get(&r.author).to_le_bytes());
        b.extend_from_slice(&r.hlc.to_le_bytes());
        b.extend_from_slice(&self.ops.get(&r.op).to_le_bytes());
        b.extend_from_slice(&self.images.get(&r.image).to_le_bytes());
        b.extend_from_slice(&self.classes.get(&r.class).to_le_bytes());
        for v in [r.bbox.x, r.bbox.y, r.bbox.w, r.bbox.h] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        match &r.run {
            Some((run, score)) => {
                b.extend_from_slice(&self.runs.get(run).to_le_bytes());
                b.extend_from_slice(&score.to_le_bytes());
            }
            None => {
                b.extend_from_slice(&NONE.to_le_bytes());
                b.extend_from_slice(&0f32.to_le_bytes());
            }
        }
        b.push(state_code(r.state));
        b.push(r.flags.bits());
        b.push(u8::from(r.deleted));
        match &r.note {
            Some(note) => {
                let len = u32::try_from(note.len()).unwrap_or(NONE - 1).min(NONE - 1);
                b.extend_from_slice(&len.to_le_bytes());
                b.extend_from_slice(&note.as_bytes()[..len as usize]);
            }
            None => b.extend_from_slice(&NONE.to_le_bytes()),
        }
        let mut rev_id = |b: &mut Vec<u8>, id: Option<RevId>| match id {
            Some(id) => {
                b.extend_from_slice(&self.clients.get(&id.client).to_le_bytes());
                b.extend_from_slice(&id.hlc.to_le_bytes());
            }
            None => {
                b.extend_from_slice(&NONE.to_le_bytes());
                b.extend_from_slice(&0i64.to_le_bytes());
            }
        };
        rev_id(b, r.parent);
        let n = u16::try_from(r.resolves.len()).unwrap_or(u16::MAX);
        b.extend_from_slice(&n.to_le_bytes());
        for id in r.resolves.iter().take(usize::from(n)) {
            rev_id(b, Some(*id));
        }
        self.attributes.push(r.attributes.to_json());
        self.count += 1;
    }

    /// Seals the pack: header, body and signature. Returns the bytes and their hash.
    pub fn finish(
        self,
        client: Uuid,
        seq: u64,
        prev: Option<String>,
        signer: &Identity,
        created_ms: i64,
    ) -> (Vec<u8>, String) {
        let mut body = self.body;
        let format = if self.attributes.iter().any(Option::is_some) {
            for a in &self.attributes {
                match a {
                    Some(json) => {
                        body.extend_from_slice(&len_u32(json.len()).to_le_bytes());
                        body.extend_from_slice(json.as_bytes());
                    }
                    None => body.extend_from_slice(&NONE.to_le_bytes()),
                }
            }
            FORMAT_2
        } else {
            FORMAT_1
        };
        let header = PackHeader {
            format,
            client,
            seq,
            prev,
            signer: signer.public(),
            created_ms,
            count: self.count,
            body_hash: blake3::hash(&body).to_hex().to_string(),
            images: self.images.items,
            classes: self.classes.items,
            runs: self.runs.items,
            users: self.users.items,
            clients: self.clients.items,
            ops: self.ops.items,
            listed: self.listed,
            covered: self.covered,
        };
        let header_json = serde_json::to_vec(&header).expect("a pack header always serializes");
        let mut out = Vec::with_capacity(header_json.len() + body.len() + 100);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len_u32(header_json.len()).to_le_bytes());
        out.extend_from_slice(&header_json);
        out.extend_from_slice(&len_u32(body.len()).to_le_bytes());
        out.extend_from_slice(&body);
        let signature = signer.sign(&signed_message(&out));
        out.extend_from_slice(&signature);
        let hash = blake3::hash(&out).to_hex().to_string();
        (out, hash)
    }
}

/// The wire code of a review state. Codes are fixed forever: stored packs are signed, and every
/// client must read a code as the state it meant when it was written. (They were once positions
/// in `ReviewState::ALL`; they are written out here so reordering that array changes nothing.)
/// A new state takes a new code; a code is never reused.
pub const fn state_code(state: ReviewState) -> u8 {
    match state {
        ReviewState::Proposed => 0,
        ReviewState::Accepted => 1,
        ReviewState::Corrected => 2,
        ReviewState::Rejected => 3,
        ReviewState::Submitted => 4,
        ReviewState::Approved => 5,
        ReviewState::Returned => 6,
    }
}

/// The review state a wire code stands for ([`state_code`]'s inverse).
pub const fn state_from_code(code: u8) -> Option<ReviewState> {
    Some(match code {
        0 => ReviewState::Proposed,
        1 => ReviewState::Accepted,
        2 => ReviewState::Corrected,
        3 => ReviewState::Rejected,
        4 => ReviewState::Submitted,
        5 => ReviewState::Approved,
        6 => ReviewState::Returned,
        _ => return None,
    })
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a pack section is smaller than 4 GB")
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut m = b"loupe pack v1\0".to_vec();
    m.extend_from_slice(blake3::hash(payload).as_bytes());
    m
}

/// Decodes a pack and checks its lengths, body hash and signature (against the key it names;
/// whether that key may write is the roster's business).
pub fn open(bytes: &[u8]) -> Result<Pack, PackProblem> {
    let malformed = |why: &str| PackProblem::Malformed(why.to_owned());
    if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
        return Err(malformed("not a Loupe pack"));
    }
    let mut pos = MAGIC.len();
    let header_len = read_u32(bytes, pos).ok_or(PackProblem::Truncated {
        len: bytes.len(),
        expected: pos + 4,
    })? as usize;
    pos += 4;
    let header_end = pos + header_len;
    let truncated = |expected: usize| PackProblem::Truncated {
        len: bytes.len(),
        expected,
    };
    if bytes.len() < header_end + 4 {
        return Err(truncated(header_end + 4 + SIGNATURE_LEN));
    }
    let body_len = read_u32(bytes, header_end).ok_or_else(|| truncated(header_end + 4))? as usize;
    let body_start = header_end + 4;
    let body_end = body_start + body_len;
    let total = body_end + SIGNATURE_LEN;
    if bytes.len() < total {
        return Err(truncated(total));
    }
    if bytes.len() > total {
        return Err(malformed(&format!(
            "{} bytes after the signature",
            bytes.len() - total
        )));
    }
    let header: PackHeader = serde_json::from_slice(&bytes[pos..header_end])
        .map_err(|e| PackProblem::Malformed(format!("header: {e}")))?;
    if header.format != FORMAT_1 && header.format != FORMAT_2 {
        return Err(PackProblem::Malformed(format!(
            "pack format {} (this Loupe reads {FORMAT_1} and {FORMAT_2})",
            header.format
        )));
    }
    let body = &bytes[body_start..body_end];
    if blake3::hash(body).to_hex().as_str() != header.body_hash {
        return Err(PackProblem::Tampered);
    }
    if !header
        .signer
        .verifies(&signed_message(&bytes[..body_end]), &bytes[body_end..])
    {
        return Err(PackProblem::BadSignature {
            signer: header.signer.to_string(),
        });
    }
    let revisions = decode_body(&header, body)?;
    let (listed, covered) = decode_lists(&header)?;
    Ok(Pack {
        header,
        revisions,
        listed,
        covered,
        hash: blake3::hash(bytes).to_hex().to_string(),
    })
}

/// The header's `listed` and `covered` lists, resolved through its tables.
fn decode_lists(h: &PackHeader) -> Result<(Vec<ImageRef>, Vec<RunCoverage>), PackProblem> {
    let image = |i: u32| {
        h.images.get(i as usize).cloned().ok_or_else(|| {
            PackProblem::Malformed(format!(
                "a listed or covered image refers to image {i} of {}",
                h.images.len()
            ))
        })
    };
    let listed = h
        .listed
        .iter()
        .map(|&i| image(i))
        .collect::<Result<_, _>>()?;
    let covered = h
        .covered
        .iter()
        .map(|c| {
            Ok(RunCoverage {
                run: h.runs.get(c.run as usize).cloned().ok_or_else(|| {
                    PackProblem::Malformed(format!(
                        "a coverage refers to run {} of {}",
                        c.run,
                        h.runs.len()
                    ))
                })?,
                model_hash: c.model_hash.clone(),
                settings_hash: c.settings_hash.clone(),
                images: c
                    .images
                    .iter()
                    .map(|&i| image(i))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, PackProblem>>()?;
    Ok((listed, covered))
}

fn read_u32(b: &[u8], pos: usize) -> Option<u32> {
    let s = b.get(pos..pos + 4)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PackProblem> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| PackProblem::Malformed("body ends inside a revision".into()))?;
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], PackProblem> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PackProblem> {
        Ok(self.arr::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, PackProblem> {
        Ok(u16::from_le_bytes(self.arr()?))
    }

    fn u32(&mut self) -> Result<u32, PackProblem> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    fn i64(&mut self) -> Result<i64, PackProblem> {
        Ok(i64::from_le_bytes(self.arr()?))
    }

    fn f64(&mut self) -> Result<f64, PackProblem> {
        Ok(f64::from_le_bytes(self.arr()?))
    }

    fn f32(&mut self) -> Result<f32, PackProblem> {
        Ok(f32::from_le_bytes(self.arr()?))
    }
}

fn lookup<'t, T>(table: &'t [T], i: u32, what: &str) -> Result<&'t T, PackProblem> {
    table
        .get(i as usize)
        .ok_or_else(|| PackProblem::Malformed(format!("{what} index {i} out of range")))
}

fn decode_body(h: &PackHeader, body: &[u8]) -> Result<Vec<PackRevision>, PackProblem> {
    let mut c = Cursor { b: body, pos: 0 };
    let mut out = Vec::with_capacity(h.count as usize);
    let rev_id = |c: &mut Cursor<'_>| -> Result<Option<RevId>, PackProblem> {
        let client = c.u32()?;
        let hlc = c.i64()?;
        if client == NONE {
            return Ok(None);
        }
        Ok(Some(RevId {
            client: *lookup(&h.clients, client, "client")?,
            hlc,
        }))
    };
    for _ in 0..h.count {
        let annotation = Uuid::from_bytes(c.arr()?);
        let author = lookup(&h.users, c.u32()?, "user")?.clone();
        let hlc = c.i64()?;
        let op = lookup(&h.ops, c.u32()?, "op")?.clone();
        let image = lookup(&h.images, c.u32()?, "image")?.clone();
        let class = lookup(&h.classes, c.u32()?, "class")?.clone();
        let bbox = BBox::new(c.f64()?, c.f64()?, c.f64()?, c.f64()?);
        let run_index = c.u32()?;
        let score = c.f32()?;
        let run = if run_index == NONE {
            None
        } else {
            Some((lookup(&h.runs, run_index, "run")?.clone(), score))
        };
        let code = c.u8()?;
        let state = state_from_code(code)
            .ok_or_else(|| PackProblem::Malformed(format!("unknown review state code {code}")))?;
        let flags = BoxFlags::from_bits(c.u8()?);
        let deleted = c.u8()? != 0;
        let note_len = c.u32()?;
        let note = if note_len == NONE {
            None
        } else {
            let bytes = c.take(note_len as usize)?;
            Some(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| PackProblem::Malformed("a note is not UTF-8".into()))?,
            )
        };
        let parent = rev_id(&mut c)?;
        let n = c.u16()?;
        let mut resolves = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            if let Some(id) = rev_id(&mut c)? {
                resolves.push(id);
            }
        }
        out.push(PackRevision {
            annotation,
            author,
            hlc,
            op,
            image,
            class,
            bbox,
            run,
            state,
            flags,
            deleted,
            attributes: Attributes::new(),
            note,
            parent,
            resolves,
        });
    }
    if h.format == FORMAT_2 {
        for r in &mut out {
            let len = c.u32()?;
            if len == NONE {
                continue;
            }
            let json = c.take(len as usize)?;
            r.attributes = serde_json::from_slice(json).map_err(|e| {
                PackProblem::Malformed(format!(
                    "the attributes of box {} are not an attribute object: {e}",
                    r.annotation
                ))
            })?;
        }
    }
    if c.pos != body.len() {
        return Err(PackProblem::Malformed(format!(
            "{} bytes after the last revision",
            body.len() - c.pos
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn revision(i: u8) -> PackRevision {
        let client = Uuid::from_bytes([i; 16]);
        PackRevision {
            annotation: Uuid::from_bytes([i.wrapping_add(1); 16]),
            author: NamedRef {
                id: Uuid::from_bytes([3; 16]),
                name: "ann".into(),
            },
            hlc: 1000 + i64::from(i),
            op: if i.is_multiple_of(2) {
                "create"
            } else {
                "update"
            }
            .into(),
            image: ImageRef {
                hash: (!i.is_multiple_of(3)).then(|| "ab".repeat(32)),
                path: format!("img/{}.png", i % 4),
                width: 640,
                height: 480,
            },
            class: NamedRef {
                id: Uuid::from_bytes([9; 16]),
                name: format!("class{}", i % 2),
            },
            bbox: BBox::new(f64::from(i), 2.5, 10.0, 20.25),
            run: i.is_multiple_of(5).then(|| {
                (
                    NamedRef {
                        id: Uuid::from_bytes([7; 16]),
                        name: "run".into(),
                    },
                    0.75,
                )
            }),
            state: ReviewState::ALL[usize::from(i) % 7],
            flags: BoxFlags::from_bits(i % 8),
            deleted: i.is_multiple_of(6),
            attributes: Attributes::new(),
            note: (i % 4 == 1).then(|| format!("note é {i}")),
            parent: (i > 0).then_some(RevId { client, hlc: 999 }),
            resolves: if i % 7 == 3 {
                vec![
                    RevId { client, hlc: 5 },
                    RevId {
                        client: Uuid::nil(),
                        hlc: 6,
                    },
                ]
            } else {
                Vec::new()
            },
        }
    }

    fn sealed(n: u8, key: &Identity) -> (Vec<u8>, String, Vec<PackRevision>) {
        let client = Uuid::from_bytes([42; 16]);
        let revs: Vec<_> = (0..n).map(revision).collect();
        let mut w = PackWriter::new(client);
        for r in &revs {
            w.push(r);
        }
        let (bytes, hash) = w.finish(client, 7, Some("00".repeat(32)), key, 123);
        (bytes, hash, revs)
    }

    #[test]
    fn packs_round_trip() {
        let key = Identity::generate();
        let (bytes, hash, revs) = sealed(40, &key);
        let pack = open(&bytes).expect("open");
        assert_eq!(pack.revisions, revs);
        assert_eq!(pack.hash, hash);
        assert_eq!(pack.header.seq, 7);
        assert_eq!(pack.header.signer, key.public());
    }

    /// Revisions of which some carry attributes (text, a boolean, Open Images' -1).
    fn with_attributes(n: u8) -> Vec<PackRevision> {
        (0..n)
            .map(|i| {
                let mut r = revision(i);
                if i % 3 == 1 {
                    r.attributes.insert("color", "red é");
                    r.attributes.insert("occluded", true);
                    r.attributes.insert("IsOccluded", -1);
                    r.attributes
                        .insert("a4", crate::model::AttributeValue::from_text("2.4"));
                }
                r
            })
            .collect()
    }

    fn seal(revs: &[PackRevision], key: &Identity) -> (Vec<u8>, String) {
        let client = Uuid::from_bytes([42; 16]);
        let mut w = PackWriter::new(client);
        for r in revs {
            w.push(r);
        }
        w.finish(client, 7, Some("00".repeat(32)), key, 123)
    }

    #[test]
    fn attributes_cross_a_pack_in_format_2() {
        let key = Identity::generate();
        let revs = with_attributes(20);
        let (bytes, _) = seal(&revs, &key);
        let pack = open(&bytes).expect("open");
        assert_eq!(pack.header.format, FORMAT_2);
        assert_eq!(pack.revisions, revs);
        let names: Vec<_> = pack.revisions[1]
            .attributes
            .iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["color", "occluded", "IsOccluded", "a4"]);
    }

    #[test]
    fn a_pack_without_attributes_is_format_1_byte_for_byte() {
        let key = Identity::generate();
        let (bytes, _, revs) = sealed(12, &key);
        let pack = open(&bytes).expect("open");
        assert_eq!(pack.header.format, FORMAT_1);
        // The body is exactly the revision records: nothing follows the last one.
        let mut w = PackWriter::new(Uuid::from_bytes([42; 16]));
        for r in &revs {
            w.push(r);
        }
        assert_eq!(
            blake3::hash(&w.body).to_hex().as_str(),
            pack.header.body_hash
        );
        // A format 2 pack of the same revisions differs only by its attribute section.
        let mut with = revs.clone();
        with[0].attributes.insert("x", 1);
        let (bytes2, _) = seal(&with, &key);
        let pack2 = open(&bytes2).expect("open");
        assert_eq!(pack2.header.format, FORMAT_2);
        assert_eq!(pack2.revisions, with);
    }

    /// A pack pushed by the Loupe before attributes (tests/data/old_client): it verifies, and
    /// the revisions it holds are written today as the very same body bytes.
    #[test]
    fn a_pack_from_a_client_before_attributes_opens_and_encodes_the_same() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/data/old_client/shared/log/01a24448-723c-74e1-97cb-ad5362522e8c/0000000001",
        );
        let bytes = std::fs::read(&path).expect("the old client's pack");
        let pack = open(&bytes).expect("an old pack verifies");
        assert_eq!(pack.header.format, FORMAT_1);
        assert_eq!(pack.revisions.len(), 7);
        assert!(pack.revisions.iter().all(|r| r.attributes.is_empty()));
        let mut w = PackWriter::new(pack.header.client);
        for r in &pack.revisions {
            w.push(r);
        }
        assert_eq!(
            blake3::hash(&w.body).to_hex().as_str(),
            pack.header.body_hash
        );
        let (again, _) = w.finish(
            pack.header.client,
            pack.header.seq,
            pack.header.prev.clone(),
            &Identity::generate(),
            pack.header.created_ms,
        );
        let header = open(&again).expect("reopen").header;
        assert_eq!(
            (
                header.format,
                &header.images,
                &header.classes,
                &header.users
            ),
            (
                FORMAT_1,
                &pack.header.images,
                &pack.header.classes,
                &pack.header.users
            )
        );
    }

    /// The attribute section's bytes are fixed: other clients read them.
    #[test]
    fn the_attribute_section_has_golden_bytes() {
        let client = Uuid::from_bytes([42; 16]);
        let mut w = PackWriter::new(client);
        let plain = revision(0);
        let mut with = revision(1);
        with.attributes.insert("color", "red");
        with.attributes.insert("occluded", true);
        with.attributes.insert("IsOccluded", -1);
        w.push(&plain);
        let records = {
            let mut once = PackWriter::new(client);
            once.push(&plain);
            once.push(&with);
            once.body
        };
        w.push(&with);
        let (bytes, _) = w.finish(client, 1, None, &Identity::generate(), 1);
        let pack = open(&bytes).expect("open");
        assert_eq!(pack.header.format, 2);
        let body_len = pack_body_len(&bytes);
        let body = &bytes[bytes.len() - 64 - body_len..bytes.len() - 64];
        assert_eq!(&body[..records.len()], records.as_slice());
        let json = br#"{"color":"red","occluded":true,"IsOccluded":-1}"#;
        let mut section = u32::MAX.to_le_bytes().to_vec();
        section.extend_from_slice(&u32::try_from(json.len()).expect("short").to_le_bytes());
        section.extend_from_slice(json);
        assert_eq!(&body[records.len()..], section.as_slice());
    }

    /// The length of the body of a sealed pack, from its header.
    fn pack_body_len(bytes: &[u8]) -> usize {
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        u32::from_le_bytes(
            bytes[12 + header_len..16 + header_len]
                .try_into()
                .expect("4 bytes"),
        ) as usize
    }

    #[test]
    fn malformed_attributes_refuse_the_pack() {
        let key = Identity::generate();
        let client = Uuid::from_bytes([42; 16]);
        let mut w = PackWriter::new(client);
        let mut r = revision(1);
        r.attributes.insert("x", 1);
        w.push(&r);
        w.attributes[0] = Some("[1, 2]".into());
        let (bytes, _) = w.finish(client, 1, None, &key, 1);
        assert!(matches!(open(&bytes), Err(PackProblem::Malformed(m)) if m.contains("attributes")));
    }

    /// Review states on the wire are fixed codes, whatever order the UI lists them in.
    #[test]
    fn review_states_have_fixed_wire_codes() {
        let expected = [
            (ReviewState::Proposed, 0),
            (ReviewState::Accepted, 1),
            (ReviewState::Corrected, 2),
            (ReviewState::Rejected, 3),
            (ReviewState::Submitted, 4),
            (ReviewState::Approved, 5),
            (ReviewState::Returned, 6),
        ];
        for (state, code) in expected {
            assert_eq!(state_code(state), code, "{state:?}");
            assert_eq!(state_from_code(code), Some(state));
        }
        assert_eq!(
            ReviewState::ALL.len(),
            expected.len(),
            "a new state needs a new code"
        );
        assert_eq!(state_from_code(7), None);
    }

    /// One revision record's bytes, written out: what every client reads, forever.
    #[test]
    fn a_revision_record_has_golden_bytes() {
        let client = Uuid::from_bytes([42; 16]);
        let r = PackRevision {
            annotation: Uuid::from_bytes([1; 16]),
            author: NamedRef {
                id: Uuid::from_bytes([2; 16]),
                name: "ann".into(),
            },
            hlc: 0x0102_0304_0506_0708,
            op: "update".into(),
            image: ImageRef {
                hash: None,
                path: "a.png".into(),
                width: 4,
                height: 3,
            },
            class: NamedRef {
                id: Uuid::from_bytes([3; 16]),
                name: "cat".into(),
            },
            bbox: BBox::new(1.0, 2.0, 0.5, 0.25),
            run: None,
            state: ReviewState::Approved,
            flags: BoxFlags::from_bits(0b101),
            deleted: true,
            attributes: Attributes::new(),
            note: Some("ok".into()),
            parent: Some(RevId { client, hlc: 9 }),
            resolves: vec![RevId {
                client: Uuid::nil(),
                hlc: 10,
            }],
        };
        let mut w = PackWriter::new(client);
        w.push(&r);
        let hex: String = w.body.iter().map(|b| format!("{b:02x}")).collect();
        let expected = concat!(
            "01010101010101010101010101010101", // annotation
            "00000000",                         // author: users[0]
            "0807060504030201",                 // hlc
            "00000000",                         // op: ops[0]
            "00000000",                         // image: images[0]
            "00000000",                         // class: classes[0]
            "000000000000f03f",                 // x = 1.0
            "0000000000000040",                 // y = 2.0
            "000000000000e03f",                 // w = 0.5
            "000000000000d03f",                 // h = 0.25
            "ffffffff00000000",                 // no run, score 0
            "05",                               // state: approved = code 5
            "05",                               // flags
            "01",                               // deleted
            "020000006f6b",                     // note "ok"
            "000000000900000000000000",         // parent: clients[0], hlc 9
            "0100",                             // one resolved head
            "010000000a00000000000000",         // clients[1] (nil), hlc 10
        );
        assert_eq!(hex, expected);
        let (bytes, _) = w.finish(client, 1, None, &Identity::generate(), 1);
        assert_eq!(open(&bytes).expect("open").revisions, vec![r]);
    }

    #[test]
    fn an_unknown_state_code_refuses_the_pack() {
        let client = Uuid::from_bytes([42; 16]);
        let mut w = PackWriter::new(client);
        w.push(&revision(0));
        // The state byte sits after the 16+4+8+4+4+4+32+8 bytes before it.
        w.body[80] = 200;
        let (bytes, _) = w.finish(client, 1, None, &Identity::generate(), 1);
        assert!(
            matches!(open(&bytes), Err(PackProblem::Malformed(m)) if m.contains("state code 200"))
        );
    }

    #[test]
    fn keys_parse() {
        let c = Uuid::now_v7();
        assert_eq!(parse_pack_key(&pack_key(c, 12)), Some((c, 12)));
        assert_eq!(parse_pack_key("log/x/0000000001"), None);
        assert_eq!(parse_pack_key(&format!("log/{c}/12")), None);
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let key = Identity::generate();
        let (mut bytes, _, _) = sealed(10, &key);
        let n = bytes.len();
        bytes[n - 100] ^= 1;
        assert_eq!(open(&bytes), Err(PackProblem::Tampered));
    }

    #[test]
    fn a_pack_signed_by_another_key_is_refused() {
        let key = Identity::generate();
        let (mut bytes, _, _) = sealed(3, &key);
        let n = bytes.len();
        let other = Identity::generate().sign(b"whatever");
        bytes[n - 64..].copy_from_slice(&other);
        assert!(matches!(
            open(&bytes),
            Err(PackProblem::BadSignature { .. })
        ));
    }

    proptest! {
        #[test]
        fn every_truncation_is_refused(cut in 0usize..2000) {
            let key = Identity::generate();
            let (bytes, _, _) = sealed(12, &key);
            let cut = cut % bytes.len();
            let err = open(&bytes[..cut]).expect_err("truncated packs never open");
            let is_truncated = matches!(err, PackProblem::Truncated { .. });
            prop_assert!(is_truncated, "{err}");
        }

        #[test]
        fn random_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(open(&bytes).is_err());
        }
    }
}

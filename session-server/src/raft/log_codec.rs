//! How the Raft log's values are laid out on disk, for `raft-log`.
//!
//! `raft-log` frames every record as a type tag, the record's fields one
//! after the other, and a CRC32 of all of it. A record carries no length, so
//! each field must know its own end: log ids, votes and the format marker
//! have a fixed size, and a payload starts with its length. That length is
//! covered by a checksum of its own: a flipped bit there is reported as
//! damage, instead of making the reader run off the end of the file, which
//! recovery would take for a torn last write and cut away.
//!
//! Every value starts with [`FORMAT_VERSION`], so that a directory written by
//! an incompatible build is recognised as such.
//!
//! Layouts (integers big-endian):
//!
//! | value | bytes |
//! |---|---|
//! | log id | version, term u64, leader node id u64, index u64 |
//! | vote | version, term u64, node id u64, committed u8 (0 or 1) |
//! | format marker | version, `b"SSRL"` |
//! | payload | version, body length u32, CRC32 of the previous 5 bytes u32, body |
//! | body: blank | 0 |
//! | body: normal | 1, the batch of tagged transactions in `postcard` |
//! | body: membership | 2, configs u32, per config (voters u32, ids u64…), nodes u32, per node (id u64, address length u32, address) |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::Batch;
use bytes::Bytes;
use openraft::storage::LogFlushed;
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, Vote};
use raft_log::codeq::config::CodeqConfig;
use raft_log::codeq::{Decode, Encode};
use raft_log::types::Checksum;

use super::TypeConfig;

/// The version of every value this module writes. Bump it (and keep a
/// decoder for the old one, or refuse old directories) whenever a layout
/// changes, including the serde layout of [`Txn`].
///
/// Version 2: a normal entry's transactions carry who proposed them
/// ([`Tagged`](super::Tagged)). Version 3: access control lists, node
/// kinds, multi, setACL and container deletes in transactions and
/// snapshots.
pub(crate) const FORMAT_VERSION: u8 = 3;

/// The bytes after the version in the format marker.
const MAGIC: [u8; 4] = *b"SSRL";

/// Body kinds.
const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Why a stored value could not be read back. Carried inside the
/// `io::Error` that `raft-log`'s decoding API requires.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Written by a build with another format version.
    #[error("{INCOMPATIBLE_TAG} {found} in a {what} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// Which value.
        what: &'static str,
        /// The version byte found.
        found: u8,
    },
    /// The format marker does not say "session-server".
    #[error("not a session-server Raft log: format marker {found:?}")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The checksum over a payload's version and length does not match.
    #[error("payload header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// What the header says.
        stored: u32,
        /// What its bytes give.
        computed: u32,
    },
    /// A payload of unknown kind.
    #[error("unknown log entry kind {0}")]
    UnknownKind(u8),
    /// A payload body with no kind byte.
    #[error("empty log entry payload")]
    EmptyBody,
    /// A vote's committed flag that is neither 0 nor 1.
    #[error("invalid committed flag {0} in a vote")]
    BadFlag(u8),
    /// A body that ends early or has bytes left over.
    #[error("malformed log entry: {0}")]
    Malformed(&'static str),
    /// A node address that is not UTF-8.
    #[error("node address is not UTF-8")]
    Address,
    /// The transaction does not decode.
    #[error("transaction does not decode: {0}")]
    Txn(postcard::Error),
}

/// The words every [`DecodeError::UnsupportedVersion`] message starts with;
/// `raft-log` turns errors into strings on the way up, so this is how the
/// opener tells an incompatible directory from a damaged one.
pub(crate) const INCOMPATIBLE_TAG: &str = "unsupported session-server Raft log format version";

impl DecodeError {
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Why a log entry could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The transaction does not serialize.
    #[error("transaction does not encode: {0}")]
    Txn(#[from] postcard::Error),
    /// More than `u32::MAX` bytes, nodes or ids.
    #[error("log entry too large: {0}")]
    TooLarge(&'static str),
}

/// The `raft-log` type parameters of the session server's log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LogTypes;

impl raft_log::Types for LogTypes {
    type LogId = StoredLogId;
    type LogPayload = StoredPayload;
    type Vote = StoredVote;
    type Callback = FlushCallback;
    type UserData = FormatMarker;

    fn log_index(log_id: &StoredLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &StoredPayload) -> u64 {
        payload.0.len() as u64
    }
}

/// An openraft log id, as `raft-log` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StoredLogId(pub(crate) LogId<u64>);

impl Encode for StoredLogId {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let id = &self.0;
        let mut buf = [0u8; 25];
        buf[0] = FORMAT_VERSION;
        buf[1..9].copy_from_slice(&id.leader_id.term.to_be_bytes());
        buf[9..17].copy_from_slice(&id.leader_id.node_id.to_be_bytes());
        buf[17..25].copy_from_slice(&id.index.to_be_bytes());
        w.write_all(&buf)?;
        Ok(buf.len())
    }
}

impl Decode for StoredLogId {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        read_version(&mut r, "log id")?;
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let index = read_u64(&mut r)?;
        Ok(Self(LogId::new(
            CommittedLeaderId::new(term, node_id),
            index,
        )))
    }
}

/// An openraft vote, as `raft-log` stores it; ordered as openraft orders
/// votes (`raft-log` refuses a vote lower than the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd)]
pub(crate) struct StoredVote(pub(crate) Vote<u64>);

impl Encode for StoredVote {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let vote = &self.0;
        let mut buf = [0u8; 18];
        buf[0] = FORMAT_VERSION;
        buf[1..9].copy_from_slice(&vote.leader_id().term.to_be_bytes());
        buf[9..17].copy_from_slice(&vote.leader_id().node_id.to_be_bytes());
        buf[17] = u8::from(vote.is_committed());
        w.write_all(&buf)?;
        Ok(buf.len())
    }
}

impl Decode for StoredVote {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        read_version(&mut r, "vote")?;
        let term = read_u64(&mut r)?;
        let node_id = read_u64(&mut r)?;
        let vote = match read_u8(&mut r)? {
            0 => Vote::new(term, node_id),
            1 => Vote::new_committed(term, node_id),
            other => return Err(DecodeError::BadFlag(other).into_io()),
        };
        Ok(Self(vote))
    }
}

/// The user data of the log: says "a session-server log, format version
/// [`FORMAT_VERSION`]". Written once, into a new directory; `raft-log`
/// repeats it in the checkpoint that starts every chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FormatMarker;

impl Encode for FormatMarker {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let mut buf = [0u8; 5];
        buf[0] = FORMAT_VERSION;
        buf[1..].copy_from_slice(&MAGIC);
        w.write_all(&buf)?;
        Ok(buf.len())
    }
}

impl Decode for FormatMarker {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        read_version(&mut r, "format marker")?;
        let mut found = [0u8; 4];
        r.read_exact(&mut found)?;
        if found != MAGIC {
            return Err(DecodeError::BadMagic { found }.into_io());
        }
        Ok(Self)
    }
}

/// A log entry's payload, encoded (the body of the layout table above).
///
/// The log keeps payloads encoded: `raft-log`'s cache then holds compact
/// bytes and counts their real size, an append encodes once, and a read
/// decodes with [`StoredPayload::to_entry_payload`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredPayload(pub(crate) Bytes);

impl fmt::Debug for StoredPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0.first() {
            Some(&KIND_BLANK) => "blank",
            Some(&KIND_NORMAL) => "normal",
            Some(&KIND_MEMBERSHIP) => "membership",
            _ => "invalid",
        };
        write!(f, "StoredPayload({kind}, {} bytes)", self.0.len())
    }
}

impl StoredPayload {
    /// Encodes an openraft payload.
    pub(crate) fn from_entry_payload(
        payload: &EntryPayload<TypeConfig>,
    ) -> Result<Self, EncodeError> {
        let mut body = Vec::new();
        match payload {
            EntryPayload::Blank => body.push(KIND_BLANK),
            EntryPayload::Normal(batch) => {
                body.push(KIND_NORMAL);
                body = postcard::to_extend(batch, body)?;
            }
            EntryPayload::Membership(membership) => {
                body.push(KIND_MEMBERSHIP);
                encode_membership(membership, &mut body)?;
            }
        }
        if u32::try_from(body.len()).is_err() {
            return Err(EncodeError::TooLarge("payload over 4 GiB"));
        }
        Ok(Self(Bytes::from(body)))
    }

    /// Decodes back into an openraft payload.
    pub(crate) fn to_entry_payload(&self) -> Result<EntryPayload<TypeConfig>, DecodeError> {
        let (&kind, rest) = self.0.split_first().ok_or(DecodeError::EmptyBody)?;
        match kind {
            KIND_BLANK if rest.is_empty() => Ok(EntryPayload::Blank),
            KIND_BLANK => Err(DecodeError::Malformed("bytes after a blank entry")),
            KIND_NORMAL => {
                let (batch, left): (Batch, &[u8]) =
                    postcard::take_from_bytes(rest).map_err(DecodeError::Txn)?;
                if !left.is_empty() {
                    return Err(DecodeError::Malformed("bytes after the transactions"));
                }
                Ok(EntryPayload::Normal(batch))
            }
            KIND_MEMBERSHIP => Ok(EntryPayload::Membership(decode_membership(rest)?)),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }

    fn header(len: u32) -> [u8; 9] {
        let mut header = [0u8; 9];
        header[0] = FORMAT_VERSION;
        header[1..5].copy_from_slice(&len.to_be_bytes());
        let crc = header_crc(&header[..5]);
        header[5..9].copy_from_slice(&crc.to_be_bytes());
        header
    }
}

fn header_crc(bytes: &[u8]) -> u32 {
    // `Checksum::hash` is CRC32 widened to u64; the cast keeps all of it.
    Checksum::hash(bytes) as u32
}

impl Encode for StoredPayload {
    fn encode<W: Write>(&self, mut w: W) -> io::Result<usize> {
        let len = u32::try_from(self.0.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload over 4 GiB"))?;
        let header = Self::header(len);
        w.write_all(&header)?;
        w.write_all(&self.0)?;
        Ok(header.len() + self.0.len())
    }
}

impl Decode for StoredPayload {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let mut header = [0u8; 9];
        r.read_exact(&mut header[..1])?;
        check_version(header[0], "log entry")?;
        r.read_exact(&mut header[1..])?;
        let mut stored = [0u8; 4];
        stored.copy_from_slice(&header[5..9]);
        let stored = u32::from_be_bytes(stored);
        let computed = header_crc(&header[..5]);
        if stored != computed {
            return Err(DecodeError::HeaderChecksum { stored, computed }.into_io());
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[1..5]);
        let len = u64::from(u32::from_be_bytes(len));
        // `take` + `read_to_end` grows the buffer as bytes arrive, so a
        // large length costs nothing until the bytes are really there.
        let mut body = Vec::new();
        r.by_ref().take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match body.first() {
            None => Err(DecodeError::EmptyBody.into_io()),
            Some(&(KIND_BLANK | KIND_NORMAL | KIND_MEMBERSHIP)) => Ok(Self(Bytes::from(body))),
            Some(&other) => Err(DecodeError::UnknownKind(other).into_io()),
        }
    }
}

fn encode_membership(
    membership: &Membership<u64, BasicNode>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let configs = membership.get_joint_config();
    put_len(out, configs.len())?;
    for config in configs {
        put_len(out, config.len())?;
        for id in config {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
    let nodes: Vec<(&u64, &BasicNode)> = membership.nodes().collect();
    put_len(out, nodes.len())?;
    for (id, node) in nodes {
        out.extend_from_slice(&id.to_be_bytes());
        put_len(out, node.addr.len())?;
        out.extend_from_slice(node.addr.as_bytes());
    }
    Ok(())
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    let len = u32::try_from(len).map_err(|_| EncodeError::TooLarge("membership"))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn decode_membership(mut bytes: &[u8]) -> Result<Membership<u64, BasicNode>, DecodeError> {
    let configs_len = take_u32(&mut bytes)?;
    // Capacities are bounded by what the bytes could hold, never by a
    // count read from them.
    let mut configs = Vec::with_capacity((configs_len as usize).min(bytes.len() / 4));
    for _ in 0..configs_len {
        let voters = take_u32(&mut bytes)?;
        let mut config = BTreeSet::new();
        for _ in 0..voters {
            config.insert(take_u64(&mut bytes)?);
        }
        configs.push(config);
    }
    let nodes_len = take_u32(&mut bytes)?;
    let mut nodes = BTreeMap::new();
    for _ in 0..nodes_len {
        let id = take_u64(&mut bytes)?;
        let addr_len = take_u32(&mut bytes)? as usize;
        if bytes.len() < addr_len {
            return Err(DecodeError::Malformed(
                "membership node address runs past the end",
            ));
        }
        let (addr, rest) = bytes.split_at(addr_len);
        bytes = rest;
        let addr = std::str::from_utf8(addr).map_err(|_| DecodeError::Address)?;
        nodes.insert(id, BasicNode::new(addr));
    }
    if !bytes.is_empty() {
        return Err(DecodeError::Malformed(
            "bytes after the last membership node",
        ));
    }
    Ok(Membership::new(configs, nodes))
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, DecodeError> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(DecodeError::Malformed("membership ends inside a count"))?;
    *bytes = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, DecodeError> {
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(DecodeError::Malformed("membership ends inside a node id"))?;
    *bytes = rest;
    Ok(u64::from_be_bytes(*head))
}

fn read_version<R: Read>(r: &mut R, what: &'static str) -> io::Result<()> {
    check_version(read_u8(r)?, what)
}

fn check_version(found: u8, what: &'static str) -> io::Result<()> {
    if found == FORMAT_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion { what, found }.into_io())
    }
}

fn read_u8<R: Read>(r: &mut R) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u64<R: Read>(r: &mut R) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// When an append was handed to the log, and where to record how long its
/// flush took.
pub(crate) struct FlushTiming {
    pub(crate) started: std::time::Instant,
    pub(crate) histogram: prometheus_client::metrics::histogram::Histogram,
}

/// How many of openraft's appends a log store was handed, and how many of
/// them the flush worker has finished (synced, or failed). The flush worker
/// finishes them in order, so when the two are equal nothing handed to the
/// store waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Appends {
    /// Appends handed to the store.
    pub(crate) started: u64,
    /// Appends whose flush has finished.
    pub(crate) flushed: u64,
}

/// What the flush worker calls once a flush is on disk (or failed).
pub(crate) enum FlushCallback {
    /// An `append` from openraft: report the entries durable, count them
    /// flushed in the store's [`Appends`], and record how long the flush
    /// took if someone is timing it.
    Append(
        LogFlushed<TypeConfig>,
        Option<FlushTiming>,
        Arc<tokio::sync::watch::Sender<Appends>>,
    ),
    /// An async caller waiting for a flush (`save_vote`, `truncate`, `purge`;
    /// tests).
    Async(tokio::sync::oneshot::Sender<io::Result<()>>),
    /// A thread blocked waiting for a flush (opening the store).
    Blocking(std::sync::mpsc::SyncSender<io::Result<()>>),
}

impl raft_log::Callback for FlushCallback {
    fn send(self, res: io::Result<()>) {
        match self {
            Self::Append(flushed, timing, appends) => {
                if let Some(timing) = timing {
                    timing
                        .histogram
                        .observe(timing.started.elapsed().as_secs_f64());
                }
                // Counted before openraft hears of it, so that whoever
                // waits for openraft's answer sees the count already moved.
                appends.send_modify(|appends| appends.flushed += 1);
                flushed.log_io_completed(res);
            }
            // The waiter may be gone (its future dropped); nothing to do.
            Self::Async(tx) => {
                let _ = tx.send(res);
            }
            // (`raft-log` implements its callback for `SyncSender`.)
            Self::Blocking(tx) => raft_log::Callback::send(tx, res),
        }
    }
}

impl fmt::Debug for FlushCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Append(..) => "FlushCallback::Append",
            Self::Async(_) => "FlushCallback::Async",
            Self::Blocking(_) => "FlushCallback::Blocking",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Encode + Decode + fmt::Debug + PartialEq>(value: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        let n = value.encode(&mut buf).expect("encode");
        assert_eq!(n, buf.len());
        let back = T::decode(&buf[..]).expect("decode");
        assert_eq!(&back, value);
        buf
    }

    fn payload_roundtrip(payload: EntryPayload<TypeConfig>) {
        let stored = StoredPayload::from_entry_payload(&payload).expect("encode");
        roundtrip(&stored);
        assert_eq!(stored.to_entry_payload().expect("decode"), payload);
    }

    #[test]
    fn values_roundtrip_with_a_leading_version() {
        let id = StoredLogId(LogId::new(CommittedLeaderId::new(7, 3), 42));
        assert_eq!(roundtrip(&id)[0], FORMAT_VERSION);
        let vote = StoredVote(Vote::new_committed(9, 2));
        assert_eq!(roundtrip(&vote)[0], FORMAT_VERSION);
        assert_eq!(roundtrip(&StoredVote(Vote::new(1, 1)))[17], 0);
        assert_eq!(roundtrip(&FormatMarker), b"\x03SSRL");
    }

    #[test]
    fn payloads_roundtrip() {
        payload_roundtrip(EntryPayload::Blank);
        let mut nodes = BTreeMap::new();
        nodes.insert(1, BasicNode::new("10.0.0.1:2888"));
        nodes.insert(2, BasicNode::new("10.0.0.2:2888"));
        nodes.insert(5, BasicNode::new("learner:2888"));
        let joint = vec![
            [1u64, 2].into_iter().collect(),
            [2u64].into_iter().collect(),
        ];
        payload_roundtrip(EntryPayload::Membership(Membership::new(joint, nodes)));
        payload_roundtrip(EntryPayload::Membership(Membership::new(
            vec![BTreeSet::new()],
            (),
        )));
        payload_roundtrip(EntryPayload::Normal(Batch(vec![
            super::super::Tagged {
                origin: 1,
                seq: u64::MAX,
                txn: session_core::Txn::CloseSession {
                    id: session_core::SessionId::from_u64(0x0100_0000_0000_0042),
                },
            },
            super::super::Tagged {
                origin: 3,
                seq: 7,
                txn: session_core::Txn::CloseSession {
                    id: session_core::SessionId::from_u64(0x0100_0000_0000_0043),
                },
            },
        ])));
        payload_roundtrip(EntryPayload::Normal(Batch(Vec::new())));
    }

    #[test]
    fn another_version_is_reported_as_incompatible() {
        let mut buf = roundtrip(&StoredVote(Vote::new(1, 1)));
        buf[0] = FORMAT_VERSION + 1;
        let err = StoredVote::decode(&buf[..]).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().starts_with(INCOMPATIBLE_TAG), "{err}");
    }

    #[test]
    fn a_damaged_payload_length_is_damage_not_a_short_read() {
        let stored = StoredPayload::from_entry_payload(&EntryPayload::Blank).expect("encode");
        let mut buf = roundtrip(&stored);
        // A length of 2^24 + 1 would otherwise read past the end and look
        // like a torn write.
        buf[1] ^= 0x01;
        let err = StoredPayload::decode(&buf[..]).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("header checksum"), "{err}");
        // While a really short payload is a short read.
        let whole = roundtrip(&stored);
        let err = StoredPayload::decode(&whole[..whole.len() - 1]).expect_err("short");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            &b""[..],
            &[9][..],
            &[KIND_BLANK, 0][..],
            &[KIND_MEMBERSHIP, 0, 0][..],
            &[KIND_NORMAL, 0xff][..],
        ] {
            let stored = StoredPayload(Bytes::copy_from_slice(body));
            assert!(stored.to_entry_payload().is_err(), "{body:?}");
        }
    }
}

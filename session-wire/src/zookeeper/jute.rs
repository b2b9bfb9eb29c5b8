//! Jute's binary primitives: a reader over one frame body and a writer into
//! a `BytesMut`, the [`JuteRecord`] trait every record implements, and the
//! errors of both directions.
//!
//! The encoding is `org.apache.jute.BinaryInputArchive` /
//! `BinaryOutputArchive`: big-endian fixed-width integers, a bool as one
//! byte, and `buffer`, `ustring` and `vector` as a 4-byte signed length or
//! count followed by the items, where -1 means null.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why bytes could not be read as a jute record. Every variant names the
/// field (`Record.field`) or record it was reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteError {
    /// A fixed-width field (int, long, bool) or a length prefix runs past the
    /// end of the bytes.
    #[error("truncated {field}: needs {needed} bytes, {remaining} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The bytes the field needs.
        needed: usize,
        /// The bytes that were left.
        remaining: usize,
    },
    /// A buffer or string announces more bytes than are left.
    #[error("length {len} of {field} exceeds the {remaining} bytes left")]
    LengthOverrun {
        /// The field being read.
        field: &'static str,
        /// The announced length.
        len: i32,
        /// The bytes that were left.
        remaining: usize,
    },
    /// A length or count below -1. Only -1 (null) may be negative; ZooKeeper
    /// refuses other negative buffer and string lengths ("Unreasonable
    /// length", `BinaryInputArchive.checkLength`).
    #[error("negative length {len} for {field}: only -1 (null) may be negative")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// The length or count read.
        len: i32,
    },
    /// A string or vector is null (-1) where this codec does not allow it:
    /// neither ZooKeeper's client nor its server ever sends null there.
    #[error("null {field}: length -1 where a value is required")]
    Null {
        /// The field being read.
        field: &'static str,
    },
    /// A vector announces more items than the bytes left can hold, at the
    /// smallest encoding of one item. Refused before anything is allocated.
    #[error("vector count {count} of {field} needs at least {needed} bytes, {remaining} left")]
    VectorOverrun {
        /// The field being read.
        field: &'static str,
        /// The announced item count.
        count: i32,
        /// The least bytes `count` items take (saturated at `usize::MAX`).
        needed: usize,
        /// The bytes that were left.
        remaining: usize,
    },
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in {field} at byte {valid_up_to} of {len}")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// The length of the valid prefix.
        valid_up_to: usize,
        /// The string's length in bytes.
        len: usize,
    },
    /// Bytes are left after the last field of a record that must fill its
    /// frame.
    #[error("{len} trailing bytes after {record}")]
    TrailingBytes {
        /// The record read.
        record: &'static str,
        /// The bytes left over.
        len: usize,
    },
    /// An operation inside a multi (`MultiHeader.type`) that this kind of
    /// multi cannot carry: an unknown number, a read in a `multi` or a write
    /// in a `multiRead`. ZooKeeper answers `MARSHALLINGERROR` (-5).
    #[error("op type {op_type} cannot be part of a {multi}")]
    InvalidMultiOp {
        /// `"multi"` or `"multiRead"` for requests, `"MultiResponse"` for
        /// results.
        multi: &'static str,
        /// The `MultiHeader.type` read.
        op_type: i32,
    },
}

/// Why a record or message could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteEncodeError {
    /// The encoded frame body is longer than the maximum frame length.
    /// Nothing was written.
    #[error("message of {len} bytes exceeds the maximum frame length of {max} bytes")]
    Oversize {
        /// The encoded body length.
        len: usize,
        /// The maximum frame length in force (at most `i32::MAX`, jute's
        /// lengths being signed).
        max: u32,
    },
    /// A buffer, string or vector is longer than jute's `i32` length can say.
    /// Nothing was written.
    #[error("{field} has length {len}, more than jute's maximum of 2147483647")]
    LengthOverflow {
        /// The field being written.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Reads jute primitives from the front of one frame body.
///
/// Every read checks the bytes left first and returns a [`JuteError`]
/// naming the field instead of panicking; lengths and counts are checked
/// against the bytes left before anything is allocated. Buffers come out as
/// [`Bytes`] slices of the input, not copies.
#[derive(Debug, Clone)]
pub struct JuteReader {
    rest: Bytes,
}

impl JuteReader {
    /// A reader over `bytes`.
    #[must_use]
    pub fn new(bytes: Bytes) -> Self {
        Self { rest: bytes }
    }

    /// A reader over a copy of `bytes`.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(Bytes::copy_from_slice(bytes))
    }

    /// The number of bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Checks that every byte was read.
    ///
    /// # Errors
    /// [`JuteError::TrailingBytes`] naming `record` when bytes are left.
    pub fn finish(&self, record: &'static str) -> Result<(), JuteError> {
        match self.rest.len() {
            0 => Ok(()),
            len => Err(JuteError::TrailingBytes { record, len }),
        }
    }

    fn need(&self, field: &'static str, needed: usize) -> Result<(), JuteError> {
        if self.rest.len() < needed {
            return Err(JuteError::Truncated {
                field,
                needed,
                remaining: self.rest.len(),
            });
        }
        Ok(())
    }

    /// A jute `int`: 4 bytes, big-endian, two's complement.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] when fewer than 4 bytes are left.
    pub fn read_int(&mut self, field: &'static str) -> Result<i32, JuteError> {
        self.need(field, 4)?;
        Ok(self.rest.get_i32())
    }

    /// A jute `long`: 8 bytes, big-endian, two's complement.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] when fewer than 8 bytes are left.
    pub fn read_long(&mut self, field: &'static str) -> Result<i64, JuteError> {
        self.need(field, 8)?;
        Ok(self.rest.get_i64())
    }

    /// A jute `boolean`: one byte, any non-zero value true (Java's
    /// `DataInput.readBoolean`, which `BinaryInputArchive.readBool` calls).
    ///
    /// # Errors
    /// [`JuteError::Truncated`] when no byte is left.
    pub fn read_bool(&mut self, field: &'static str) -> Result<bool, JuteError> {
        self.need(field, 1)?;
        Ok(self.rest.get_u8() != 0)
    }

    /// A length (or count) prefix: `None` for -1 (null).
    fn read_len(&mut self, field: &'static str) -> Result<Option<usize>, JuteError> {
        let len = self.read_int(field)?;
        if len == -1 {
            return Ok(None);
        }
        usize::try_from(len)
            .map(Some)
            .map_err(|_| JuteError::NegativeLength { field, len })
    }

    /// The payload of a buffer or string whose length was just read.
    fn take(&mut self, field: &'static str, len: usize) -> Result<Bytes, JuteError> {
        if len > self.rest.len() {
            return Err(JuteError::LengthOverrun {
                field,
                // Lossless: `len` came from a non-negative i32.
                len: i32::try_from(len).unwrap_or(i32::MAX),
                remaining: self.rest.len(),
            });
        }
        Ok(self.rest.split_to(len))
    }

    /// A jute `buffer`: an `int` length then that many bytes; -1 is null
    /// (`None`), 0 is empty.
    ///
    /// # Errors
    /// [`JuteError::Truncated`], [`JuteError::NegativeLength`] for a length
    /// below -1, [`JuteError::LengthOverrun`] for a length past the end.
    pub fn read_buffer(&mut self, field: &'static str) -> Result<Option<Bytes>, JuteError> {
        match self.read_len(field)? {
            Some(len) => self.take(field, len).map(Some),
            None => Ok(None),
        }
    }

    /// A jute `ustring` that may be null: encoded as a buffer, UTF-8.
    ///
    /// # Errors
    /// As [`read_buffer`](Self::read_buffer), and [`JuteError::InvalidUtf8`].
    /// ZooKeeper's Java reader replaces invalid UTF-8 with U+FFFD instead;
    /// this reader refuses it, so that what it decodes re-encodes to the same
    /// bytes.
    pub fn read_opt_ustring(&mut self, field: &'static str) -> Result<Option<String>, JuteError> {
        let Some(len) = self.read_len(field)? else {
            return Ok(None);
        };
        let bytes = self.take(field, len)?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Some(text.to_owned())),
            Err(err) => Err(JuteError::InvalidUtf8 {
                field,
                valid_up_to: err.valid_up_to(),
                len,
            }),
        }
    }

    /// A jute `ustring` where ZooKeeper expects a value: null (-1) reads as
    /// the empty string, because kazoo writes every empty string as null
    /// (an ACL's `auth` id, for one) and ZooKeeper's Java server takes it.
    ///
    /// # Errors
    /// As [`read_opt_ustring`](Self::read_opt_ustring).
    pub fn read_ustring(&mut self, field: &'static str) -> Result<String, JuteError> {
        Ok(self.read_opt_ustring(field)?.unwrap_or_default())
    }

    /// A jute `vector<T>` that may be null: an `int` count then the items,
    /// each read by `item`. `min_item_len` is the smallest encoding of one
    /// item; a count that cannot fit in the bytes left is refused before the
    /// vector is allocated.
    ///
    /// # Errors
    /// [`JuteError::Truncated`], [`JuteError::NegativeLength`] for a count
    /// below -1, [`JuteError::VectorOverrun`], or the first item's error.
    pub fn read_opt_vector<T>(
        &mut self,
        field: &'static str,
        min_item_len: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, JuteError>,
    ) -> Result<Option<Vec<T>>, JuteError> {
        let Some(count) = self.read_len(field)? else {
            return Ok(None);
        };
        let needed = count.saturating_mul(min_item_len.max(1));
        if needed > self.rest.len() {
            return Err(JuteError::VectorOverrun {
                field,
                count: i32::try_from(count).unwrap_or(i32::MAX),
                needed,
                remaining: self.rest.len(),
            });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(Some(items))
    }

    /// A jute `vector<T>` that must not be null.
    ///
    /// # Errors
    /// As [`read_opt_vector`](Self::read_opt_vector), and
    /// [`JuteError::Null`] for -1.
    pub fn read_vector<T>(
        &mut self,
        field: &'static str,
        min_item_len: usize,
        item: impl FnMut(&mut Self) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        self.read_opt_vector(field, min_item_len, item)?
            .ok_or(JuteError::Null { field })
    }
}

/// Writes jute primitives at the end of a `BytesMut`.
///
/// Writes cannot fail one by one: a buffer, string or vector longer than
/// `i32::MAX` is skipped and remembered, and [`finish`](Self::finish)
/// reports it. The frame encoders of this module then discard what was
/// written.
#[derive(Debug)]
pub struct JuteWriter<'a> {
    dst: &'a mut BytesMut,
    overflow: Option<JuteEncodeError>,
}

impl<'a> JuteWriter<'a> {
    /// A writer appending to `dst`.
    pub fn new(dst: &'a mut BytesMut) -> Self {
        Self {
            dst,
            overflow: None,
        }
    }

    /// Checks that every write could be encoded.
    ///
    /// # Errors
    /// [`JuteEncodeError::LengthOverflow`] for the first buffer, string or
    /// vector longer than `i32::MAX`.
    pub fn finish(self) -> Result<(), JuteEncodeError> {
        match self.overflow {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// A jute `int`.
    pub fn write_int(&mut self, value: i32) {
        self.dst.put_i32(value);
    }

    /// A jute `long`.
    pub fn write_long(&mut self, value: i64) {
        self.dst.put_i64(value);
    }

    /// A jute `boolean`: 1 or 0.
    pub fn write_bool(&mut self, value: bool) {
        self.dst.put_u8(u8::from(value));
    }

    /// A length prefix; `false` (and the overflow remembered) when it does
    /// not fit an `i32`.
    fn write_len(&mut self, field: &'static str, len: usize) -> bool {
        match i32::try_from(len) {
            Ok(len) => {
                self.dst.put_i32(len);
                true
            }
            Err(_) => {
                self.overflow
                    .get_or_insert(JuteEncodeError::LengthOverflow { field, len });
                false
            }
        }
    }

    /// A jute `buffer`; `None` is written as length -1.
    pub fn write_buffer(&mut self, field: &'static str, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                if self.write_len(field, bytes.len()) {
                    self.dst.put_slice(bytes);
                }
            }
            None => self.dst.put_i32(-1),
        }
    }

    /// A jute `ustring`.
    pub fn write_ustring(&mut self, field: &'static str, value: &str) {
        self.write_buffer(field, Some(value.as_bytes()));
    }

    /// A jute `ustring` that may be null (-1).
    pub fn write_opt_ustring(&mut self, field: &'static str, value: Option<&str>) {
        self.write_buffer(field, value.map(str::as_bytes));
    }

    /// A jute `vector<T>`: the count, then each item written by `item`.
    pub fn write_vector<T>(
        &mut self,
        field: &'static str,
        items: &[T],
        mut item: impl FnMut(&mut Self, &T),
    ) {
        if self.write_len(field, items.len()) {
            for value in items {
                item(self, value);
            }
        }
    }
}

/// A jute record: fields in declaration order, no tags, no padding.
///
/// Implemented by every record of `zookeeper.jute` this module knows, and by
/// [`ConnectRequest`](super::ConnectRequest) /
/// [`ConnectResponse`](super::ConnectResponse) with their optional trailing
/// `readOnly`.
pub trait JuteRecord: Sized {
    /// The record's name in `zookeeper.jute`, for errors.
    const NAME: &'static str;

    /// Reads the record's fields from the front of `reader`.
    ///
    /// # Errors
    /// The [`JuteError`] of the first field that could not be read.
    fn read(reader: &mut JuteReader) -> Result<Self, JuteError>;

    /// Appends the record's fields to `writer`.
    fn write(&self, writer: &mut JuteWriter<'_>);

    /// Decodes a record that fills all of `bytes`.
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`JuteError::TrailingBytes`] when bytes
    /// are left after it.
    fn decode(bytes: Bytes) -> Result<Self, JuteError> {
        let mut reader = JuteReader::new(bytes);
        let record = Self::read(&mut reader)?;
        reader.finish(Self::NAME)?;
        Ok(record)
    }

    /// Appends the record, without a length prefix, to `dst`.
    ///
    /// # Errors
    /// [`JuteEncodeError::LengthOverflow`]; `dst` is then left as it was.
    fn encode(&self, dst: &mut BytesMut) -> Result<(), JuteEncodeError> {
        let start = dst.len();
        let mut writer = JuteWriter::new(dst);
        self.write(&mut writer);
        writer.finish().inspect_err(|_| dst.truncate(start))
    }
}

/// How a field type is read and written, and its smallest encoding (for
/// the vector count check).
pub(crate) trait JuteField: Sized {
    const MIN_LEN: usize;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError>;
    fn write_field(&self, writer: &mut JuteWriter<'_>, field: &'static str);
}

impl JuteField for i32 {
    const MIN_LEN: usize = 4;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_int(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, _: &'static str) {
        writer.write_int(*self);
    }
}

impl JuteField for i64 {
    const MIN_LEN: usize = 8;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_long(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, _: &'static str) {
        writer.write_long(*self);
    }
}

impl JuteField for bool {
    const MIN_LEN: usize = 1;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_bool(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, _: &'static str) {
        writer.write_bool(*self);
    }
}

/// `buffer`: null is a value (ZooKeeper stores and returns null node data).
impl JuteField for Option<Bytes> {
    const MIN_LEN: usize = 4;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_buffer(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, field: &'static str) {
        writer.write_buffer(field, self.as_deref());
    }
}

impl JuteField for String {
    const MIN_LEN: usize = 4;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_ustring(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, field: &'static str) {
        writer.write_ustring(field, self);
    }
}

impl JuteField for Option<String> {
    const MIN_LEN: usize = 4;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_opt_ustring(field)
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, field: &'static str) {
        writer.write_opt_ustring(field, self.as_deref());
    }
}

impl<T: JuteField> JuteField for Vec<T> {
    const MIN_LEN: usize = 4;
    fn read_field(reader: &mut JuteReader, field: &'static str) -> Result<Self, JuteError> {
        reader.read_vector(field, T::MIN_LEN, |reader| T::read_field(reader, field))
    }
    fn write_field(&self, writer: &mut JuteWriter<'_>, field: &'static str) {
        writer.write_vector(field, self, |writer, item| item.write_field(writer, field));
    }
}

/// Declares a jute record: the struct with public fields in jute order, its
/// [`JuteRecord`] impl and its [`JuteField`] impl (so it can be nested and
/// put in vectors).
macro_rules! jute_record {
    (
        $(#[$meta:meta])*
        $name:ident = $jute:literal {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::zookeeper::jute::JuteRecord for $name {
            const NAME: &'static str = $jute;

            fn read(
                reader: &mut $crate::zookeeper::jute::JuteReader,
            ) -> Result<Self, $crate::zookeeper::jute::JuteError> {
                Ok(Self {
                    $( $field: <$ty as $crate::zookeeper::jute::JuteField>::read_field(
                        reader,
                        concat!($jute, ".", stringify!($field)),
                    )?, )*
                })
            }

            fn write(&self, writer: &mut $crate::zookeeper::jute::JuteWriter<'_>) {
                $( $crate::zookeeper::jute::JuteField::write_field(
                    &self.$field,
                    writer,
                    concat!($jute, ".", stringify!($field)),
                ); )*
            }
        }

        impl $crate::zookeeper::jute::JuteField for $name {
            const MIN_LEN: usize =
                0 $( + <$ty as $crate::zookeeper::jute::JuteField>::MIN_LEN )*;

            fn read_field(
                reader: &mut $crate::zookeeper::jute::JuteReader,
                _: &'static str,
            ) -> Result<Self, $crate::zookeeper::jute::JuteError> {
                <Self as $crate::zookeeper::jute::JuteRecord>::read(reader)
            }

            fn write_field(&self, writer: &mut $crate::zookeeper::jute::JuteWriter<'_>, _: &'static str) {
                <Self as $crate::zookeeper::jute::JuteRecord>::write(self, writer);
            }
        }
    };
}

pub(crate) use jute_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian() {
        let mut reader = JuteReader::from_slice(&[0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(reader.read_int("a"), Ok(-2));
        assert_eq!(reader.read_long("b"), Ok(256));
        assert_eq!(reader.finish("R"), Ok(()));
        let mut dst = BytesMut::new();
        let mut writer = JuteWriter::new(&mut dst);
        writer.write_int(-2);
        writer.write_long(256);
        assert_eq!(writer.finish(), Ok(()));
        assert_eq!(&dst[..], [0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn any_non_zero_bool_is_true() {
        let mut reader = JuteReader::from_slice(&[0, 1, 2, 0xff]);
        let bools: Vec<_> = (0..4).map(|_| reader.read_bool("b")).collect();
        assert_eq!(bools, [Ok(false), Ok(true), Ok(true), Ok(true)]);
        assert_eq!(
            reader.read_bool("R.b"),
            Err(JuteError::Truncated {
                field: "R.b",
                needed: 1,
                remaining: 0
            })
        );
    }

    #[test]
    fn buffer_null_empty_and_bytes() {
        let mut reader =
            JuteReader::from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 7, 8]);
        assert_eq!(reader.read_buffer("a"), Ok(None));
        assert_eq!(reader.read_buffer("b"), Ok(Some(Bytes::new())));
        assert_eq!(
            reader.read_buffer("c"),
            Ok(Some(Bytes::from_static(&[7, 8])))
        );
        let mut dst = BytesMut::new();
        let mut writer = JuteWriter::new(&mut dst);
        writer.write_buffer("a", None);
        writer.write_buffer("b", Some(&[]));
        writer.write_buffer("c", Some(&[7, 8]));
        assert_eq!(writer.finish(), Ok(()));
        assert_eq!(
            &dst[..],
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 7, 8]
        );
    }

    #[test]
    fn buffers_share_the_input() {
        let input = Bytes::from(vec![0, 0, 0, 3, 1, 2, 3]);
        let range = input.as_ptr_range();
        let mut reader = JuteReader::new(input.clone());
        let buffer = reader.read_buffer("b").ok().flatten().unwrap_or_default();
        assert!(range.contains(&buffer.as_ptr()), "buffer was copied");
    }

    #[test]
    fn negative_lengths_other_than_minus_one_are_refused() {
        let mut reader = JuteReader::from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            reader.read_buffer("R.data"),
            Err(JuteError::NegativeLength {
                field: "R.data",
                len: -2
            })
        );
        let mut reader = JuteReader::from_slice(&i32::MIN.to_be_bytes());
        assert_eq!(
            reader.read_vector("R.acl", 12, |reader| reader.read_int("x")),
            Err(JuteError::NegativeLength {
                field: "R.acl",
                len: i32::MIN
            })
        );
        assert_eq!(
            JuteError::NegativeLength {
                field: "R.acl",
                len: -7
            }
            .to_string(),
            "negative length -7 for R.acl: only -1 (null) may be negative"
        );
    }

    #[test]
    fn a_null_string_reads_as_empty_and_a_null_vector_is_refused_where_required() {
        // kazoo writes Id("auth", "") with a null id.
        let mut reader = JuteReader::from_slice(&[0xff; 8]);
        assert_eq!(reader.read_ustring("Id.id"), Ok(String::new()));
        assert_eq!(
            reader.read_vector("R.list", 4, |reader| reader.read_ustring("x")),
            Err(JuteError::Null { field: "R.list" })
        );
        let mut reader = JuteReader::from_slice(&[0xff; 4]);
        assert_eq!(reader.read_opt_ustring("R.path"), Ok(None));
    }

    #[test]
    fn vector_count_is_checked_before_allocating() {
        let mut reader = JuteReader::from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(
            reader.read_vector("R.children", 4, |reader| reader.read_ustring("x")),
            Err(JuteError::VectorOverrun {
                field: "R.children",
                count: i32::MAX,
                needed: 4 * (i32::MAX as usize),
                remaining: 4
            })
        );
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut reader = JuteReader::from_slice(&[0, 0, 0, 3, b'a', 0xc3, 0x28]);
        let err = reader.read_ustring("R.path");
        assert_eq!(
            err,
            Err(JuteError::InvalidUtf8 {
                field: "R.path",
                valid_up_to: 1,
                len: 3
            })
        );
        assert_eq!(
            err.err().map(|err| err.to_string()),
            Some("invalid UTF-8 in R.path at byte 1 of 3".to_owned())
        );
    }

    #[test]
    fn over_long_length_is_an_overrun() {
        let mut reader = JuteReader::from_slice(&[0, 0, 0, 9, b'a']);
        assert_eq!(
            reader.read_ustring("R.path"),
            Err(JuteError::LengthOverrun {
                field: "R.path",
                len: 9,
                remaining: 1
            })
        );
    }
}

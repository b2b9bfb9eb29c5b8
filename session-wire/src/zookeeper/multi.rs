//! multi and multiRead: each operation or result preceded by a
//! [`MultiHeader`], the list ended by the header `{-1, true, -1}`
//! (`MultiOperationRecord`, `MultiResponse` in ZooKeeper).

use super::codes::OpCode;
use super::jute::{JuteError, JuteReader, JuteRecord, JuteWriter};
use super::records::{
    CheckVersionRequest, Create2Response, CreateRequest, CreateResponse, CreateTtlRequest,
    DeleteRequest, ErrorResponse, GetChildrenRequest, GetChildrenResponse, GetDataRequest,
    GetDataResponse, MultiHeader, SetDataRequest, SetDataResponse,
};

/// The header that ends a multi's operations or results.
const TERMINATOR: MultiHeader = MultiHeader {
    op_type: -1,
    done: true,
    err: -1,
};

/// One operation of a multi (writes) or multiRead (reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create (1), answered by [`MultiResult::Create`].
    Create(CreateRequest),
    /// create2 (15).
    Create2(CreateRequest),
    /// createContainer (19).
    CreateContainer(CreateRequest),
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete(DeleteRequest),
    /// setData (5).
    SetData(SetDataRequest),
    /// check (13).
    Check(CheckVersionRequest),
    /// getData (4), multiRead only; its `watch` is ignored by the server.
    GetData(GetDataRequest),
    /// getChildren (8), multiRead only; its `watch` is ignored by the server.
    GetChildren(GetChildrenRequest),
}

impl MultiOp {
    /// The op's opcode, written in its [`MultiHeader`].
    #[must_use]
    pub fn op_code(&self) -> OpCode {
        match self {
            Self::Create(_) => OpCode::Create,
            Self::Create2(_) => OpCode::Create2,
            Self::CreateContainer(_) => OpCode::CreateContainer,
            Self::CreateTtl(_) => OpCode::CreateTtl,
            Self::Delete(_) => OpCode::Delete,
            Self::SetData(_) => OpCode::SetData,
            Self::Check(_) => OpCode::Check,
            Self::GetData(_) => OpCode::GetData,
            Self::GetChildren(_) => OpCode::GetChildren,
        }
    }

    /// Whether the op is a read (allowed in multiRead) rather than a write
    /// or check (allowed in multi).
    #[must_use]
    pub fn is_read(&self) -> bool {
        matches!(self, Self::GetData(_) | Self::GetChildren(_))
    }

    fn write(&self, writer: &mut JuteWriter<'_>) {
        match self {
            Self::Create(op) | Self::Create2(op) | Self::CreateContainer(op) => op.write(writer),
            Self::CreateTtl(op) => op.write(writer),
            Self::Delete(op) => op.write(writer),
            Self::SetData(op) => op.write(writer),
            Self::Check(op) => op.write(writer),
            Self::GetData(op) => op.write(writer),
            Self::GetChildren(op) => op.write(writer),
        }
    }
}

/// The body of a multi (14) or multiRead (22) request
/// (`MultiOperationRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    /// The operations, in order.
    pub ops: Vec<MultiOp>,
}

impl MultiRequest {
    /// Reads the operations of a multi (`read_ops` false) or multiRead
    /// (`read_ops` true) up to and including the terminator.
    ///
    /// Like ZooKeeper, only `done` ends the list: the terminator's type and
    /// err are not checked, nor is each header's err (-1 from every client).
    /// Unlike ZooKeeper, which only refuses mixing reads with writes, a read
    /// in a multi or a write in a multiRead is refused here; the server
    /// would fail it later anyway.
    ///
    /// # Errors
    /// [`JuteError::InvalidMultiOp`] for an op the multi cannot carry, or the
    /// error of the header or op that could not be read.
    pub fn read(reader: &mut JuteReader, read_ops: bool) -> Result<Self, JuteError> {
        let multi = if read_ops { "multiRead" } else { "multi" };
        let mut ops = Vec::new();
        loop {
            let header = MultiHeader::read(reader)?;
            if header.done {
                return Ok(Self { ops });
            }
            let op = match (OpCode::from_code(header.op_type), read_ops) {
                (Some(OpCode::Create), false) => MultiOp::Create(CreateRequest::read(reader)?),
                (Some(OpCode::Create2), false) => MultiOp::Create2(CreateRequest::read(reader)?),
                (Some(OpCode::CreateContainer), false) => {
                    MultiOp::CreateContainer(CreateRequest::read(reader)?)
                }
                (Some(OpCode::CreateTtl), false) => {
                    MultiOp::CreateTtl(CreateTtlRequest::read(reader)?)
                }
                (Some(OpCode::Delete), false) => MultiOp::Delete(DeleteRequest::read(reader)?),
                (Some(OpCode::SetData), false) => MultiOp::SetData(SetDataRequest::read(reader)?),
                (Some(OpCode::Check), false) => MultiOp::Check(CheckVersionRequest::read(reader)?),
                (Some(OpCode::GetData), true) => MultiOp::GetData(GetDataRequest::read(reader)?),
                (Some(OpCode::GetChildren), true) => {
                    MultiOp::GetChildren(GetChildrenRequest::read(reader)?)
                }
                _ => {
                    return Err(JuteError::InvalidMultiOp {
                        multi,
                        op_type: header.op_type,
                    });
                }
            };
            ops.push(op);
        }
    }

    /// Writes each op behind `MultiHeader(type, false, -1)`, then the
    /// terminator, as ZooKeeper's client does.
    pub fn write(&self, writer: &mut JuteWriter<'_>) {
        for op in &self.ops {
            MultiHeader {
                op_type: op.op_code().code(),
                done: false,
                err: -1,
            }
            .write(writer);
            op.write(writer);
        }
        TERMINATOR.write(writer);
    }
}

/// One result of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// Type 1: a create (opcode 1; and, before ZOOKEEPER-4026 was fixed in
    /// 3.7.2 / 3.8.2 / 3.9.0, every create).
    Create(CreateResponse),
    /// Type 15: a create2, createContainer or createTTL.
    Create2(Create2Response),
    /// Type 2: a delete; no body.
    Delete,
    /// Type 5: a setData.
    SetData(SetDataResponse),
    /// Type 13: a check; no body.
    Check,
    /// Type 4: a getData (multiRead).
    GetData(GetDataResponse),
    /// Type 8: a getChildren (multiRead).
    GetChildren(GetChildrenResponse),
    /// Type -1: a failed op (or, in a failed multi, an op that did not fail
    /// itself: 0 before the failing op, -2 after it).
    Error(ErrorResponse),
}

impl MultiResult {
    /// The type written in the result's [`MultiHeader`].
    #[must_use]
    pub fn op_code(&self) -> OpCode {
        match self {
            Self::Create(_) => OpCode::Create,
            Self::Create2(_) => OpCode::Create2,
            Self::Delete => OpCode::Delete,
            Self::SetData(_) => OpCode::SetData,
            Self::Check => OpCode::Check,
            Self::GetData(_) => OpCode::GetData,
            Self::GetChildren(_) => OpCode::GetChildren,
            Self::Error(_) => OpCode::Error,
        }
    }
}

/// The body of a multi or multiRead reply (`MultiResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    /// One result per op, in order.
    pub results: Vec<MultiResult>,
}

impl MultiResponse {
    /// Reads results up to and including the terminator. As in ZooKeeper's
    /// `MultiResponse.deserialize`, an error result's code is taken from its
    /// `ErrorResponse` body and the headers' err fields are not checked.
    ///
    /// # Errors
    /// [`JuteError::InvalidMultiOp`] for an unknown result type, or the error
    /// of the header or body that could not be read.
    pub fn read(reader: &mut JuteReader) -> Result<Self, JuteError> {
        let mut results = Vec::new();
        loop {
            let header = MultiHeader::read(reader)?;
            if header.done {
                return Ok(Self { results });
            }
            let result = match OpCode::from_code(header.op_type) {
                Some(OpCode::Create) => MultiResult::Create(CreateResponse::read(reader)?),
                Some(OpCode::Create2) => MultiResult::Create2(Create2Response::read(reader)?),
                Some(OpCode::Delete) => MultiResult::Delete,
                Some(OpCode::SetData) => MultiResult::SetData(SetDataResponse::read(reader)?),
                Some(OpCode::Check) => MultiResult::Check,
                Some(OpCode::GetData) => MultiResult::GetData(GetDataResponse::read(reader)?),
                Some(OpCode::GetChildren) => {
                    MultiResult::GetChildren(GetChildrenResponse::read(reader)?)
                }
                Some(OpCode::Error) => MultiResult::Error(ErrorResponse::read(reader)?),
                _ => {
                    return Err(JuteError::InvalidMultiOp {
                        multi: "MultiResponse",
                        op_type: header.op_type,
                    });
                }
            };
            results.push(result);
        }
    }

    /// Writes each result behind `MultiHeader(type, false, err)` (err 0, or
    /// the code for an error result), then the terminator, as ZooKeeper's
    /// server does.
    pub fn write(&self, writer: &mut JuteWriter<'_>) {
        for result in &self.results {
            let err = match result {
                MultiResult::Error(error) => error.err,
                _ => 0,
            };
            MultiHeader {
                op_type: result.op_code().code(),
                done: false,
                err,
            }
            .write(writer);
            match result {
                MultiResult::Create(body) => body.write(writer),
                MultiResult::Create2(body) => body.write(writer),
                MultiResult::Delete | MultiResult::Check => {}
                MultiResult::SetData(body) => body.write(writer),
                MultiResult::GetData(body) => body.write(writer),
                MultiResult::GetChildren(body) => body.write(writer),
                MultiResult::Error(body) => body.write(writer),
            }
        }
        TERMINATOR.write(writer);
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;

    fn write_request(request: &MultiRequest) -> Bytes {
        let mut dst = BytesMut::new();
        let mut writer = JuteWriter::new(&mut dst);
        request.write(&mut writer);
        assert_eq!(writer.finish(), Ok(()));
        dst.freeze()
    }

    #[test]
    fn empty_multi_is_just_the_terminator() {
        let bytes = write_request(&MultiRequest::default());
        assert_eq!(
            &bytes[..],
            [0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
        let mut reader = JuteReader::new(bytes);
        assert_eq!(
            MultiRequest::read(&mut reader, false),
            Ok(MultiRequest::default())
        );
        assert_eq!(reader.remaining(), 0);
    }

    #[test]
    fn reads_and_writes_do_not_mix() {
        let read = MultiRequest {
            ops: vec![MultiOp::GetData(GetDataRequest {
                path: "/a".to_owned(),
                watch: false,
            })],
        };
        let bytes = write_request(&read);
        assert_eq!(
            MultiRequest::read(&mut JuteReader::new(bytes.clone()), false),
            Err(JuteError::InvalidMultiOp {
                multi: "multi",
                op_type: 4
            })
        );
        assert_eq!(
            MultiRequest::read(&mut JuteReader::new(bytes), true),
            Ok(read)
        );
        let write = MultiRequest {
            ops: vec![MultiOp::Check(CheckVersionRequest {
                path: "/a".to_owned(),
                version: 1,
            })],
        };
        assert_eq!(
            MultiRequest::read(&mut JuteReader::new(write_request(&write)), true),
            Err(JuteError::InvalidMultiOp {
                multi: "multiRead",
                op_type: 13
            })
        );
    }

    #[test]
    fn unterminated_multi_is_truncated() {
        let bytes = write_request(&MultiRequest::default());
        let cut = bytes.slice(..bytes.len() - 1);
        assert_eq!(
            MultiRequest::read(&mut JuteReader::new(cut), false),
            Err(JuteError::Truncated {
                field: "MultiHeader.err",
                needed: 4,
                remaining: 3
            })
        );
    }

    #[test]
    fn error_result_header_carries_the_code() {
        let response = MultiResponse {
            results: vec![
                MultiResult::Error(ErrorResponse { err: 0 }),
                MultiResult::Error(ErrorResponse { err: -103 }),
                MultiResult::Check,
            ],
        };
        let mut dst = BytesMut::new();
        let mut writer = JuteWriter::new(&mut dst);
        response.write(&mut writer);
        assert_eq!(writer.finish(), Ok(()));
        assert_eq!(
            &dst[13..26],
            [
                0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x99, 0xff, 0xff, 0xff, 0x99
            ]
        );
        let mut reader = JuteReader::new(dst.freeze());
        assert_eq!(MultiResponse::read(&mut reader), Ok(response));
        assert_eq!(reader.remaining(), 0);
    }
}

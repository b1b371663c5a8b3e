//! The `/kith/dm/1.0.0` request-response codec: length-prefixed frames with hard limits.
//!
//! A request is `u32 BE length || envelope bytes` (at most [`MAX_DM_FRAME_BYTES`]); a response
//! is `u32 BE length || postcard(DmResponse)` (at most [`MAX_DM_RESPONSE_BYTES`]). A frame that
//! announces more than its limit is refused before anything is read or allocated.

use std::io;

use futures::prelude::*;
use kith_protocol::limits::{MAX_DM_FRAME_BYTES, MAX_DM_RESPONSE_BYTES};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Protocol name of direct messages.
pub const DM_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/dm/1.0.0");

/// The recipient's answer to a delivered envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DmResponse {
    /// The recipient holds the envelope durably (or already held it: a duplicate is answered
    /// the same way, so the sender stops retrying).
    Accepted,
    /// A permanent refusal, with the reason the recipient logged.
    Rejected { reason: String },
}

/// One inbound request as read from the stream. A frame that breaks the framing rules is
/// reported as `Invalid` (with the reason) rather than as a stream error, so the node can log
/// the drop with the sending peer and answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Envelope(Vec<u8>),
    Invalid(String),
}

/// Codec for `/kith/dm/1.0.0`.
#[derive(Clone, Debug, Default)]
pub struct DmCodec;

/// Reads one length-prefixed frame of at most `limit` bytes.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes over the limit of {limit}"),
        ));
    }
    let mut buf = vec![0u8; n];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let n = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&n.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for DmCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = DmResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, MAX_DM_FRAME_BYTES).await {
            Ok(b) => Ok(Frame::Envelope(b)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Ok(Frame::Invalid("truncated frame".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Ok(Frame::Invalid(format!("oversized: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DmResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let b = read_frame(io, MAX_DM_RESPONSE_BYTES).await?;
        postcard::from_bytes(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let Frame::Envelope(req) = req else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot send an invalid frame",
            ));
        };
        if req.len() > MAX_DM_FRAME_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "envelope over the frame limit",
            ));
        }
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: DmResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut b = postcard::to_allocvec(&res)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if b.len() > MAX_DM_RESPONSE_BYTES {
            // Keep responses within their limit: trim an over-long reason.
            b = postcard::to_allocvec(&DmResponse::Rejected {
                reason: "rejected".into(),
            })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        write_frame(io, &b).await
    }
}

/// Protocol name of the relay mailbox.
pub const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/mailbox/1.0.0");

/// Protocol name of blob (image) transfer.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/blob/1.0.0");

/// A request-response codec of length-prefixed postcard frames, with a size limit each way.
/// A frame over its limit is refused before it is read (inbound) or sent (outbound).
pub struct PostcardCodec<Req, Resp> {
    request_limit: usize,
    response_limit: usize,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for PostcardCodec<Req, Resp> {
    fn clone(&self) -> Self {
        PostcardCodec {
            request_limit: self.request_limit,
            response_limit: self.response_limit,
            _types: std::marker::PhantomData,
        }
    }
}

impl<Req, Resp> PostcardCodec<Req, Resp> {
    pub fn new(request_limit: usize, response_limit: usize) -> Self {
        PostcardCodec {
            request_limit,
            response_limit,
            _types: std::marker::PhantomData,
        }
    }
}

/// Codec for `/kith/mailbox/1.0.0`, with the limits of [`kith_protocol::mailbox`].
pub type MailboxCodec =
    PostcardCodec<kith_protocol::mailbox::MailboxRequest, kith_protocol::mailbox::MailboxResponse>;

/// The mailbox codec with its limits.
pub fn mailbox_codec() -> MailboxCodec {
    PostcardCodec::new(
        kith_protocol::mailbox::MAX_MAILBOX_REQUEST_BYTES,
        kith_protocol::mailbox::MAX_MAILBOX_RESPONSE_BYTES,
    )
}

/// Codec for `/kith/blob/1.0.0`: one chunk request, one chunk (or `Missing`) in response.
pub type BlobCodec =
    PostcardCodec<kith_protocol::blob::ChunkRequest, kith_protocol::blob::ChunkResponse>;

/// The blob codec with its limits.
pub fn blob_codec() -> BlobCodec {
    PostcardCodec::new(
        kith_protocol::limits::MAX_BLOB_REQUEST_BYTES,
        kith_protocol::limits::MAX_BLOB_RESPONSE_BYTES,
    )
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn write_postcard<T, V>(io: &mut T, v: &V, limit: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    V: Serialize,
{
    let b = postcard::to_allocvec(v).map_err(invalid)?;
    if b.len() > limit {
        return Err(invalid(format!(
            "frame of {} bytes over its limit of {limit}",
            b.len()
        )));
    }
    write_frame(io, &b).await
}

impl<Req, Resp> libp2p::request_response::Codec for PostcardCodec<Req, Resp>
where
    Req: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let b = read_frame(io, self.request_limit).await?;
        kith_protocol::decode_exact(&b).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let b = read_frame(io, self.response_limit).await?;
        kith_protocol::decode_exact(&b).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_postcard(io, &req, self.request_limit).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_postcard(io, &res, self.response_limit).await
    }
}

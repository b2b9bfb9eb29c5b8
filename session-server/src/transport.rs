//! A client connection's socket, plain TCP or TLS, used the way
//! [`crate::connection`] uses it: through readiness (`readable`, then
//! `try_read_buf` until it would block; `writable`, then `try_write`), so
//! reading and writing never wait on each other.
//!
//! TLS is rustls's connection state driven by hand over the same socket:
//! records are read from the socket into rustls and decrypted bytes taken
//! out; bytes to send go into rustls and its records out to the socket. The
//! plain path is the socket itself, untouched.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The first byte of every TLS connection: a handshake record.
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The alert record answered to plain text: content type alert (21),
/// version TLS 1.2, length 2, level fatal (2), protocol_version (70).
pub(crate) const PLAINTEXT_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];

/// Why a TLS connection failed, carried inside the `io::Error` the socket
/// returns (kind `InvalidData`), for the connection to count and log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsFailure {
    /// The first bytes are not a TLS record: a plain-text client on a TLS
    /// listener.
    #[error("plain text on a TLS port (first byte {0:#04x})")]
    Plaintext(u8),
    /// rustls refused the handshake or a record.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

impl TlsFailure {
    /// The failure inside `err`, if it is one.
    pub(crate) fn of(err: &io::Error) -> Option<&TlsFailure> {
        err.get_ref()?.downcast_ref::<TlsFailure>()
    }
}

/// A client connection's socket.
#[derive(Debug)]
pub(crate) enum Socket {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP; boxed, so a plain connection stays small.
    Tls(Box<TlsSocket>),
}

/// rustls's server connection and the socket under it.
#[derive(Debug)]
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    tls: rustls::ServerConnection,
    /// Whether any byte has come: the first must start a TLS record.
    started: bool,
}

/// The socket as `std::io` reader and writer, never blocking: an empty
/// socket or a full one is `WouldBlock`.
struct Nonblocking<'a> {
    tcp: &'a TcpStream,
    /// The first byte read, for telling plain text from TLS.
    first: Option<u8>,
}

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.tcp.try_read(buf)?;
        if read > 0 && self.first.is_none() {
            self.first = Some(buf[0]);
        }
        Ok(read)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket {
    /// A TLS socket over `tcp`, speaking as a server with `config`.
    pub(crate) fn tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Socket> {
        let tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Socket::Tls(Box::new(TlsSocket {
            tcp,
            tls,
            started: false,
        })))
    }

    /// Whether this is a TLS socket.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(tcp) => tcp,
            Socket::Tls(tls) => &tls.tcp,
        }
    }

    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Resolves when the socket may have bytes to read.
    ///
    /// Through `poll_read_ready`, which keeps the waker in the socket's own
    /// slot: tokio's `readable()` future carries a waiter of its own (168
    /// bytes), and the one awaited while a connection idles is part of its
    /// future (and an `async fn` wrapping it would add a state of its own).
    /// Only one task may wait on a socket this way, which is how a
    /// connection uses it.
    pub(crate) fn readable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| self.tcp().poll_read_ready(cx))
    }

    /// Resolves when the socket may take bytes (through `poll_write_ready`,
    /// as [`readable`](Self::readable)).
    pub(crate) fn writable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| self.tcp().poll_write_ready(cx))
    }

    /// Whether TLS has records of its own to send (handshake messages,
    /// alerts, or data it took and has not written yet): the connection
    /// must then wait for the socket to be writable even with nothing of
    /// its own to write.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Socket::Plain(_) => false,
            Socket::Tls(tls) => tls.tls.wants_write(),
        }
    }

    /// Reads what is there now into `buf`'s spare capacity (which must not
    /// be empty): `Ok(0)` is the end of the stream, `WouldBlock` means
    /// nothing (decrypted) was there. A TLS failure is an `InvalidData`
    /// error carrying a [`TlsFailure`].
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_read_buf(buf),
            Socket::Tls(tls) => tls.read(buf),
        }
    }

    /// Writes from `data` what the socket (or TLS's buffer) takes now;
    /// `WouldBlock` when it takes nothing.
    pub(crate) fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.try_write(data),
            Socket::Tls(tls) => tls.write(data),
        }
    }

    /// Sends what TLS has pending, as far as the socket takes it now.
    pub(crate) fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(_) => Ok(()),
            Socket::Tls(tls) => tls.send_records(),
        }
    }

    /// Ends the sending side: TLS's close_notify (sent as far as the socket
    /// takes it) if the handshake was done, then the socket's FIN. (A peer
    /// that never spoke TLS gets no TLS record.)
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        if let Socket::Tls(tls) = self {
            if tls.tls.is_handshaking() {
                return tls.tcp.shutdown().await;
            }
            tls.tls.send_close_notify();
            let _ = tls.send_records();
        }
        match self {
            Socket::Plain(tcp) => tcp.shutdown().await,
            Socket::Tls(tls) => tls.tcp.shutdown().await,
        }
    }

    /// Reads and drops raw bytes (what the client still sends while the
    /// connection lingers); `Ok(0)` at the end of the stream.
    pub(crate) fn try_discard(&self, scratch: &mut [u8]) -> io::Result<usize> {
        self.tcp().try_read(scratch)
    }
}

impl TlsSocket {
    fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // Decrypted bytes first: those already taken from the socket.
            match self.take_plaintext(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let mut socket = Nonblocking {
                tcp: &self.tcp,
                first: None,
            };
            let read = self.tls.read_tls(&mut socket)?;
            if read == 0 {
                return Ok(0);
            }
            if !self.started {
                self.started = true;
                if let Some(first) = socket.first.filter(|&byte| byte != TLS_HANDSHAKE_RECORD) {
                    // A fatal protocol_version alert, in a record any TLS
                    // library reads: a client that meant to speak TLS
                    // learns at once that it did not (best effort).
                    let _ = self.tcp.try_write(&PLAINTEXT_ALERT);
                    return Err(failure(TlsFailure::Plaintext(first)));
                }
            }
            if let Err(err) = self.tls.process_new_packets() {
                // rustls queued an alert saying why: send it if the socket
                // takes it now, so the client learns the reason.
                let _ = self.send_records();
                return Err(failure(TlsFailure::Tls(err)));
            }
            // Handshake messages to answer go out at once; the rest when
            // the socket is writable.
            self.send_records()?;
        }
    }

    /// Moves the decrypted bytes rustls holds into `buf`, as many as fit;
    /// `WouldBlock` when it holds none, `Ok(0)` after the client's
    /// close_notify.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(256);
        }
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let taken = self.tls.reader().read(&mut buf[start..]);
        buf.truncate(start + *taken.as_ref().unwrap_or(&0));
        taken
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let taken = self.tls.writer().write(data)?;
        match self.send_records() {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => return Err(err),
            _ => {}
        }
        if taken == 0 && !data.is_empty() {
            // TLS's buffer is full until the socket takes more.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Writes TLS's pending records as far as the socket takes them now.
    fn send_records(&mut self) -> io::Result<()> {
        let mut socket = Nonblocking {
            tcp: &self.tcp,
            first: None,
        };
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

fn failure(failure: TlsFailure) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, failure)
}

//! The bytes under a connection: the plain socket, or TLS over it. Reads
//! and writes go through the same `AsyncRead`/`AsyncWrite` either way; only
//! plain sockets take the vectored `sendmsg` path, since TLS must encrypt
//! the response bytes in user space anyway.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

use super::{tls, vectored};

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What the TLS handshake learnt of the client.
pub struct Accepted {
    pub transport: Transport,
    /// The subject of the client's verified certificate, if it sent one.
    pub client_subject: Option<String>,
}

impl Transport {
    /// The socket for vectored writes; `None` when bytes must go through TLS.
    pub fn raw_fd(&self) -> Option<RawFd> {
        match self {
            Transport::Plain(stream) => Some(stream.as_raw_fd()),
            Transport::Tls(_) => None,
        }
    }
}

/// Runs the TLS handshake when `tls` is set; a failure (a plaintext client
/// on a TLS port, an untrusted certificate, a silent client) is the reason
/// the connection closes.
pub async fn accept(stream: TcpStream, tls: Option<&tls::ShardTls>) -> Result<Accepted, String> {
    let Some(tls) = tls else {
        return Ok(Accepted {
            transport: Transport::Plain(stream),
            client_subject: None,
        });
    };
    let acceptor = tls.acceptor();
    let handshake =
        futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
            glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT).await;
            None
        })
        .await;
    match handshake {
        None => Err(format!(
            "TLS handshake not completed within {TLS_HANDSHAKE_TIMEOUT:?}"
        )),
        Some(Err(error)) => Err(format!("TLS handshake failed: {error}")),
        Some(Ok(stream)) => {
            let client_subject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::subject_name);
            Ok(Accepted {
                transport: Transport::Tls(Box::new(stream)),
                client_subject,
            })
        }
    }
}

/// Writes every piece, in order: vectored on a plain socket (`fd`), else
/// through the writer (TLS), flushed so the record reaches the socket.
pub async fn write_pieces<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: Option<RawFd>,
    pieces: &[Bytes],
) -> io::Result<()> {
    match fd {
        Some(fd) => vectored::write_all(writer, fd, pieces).await,
        None => {
            for piece in pieces {
                writer.write_all(piece).await?;
            }
            writer.flush().await
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_close(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}

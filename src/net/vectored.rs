//! Vectored response writes: glommio 0.9's TcpStream has no writev, so a
//! response's pieces (small headers and the stored record slices) go out in
//! one non-blocking `sendmsg`; only when the socket buffer is full does the
//! rest go through glommio's ring, which waits for room.

use std::io;
use std::os::unix::io::RawFd;

use bytes::Bytes;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};

/// Pieces per `sendmsg` (Linux's IOV_MAX).
pub const IOVECS_PER_SEND_MAX: usize = 1024;

/// Sends as much of `pieces` (starting `skip` bytes into the first) as the
/// socket takes right now; returns the bytes sent (0 when it would block).
fn send_now(fd: RawFd, pieces: &[Bytes], skip: usize) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(pieces.len().min(IOVECS_PER_SEND_MAX));
    for (i, piece) in pieces.iter().take(IOVECS_PER_SEND_MAX).enumerate() {
        let start = if i == 0 { skip } else { 0 };
        let bytes = &piece[start..];
        if !bytes.is_empty() {
            iovecs.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
    }
    if iovecs.is_empty() {
        return Ok(0);
    }
    // SAFETY: a zeroed msghdr is valid; it points at `iovecs`, which point into
    // `pieces`; both outlive the call, and the kernel only reads them.
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = iovecs.len() as _;
        libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        e if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        e => Err(e),
    }
}

/// Writes every piece, in order. `fd` must be the socket behind `writer`, with
/// no glommio write of it in flight (each write is awaited to completion).
pub async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    fd: RawFd,
    pieces: &[Bytes],
) -> io::Result<()> {
    let mut index = 0; // first piece not fully sent
    let mut skip = 0; // bytes of it already sent
    while index < pieces.len() {
        let mut sent = send_now(fd, &pieces[index..], skip)?;
        if sent == 0 {
            // The socket is full: glommio waits for room and sends the rest of this piece.
            writer.write_all(&pieces[index][skip..]).await?;
            index += 1;
            skip = 0;
            continue;
        }
        while sent > 0 && index < pieces.len() {
            let left = pieces[index].len() - skip;
            if sent >= left {
                sent -= left;
                index += 1;
                skip = 0;
            } else {
                skip += sent;
                sent = 0;
            }
        }
    }
    Ok(())
}

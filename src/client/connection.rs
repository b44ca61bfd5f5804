//! One blocking Kafka connection: length-prefixed frames read into one
//! buffer, requests encoded with kafka-protocol, versions negotiated with
//! ApiVersions.
//!
//! Reads go through [`Connection::fill`] and [`Connection::next_frame`] so a
//! pipelining caller can poll, read what is there and take every complete
//! frame; [`Connection::call`] is the one-request-one-answer convenience.
//! The bytes go over plain TCP or TLS ([`super::stream`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::stream::{Stream, TlsClient};
use super::{ClientError, Versions, ERROR_UNSUPPORTED_VERSION};

/// Largest response frame accepted; a fetch answer is bounded by its
/// max_bytes plus headers.
pub const FRAME_BYTES_MAX: usize = 256 << 20;
/// Bytes asked of the kernel per read(2) when no bigger frame is pending.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
const LENGTH_PREFIX_BYTES: usize = 4;
/// The ApiVersions version tried first; v0 is the fallback every broker answers.
const API_VERSIONS_VERSION_MAX: i16 = 3;

/// What became of a connection after a request the broker may refuse.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerState {
    /// The broker closed (or reset) the connection.
    Closed,
    /// The broker answered with a frame of this many bytes.
    Answered(usize),
    /// Nothing happened within the wait.
    Open,
}

/// A blocking TCP (or TLS) connection that reads length-prefixed Kafka frames.
pub struct Connection {
    stream: Stream,
    read_buf: BytesMut,
    next_correlation_id: i32,
    client_id: &'static str,
    versions: Versions,
    /// What [`set_io_timeout`](Self::set_io_timeout) chose, restored after a bounded wait.
    io_timeout: Option<Duration>,
}

impl Connection {
    /// Connects with the OS's connect timeout and no I/O timeouts.
    pub fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
        client_id: &'static str,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(&addr).map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        Self::from_stream(stream, client_id)
    }

    /// Connects within `timeout`, which then bounds every read and write too.
    pub fn connect_timeout(
        addr: SocketAddr,
        timeout: Duration,
        client_id: &'static str,
    ) -> Result<Self, ClientError> {
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let mut connection = Self::from_stream(stream, client_id)?;
        connection.set_io_timeout(Some(timeout))?;
        Ok(connection)
    }

    /// [`connect_timeout`](Self::connect_timeout), then the TLS handshake
    /// with the broker named `host` (checked against its certificate).
    pub fn connect_tls(
        addr: SocketAddr,
        host: &str,
        tls: &TlsClient,
        timeout: Duration,
        client_id: &'static str,
    ) -> Result<Self, ClientError> {
        let mut connection = Self::connect_timeout(addr, timeout, client_id)?;
        let Stream::Plain(tcp) = connection.stream else {
            unreachable!("connect_timeout makes a plain stream");
        };
        connection.stream = tls.connect(host, tcp)?;
        Ok(connection)
    }

    /// Connects to `addr` (`host:port`) as `security` says (TLS checked
    /// against `host`), negotiates versions and logs in with SASL.
    pub fn open(
        addr: &str,
        timeout: Duration,
        client_id: &'static str,
        security: &super::ClientSecurity,
    ) -> Result<Self, ClientError> {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?
            .next()
            .ok_or_else(|| ClientError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(ErrorKind::NotFound, "no addresses"),
            })?;
        let mut connection = match &security.tls {
            None => Self::connect_timeout(resolved, timeout, client_id)?,
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Self::connect_tls(resolved, host, tls, timeout, client_id)?
            }
        };
        connection.negotiate()?;
        if let Some(login) = &security.sasl {
            connection.authenticate(login)?;
        }
        Ok(connection)
    }

    fn from_stream(stream: TcpStream, client_id: &'static str) -> Result<Self, ClientError> {
        // Requests are small and latency is measured: never wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: Stream::Plain(stream),
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            next_correlation_id: 1,
            client_id,
            versions: Versions::default(),
            io_timeout: None,
        })
    }

    /// Bounds each blocking read and write; `None` waits forever.
    pub fn set_io_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream.tcp().set_read_timeout(timeout)?;
        self.stream.tcp().set_write_timeout(timeout)?;
        self.io_timeout = timeout;
        Ok(())
    }

    /// The broker's certificate (DER) on a TLS connection.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.stream.peer_certificate()
    }

    pub fn client_id(&self) -> &'static str {
        self.client_id
    }

    /// The ranges learnt by [`negotiate`](Self::negotiate); empty before it.
    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    /// Appends a complete frame for `request` to `buf` under a fresh
    /// correlation id, which it returns.
    pub fn encode<R: Request>(
        &mut self,
        buf: &mut BytesMut,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id();
        encode_request(buf, request, version, correlation_id, self.client_id)?;
        Ok(correlation_id)
    }

    /// Writes bytes as they are.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Closes the writing half (the broker sees end of stream).
    pub fn shutdown_write(&self) -> Result<(), ClientError> {
        self.stream.tcp().shutdown(Shutdown::Write)?;
        Ok(())
    }

    /// Waits up to `timeout` for bytes to read; `true` when readable.
    pub fn poll_readable(&mut self, timeout: Duration) -> Result<bool, ClientError> {
        if self.stream.has_buffered() {
            return Ok(true);
        }
        let mut fds = libc::pollfd {
            fd: self.stream.tcp().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // ppoll, not poll: a millisecond timeout would round sub-millisecond
        // waits down to 0 and spin.
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd and timespec for the duration of the call.
        let n = unsafe { libc::ppoll(&mut fds, 1, &ts, std::ptr::null()) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(error.into());
        }
        Ok(n > 0)
    }

    /// One read(2) into the buffer; blocks (up to the I/O timeout) if nothing
    /// is there. `Ok(0)` when interrupted by a signal.
    pub fn fill(&mut self) -> Result<usize, ClientError> {
        if let Stream::Tls(_) = self.stream {
            return self.fill_tls();
        }
        self.read_buf.reserve(self.read_size());
        let spare = self.read_buf.spare_capacity_mut();
        // Read straight into spare capacity: zeroing a large buffer before every
        // read would cost as much as the copy itself at GB/s.
        // SAFETY: the pointer and length describe the buffer's spare capacity;
        // read(2) initialises the first n bytes, and only those are exposed.
        let n = unsafe {
            libc::read(
                self.stream.tcp().as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
            )
        };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(error.into());
        }
        if n == 0 {
            return Err(ClientError::Closed);
        }
        // SAFETY: read(2) wrote n bytes into the spare capacity.
        unsafe { self.read_buf.set_len(self.read_buf.len() + n as usize) };
        Ok(n as usize)
    }

    /// [`fill`](Self::fill) through TLS: decrypted bytes are copied out
    /// of rustls anyway, so the buffer is zeroed before the read.
    fn fill_tls(&mut self) -> Result<usize, ClientError> {
        let start = self.read_buf.len();
        self.read_buf.resize(start + self.read_size(), 0);
        let read = self.stream.read(&mut self.read_buf[start..]);
        self.read_buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => Ok(n),
            Err(error) if error.kind() == ErrorKind::Interrupted => Ok(0),
            Err(error) => Err(error.into()),
        }
    }

    /// Room for the rest of a pending frame in one read, at least a chunk; a
    /// length beyond the limit reserves nothing extra (next_frame refuses it).
    fn read_size(&self) -> usize {
        match self.pending_frame_bytes() {
            Some(Ok(length)) if length + LENGTH_PREFIX_BYTES > self.read_buf.len() => {
                (length + LENGTH_PREFIX_BYTES - self.read_buf.len()).max(READ_CHUNK_BYTES)
            }
            _ => READ_CHUNK_BYTES,
        }
    }

    /// The length prefix of the next frame, checked against the limit, once
    /// its four bytes are buffered.
    fn pending_frame_bytes(&self) -> Option<Result<usize, ClientError>> {
        let prefix: [u8; LENGTH_PREFIX_BYTES] =
            self.read_buf.get(..LENGTH_PREFIX_BYTES)?.try_into().ok()?;
        let length = i32::from_be_bytes(prefix);
        Some(
            usize::try_from(length)
                .ok()
                .filter(|&bytes| bytes <= FRAME_BYTES_MAX)
                .ok_or(ClientError::FrameLength {
                    length,
                    limit: FRAME_BYTES_MAX,
                }),
        )
    }

    /// A complete frame (without its length prefix) if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        let Some(length) = self.pending_frame_bytes().transpose()? else {
            return Ok(None);
        };
        if self.read_buf.len() < length + LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        self.read_buf.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(self.read_buf.split_to(length).freeze()))
    }

    /// Blocks until one whole frame is there and returns it (without its prefix).
    pub fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.fill()?;
        }
    }

    /// Reads one frame and decodes it as the answer to `R` v`version` sent
    /// under `correlation_id`.
    pub fn receive<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let frame = self.read_frame()?;
        let (got, response) = decode_response::<R>(frame, version)?;
        if got != correlation_id {
            return Err(ClientError::CorrelationId {
                got,
                expected: correlation_id,
            });
        }
        Ok(response)
    }

    /// Sends one request and waits for its answer.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let mut buf = BytesMut::new();
        let correlation_id = self.encode(&mut buf, request, version)?;
        self.write_all(&buf)?;
        self.receive::<R>(correlation_id, version)
    }

    /// Sends ApiVersions (v3, then v0 if the broker refuses v3) and keeps the
    /// advertised ranges for [`versions`](Self::versions).
    pub fn negotiate(&mut self) -> Result<ApiVersionsResponse, ClientError> {
        let request = api_versions_request(API_VERSIONS_VERSION_MAX, self.client_id);
        let mut response = self.call(&request, API_VERSIONS_VERSION_MAX)?;
        if response.error_code == ERROR_UNSUPPORTED_VERSION {
            response = self.call(&api_versions_request(0, self.client_id), 0)?;
        }
        if response.error_code != 0 {
            return Err(ClientError::ApiVersions(response.error_code));
        }
        self.versions = Versions::from_response(&response);
        Ok(response)
    }

    /// Waits up to `timeout` for the broker to close the connection or start
    /// an answer; the I/O timeout is restored afterwards.
    pub fn peer_state(&mut self, timeout: Duration) -> Result<PeerState, ClientError> {
        let deadline = Instant::now() + timeout;
        self.stream
            .tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let state = loop {
            if let Some(Ok(length)) = self.pending_frame_bytes() {
                break PeerState::Answered(length);
            }
            match self.fill() {
                Ok(0) if Instant::now() >= deadline => break PeerState::Open,
                Ok(_) => {}
                Err(ClientError::Io(error))
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break PeerState::Open
                }
                Err(_) => break PeerState::Closed,
            }
        };
        self.stream.tcp().set_read_timeout(self.io_timeout)?;
        Ok(state)
    }
}

/// An ApiVersions request; the client software fields exist from v3 on.
pub fn api_versions_request(version: i16, software_name: &'static str) -> ApiVersionsRequest {
    let request = ApiVersionsRequest::default();
    if version < 3 {
        return request;
    }
    request
        .with_client_software_name(StrBytes::from_static_str(software_name))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

/// Appends a complete frame (length prefix, header, body) to `buf`.
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
) -> Result<(), ClientError> {
    let encode_error = |error: anyhow::Error| ClientError::Encode {
        api_key: R::KEY,
        version,
        message: format!("{error:#}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let start = buf.len();
    buf.put_i32(0);
    header
        .encode(buf, R::header_version(version))
        .map_err(encode_error)?;
    request.encode(buf, version).map_err(encode_error)?;
    let length = i32::try_from(buf.len() - start - LENGTH_PREFIX_BYTES)
        .map_err(|_| encode_error(anyhow::anyhow!("frame beyond 2 GiB")))?;
    buf[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// Decodes a response frame (without its length prefix) as the answer to
/// `R` v`version`; returns its correlation id and body.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<(i32, R::Response), ClientError> {
    let decode_error = |error: anyhow::Error| ClientError::Decode {
        api_key: R::KEY,
        version,
        message: format!("{error:#}"),
    };
    let header = ResponseHeader::decode(
        &mut frame,
        <R::Response as HeaderVersion>::header_version(version),
    )
    .map_err(decode_error)?;
    let response = R::Response::decode(&mut frame, version).map_err(decode_error)?;
    Ok((header.correlation_id, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    #[test]
    fn encoded_request_carries_its_length_header_and_body() {
        let request = FetchRequest::default().with_max_wait_ms(7);
        for version in 4..=12 {
            let mut buf = BytesMut::new();
            encode_request(&mut buf, &request, version, 99, "ringlog-test").expect("encodes");
            let mut frame = buf.freeze();
            assert_eq!(frame.get_i32() as usize, frame.len());
            let header = decode_request_header_from_buffer(&mut frame).expect("header");
            assert_eq!(
                (header.correlation_id, header.request_api_version),
                (99, version)
            );
            let back = FetchRequest::decode(&mut frame, version).expect("body");
            assert_eq!(back.max_wait_ms, 7);
        }
    }
}

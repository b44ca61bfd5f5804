//! The network edge: framing with size limits, and the per-connection loop
//! that keeps responses in request order while requests are pipelined.

pub mod connection;
pub mod frame;
pub mod vectored;

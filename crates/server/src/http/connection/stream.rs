//! `LeanStream`: what the lean path needs of a connection's stream, so
//! that it serves any stream that can give it, with static dispatch.
//!
//! The lean path splits a connection in two: its task reads requests from
//! one half, while the other half sits in the waiter its polls park, so
//! that a publish can write a held poll's answer straight to the socket
//! with one non-blocking write, without waking the poll's task. A
//! connection handed over to hyper is put back together first. A TLS
//! stream can do all of this too, which is why the lean path asks for this
//! trait rather than for `TcpStream`.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A connection's stream, as the lean path uses it.
pub(crate) trait LeanStream:
    AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static
{
    /// The half the connection's task reads requests from.
    type Read: AsyncRead + Unpin + Send + 'static;
    /// The half a publish writes answers to, from any thread.
    type Write: Send + Sync + 'static;

    /// Splits the stream into its two halves.
    fn split(self) -> (Self::Read, Self::Write);

    /// The stream whole again, from the halves `split` made of it; `None`
    /// if they are halves of different streams.
    fn reunite(read: Self::Read, write: Self::Write) -> Option<Self>;

    /// Writes what the stream takes of `bytes` now, without waiting:
    /// `WouldBlock` when it takes nothing.
    fn try_write(write: &Self::Write, bytes: &[u8]) -> io::Result<usize>;

    /// Completes once the stream may take more bytes.
    fn writable(write: &Self::Write) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Shuts the connection down both ways, from any thread: the task
    /// reading it finds it closed, and so does the client.
    fn shut_down(write: &Self::Write);
}

impl LeanStream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }

    fn reunite(read: OwnedReadHalf, write: OwnedWriteHalf) -> Option<TcpStream> {
        read.reunite(write).ok()
    }

    fn try_write(write: &OwnedWriteHalf, bytes: &[u8]) -> io::Result<usize> {
        write.try_write(bytes)
    }

    fn writable(write: &OwnedWriteHalf) -> impl Future<Output = io::Result<()>> + Send + '_ {
        write.writable()
    }

    fn shut_down(write: &OwnedWriteHalf) {
        let _ = socket2::SockRef::from(write.as_ref()).shutdown(std::net::Shutdown::Both);
    }
}

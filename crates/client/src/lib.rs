//! A client library for the talk protocol (`docs/protocol.md`).
//!
//! `Api` makes one request per protocol operation. Higher layers (sessions
//! that resume, exactly-once delivery) build on it.

mod api;

pub use api::{Api, Error};
pub use talk_protocol as protocol;

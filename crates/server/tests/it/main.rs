//! Integration tests: the real server on an ephemeral port, spoken to over
//! real sockets with the client library's `Api` (or raw HTTP where the
//! test is about malformed requests).

mod bad_input;
mod chat;
mod connection;
mod cors;
mod delivery;
mod fuzz_seeds;
mod half_close;
mod host;
mod ops;
mod raw;
mod support;
mod timeouts;

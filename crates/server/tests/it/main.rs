//! Integration tests: the real server on an ephemeral port, spoken to over
//! real sockets with the client library's `Api` (or raw HTTP where the
//! test is about malformed requests).

mod bad_input;
mod channels;
mod chat;
mod connection;
mod cors;
mod delivery;
mod exposure;
mod fuzz_seeds;
mod half_close;
mod host;
mod ops;
mod raw;
mod store_faults;
mod support;
mod timeouts;
mod who;

//! Fuzzes the connection's request-head parser: never panics, a chat head is
//! decided by its own bytes, and it reads headers as hyper and the router do.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| talk_server::fuzzing::request_head(data));

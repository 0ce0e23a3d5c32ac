//! Fuzzes the lean path's request-head reader: never panics, a chat head is
//! decided by its own bytes, and the `ChatRequest` it reads from httparse's
//! lines is the one the router's front reads from hyper's `HeaderMap` of
//! the same lines, and what the rules say of that map.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| talk_server::fuzzing::request_head(data));

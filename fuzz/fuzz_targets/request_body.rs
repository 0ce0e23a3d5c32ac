//! Fuzzes the decoding of `/poll` and `/broadcast` bodies: the server's
//! one-pass decoder agrees with the plain serde path on every body, and decoded
//! requests round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| talk_server::fuzzing::request_body(data));

//! Fuzzes the chat command parser (`/join x`, `/nick`, `/color` …): it never
//! panics, and a parsed command typed back parses to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| talk_server::fuzzing::command(data));

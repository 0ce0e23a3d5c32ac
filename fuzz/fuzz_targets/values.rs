//! Fuzzes the protocol's checked values (`Cursor`, `ChannelName`, `Name`,
//! `Color`, `SendId`): what parses shows as text that parses back to it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| talk_server::fuzzing::values(data));

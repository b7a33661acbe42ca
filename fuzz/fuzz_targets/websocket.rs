//! A client's bytes through the server's WebSocket reader (framing, reassembly, UTF-8,
//! permessage-deflate); the checks are `sockway_gateway::fuzzing::websocket`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::websocket(data));

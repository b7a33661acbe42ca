//! The first bytes of a connection read as a PROXY protocol header; the checks are
//! `sockway_gateway::fuzzing::proxy_header`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::proxy_header(data));

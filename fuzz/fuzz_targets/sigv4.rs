//! SigV4 verification (and re-signing) of a management request; the checks are
//! `sockway_gateway::fuzzing::sigv4`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::sigv4(data));

//! A management request path parsed into a resource; the checks are
//! `sockway_gateway::fuzzing::management_path`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::management_path(data));

//! A backend's answer read as a Lambda-proxy result or a plain HTTP reply; the checks are
//! `sockway_gateway::fuzzing::integration_result`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockway_gateway::fuzzing::integration_result(data));

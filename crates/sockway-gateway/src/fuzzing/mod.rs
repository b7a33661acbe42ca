//! Entry points for the `cargo fuzz` targets under `fuzz/`, one per parser, and the replay of
//! their committed corpora in the normal test suite.
//!
//! Each entry point takes the fuzzer's raw bytes, feeds them to a parser the way the gateway
//! does, and panics when a property of the result does not hold: "no panic" is the least of
//! what is checked. The parsers themselves stay private to their modules; this module is
//! compiled only for tests and with the `fuzzing` feature, so it adds nothing to the normal
//! build. What each target's input bytes mean is documented on its function.

mod config;
mod integration_result;
mod management_path;
mod proxy_header;
mod route_selection;
mod sigv4;
mod websocket;

#[cfg(test)]
mod tests;

pub use config::config;
pub use integration_result::integration_result;
pub use management_path::management_path;
pub use proxy_header::proxy_header;
pub use route_selection::route_selection;
pub use sigv4::sigv4;
pub use websocket::websocket;

/// A target's checks: panics when a property does not hold for the input.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/{name}.rs` and `fuzz/corpus/{name}/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("route_selection", route_selection),
    ("integration_result", integration_result),
    ("sigv4", sigv4),
    ("config", config),
    ("management_path", management_path),
    ("websocket", websocket),
    ("proxy_header", proxy_header),
];

/// Splits `text` at its first newline: the first line, and the rest (empty when there is no
/// newline).
fn first_line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

//! Tests that run the real `sockway` binary, plus the repository's tidy checks.

mod admin;
mod cli;
mod cluster;
mod import;
mod tidy;
mod tls;

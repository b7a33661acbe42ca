//! Tests that run the real `sockway` binary, plus the repository's tidy checks.

mod admin;
mod cli;
mod cluster;
mod credentials;
mod tidy;
mod tls;

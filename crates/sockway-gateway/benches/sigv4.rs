//! Signing one Lambda Invoke request: `aws-sigv4` (the signing key derived per request) against
//! the Lambda client's signer (the day's key kept), alternating in the same run.
//!
//! `cargo bench -p sockway-gateway --features measure --bench sigv4`

use sockway_gateway::measure::lambda_invoke_signing;

fn main() {
    const ITERATIONS: u32 = 200_000;
    // Warm-up: page in the code and the allocator's pages.
    lambda_invoke_signing(20_000, 1_024);
    println!("signing a Lambda Invoke request, {ITERATIONS} times each way, release build");
    println!("| body | aws-sigv4 per request | signer per request | ratio |");
    println!("|---|---|---|---|");
    for body_bytes in [64, 1_024, 4_096] {
        let cost = lambda_invoke_signing(ITERATIONS, body_bytes);
        let per = |total: std::time::Duration| total.as_secs_f64() * 1e9 / f64::from(ITERATIONS);
        let (reference, ours) = (per(cost.aws_sigv4), per(cost.signer));
        println!(
            "| {body_bytes} bytes | {:.2} µs | {:.2} µs | {:.2} |",
            reference / 1e3,
            ours / 1e3,
            ours / reference
        );
    }
}

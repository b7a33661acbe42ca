//! What the micro-benchmarks under `benches/` time, for parts of the gateway too small to
//! show in a whole-process benchmark. Compiled only with the `measure` feature.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use crate::aws::credentials::Credentials;
use crate::aws::sigv4::{Signer, sign_request};

/// The time `iterations` signatures of one Lambda Invoke request took, each way.
#[derive(Debug, Clone, Copy)]
pub struct SigningCost {
    /// `aws-sigv4` (the signing key derived for every request).
    pub aws_sigv4: Duration,
    /// The Lambda client's [`Signer`] (the day's key kept).
    pub signer: Duration,
}

/// Signs the Lambda Invoke request `LambdaClient` sends for a `body` of `body_bytes` bytes,
/// `iterations` times with `aws-sigv4` and `iterations` times with the [`Signer`], alternating
/// in rounds of 1,000 so drift in the machine falls on both.
pub fn lambda_invoke_signing(iterations: u32, body_bytes: usize) -> SigningCost {
    let credentials = Credentials {
        access_key_id: "AKIDEXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        session_token: Some("FQoGZXIvYXdzEXAMPLETOKEN".to_owned()),
        expires_at: None,
    };
    let body = vec![b'x'; body_bytes];
    let request = || {
        http::Request::builder()
            .method("POST")
            .uri("https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/chat/invocations")
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .header("user-agent", "sockway/0.1.0")
            .header(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            )
            .body(())
            .expect("a valid request")
    };
    let signer = Signer::default();
    let mut cost = SigningCost {
        aws_sigv4: Duration::ZERO,
        signer: Duration::ZERO,
    };
    let mut done = 0;
    while done < iterations {
        let round = (iterations - done).min(1_000);
        let time = |sign: &dyn Fn(&mut http::Request<()>)| {
            let started = Instant::now();
            for _ in 0..round {
                let mut request = request();
                sign(&mut request);
                black_box(request);
            }
            started.elapsed()
        };
        cost.aws_sigv4 += time(&|request| {
            sign_request(
                request,
                &body,
                &credentials,
                "eu-west-1",
                "lambda",
                SystemTime::now(),
            )
            .expect("signs");
        });
        cost.signer += time(&|request| {
            signer
                .sign(
                    request,
                    &body,
                    &credentials,
                    "eu-west-1",
                    "lambda",
                    SystemTime::now(),
                )
                .expect("signs");
        });
        done += round;
    }
    cost
}

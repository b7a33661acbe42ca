//! Unit tests of the credentials cache in front of the AWS SDK's chain, with a scripted SDK
//! provider and explicit times. The providers themselves (environment, profiles, web
//! identity, container, instance metadata, SSO) are tested end to end against the `sockway`
//! binary, with stand-in endpoints, in `crates/sockway/tests/it/credentials.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::credential_fn::provide_credentials_fn;

use super::*;

/// An SDK provider answering from a script, counting its calls.
#[derive(Clone, Default)]
struct Script {
    answers:
        Arc<StdMutex<VecDeque<Result<aws_credential_types::Credentials, SdkCredentialsError>>>>,
    calls: Arc<AtomicUsize>,
}

impl Script {
    fn then_credentials(self, access_key_id: &str, expires_at: Option<SystemTime>) -> Script {
        self.answers
            .lock()
            .unwrap()
            .push_back(Ok(aws_credential_types::Credentials::new(
                access_key_id,
                "secret",
                Some("token".to_owned()),
                expires_at,
                "script",
            )));
        self
    }

    fn then_error(self, error: SdkCredentialsError) -> Script {
        self.answers.lock().unwrap().push_back(Err(error));
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn provider(&self) -> CredentialsProvider {
        let script = self.clone();
        CredentialsProvider::from_sdk(
            provide_credentials_fn(move || {
                let script = script.clone();
                async move {
                    script.calls.fetch_add(1, Ordering::SeqCst);
                    script
                        .answers
                        .lock()
                        .unwrap()
                        .pop_front()
                        .expect("the script has an answer for every call")
                }
            }),
            Some("eu-west-1"),
        )
    }
}

fn noon() -> SystemTime {
    // 2026-11-28T12:00:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

fn minutes(count: u64) -> Duration {
    Duration::from_secs(count * 60)
}

fn not_found() -> SdkCredentialsError {
    SdkCredentialsError::not_loaded("no providers in chain provided credentials")
}

#[tokio::test]
async fn static_keys_from_the_config_need_no_chain() {
    let provider = CredentialsProvider::from_config(&AwsConfig {
        access_key_id: Some("AKIACONFIG".to_owned()),
        secret_access_key: Some("config-secret".to_owned()),
        session_token: Some("config-token".to_owned()),
        profile: None,
    });
    let credentials = provider.credentials().await.unwrap();
    assert_eq!(
        credentials,
        Credentials {
            access_key_id: "AKIACONFIG".to_owned(),
            secret_access_key: "config-secret".to_owned(),
            session_token: Some("config-token".to_owned()),
            expires_at: None,
        }
    );
    assert!(
        provider.inner.sdk.get().is_none(),
        "the SDK's configuration is not loaded for static keys"
    );
}

#[tokio::test]
async fn nothing_is_loaded_before_the_first_call() {
    let provider = CredentialsProvider::from_config(&AwsConfig::default());
    assert!(provider.inner.sdk.get().is_none());
}

#[tokio::test]
async fn credentials_are_fetched_once_and_kept_until_close_to_expiry() {
    // Issue 15, point 2: the SDK's providers do not cache; this cache refreshes before
    // expiry, and is shared, not rebuilt per call.
    let script = Script::default()
        .then_credentials("ASIAFIRST", Some(noon() + minutes(10)))
        .then_credentials("ASIASECOND", Some(noon() + minutes(70)));
    let provider = script.provider();
    let first = provider.credentials_at(noon()).await.unwrap();
    assert_eq!(first.access_key_id, "ASIAFIRST");
    assert_eq!(first.session_token.as_deref(), Some("token"));
    assert_eq!(first.expires_at, Some(noon() + minutes(10)));

    // More than five minutes left: kept, also by a clone.
    let clone = provider.clone();
    for at in [minutes(1), minutes(4)] {
        let kept = clone.credentials_at(noon() + at).await.unwrap();
        assert_eq!(kept.access_key_id, "ASIAFIRST");
    }
    assert_eq!(script.calls(), 1);

    // Within five minutes of expiry: fetched again.
    let refreshed = provider.credentials_at(noon() + minutes(6)).await.unwrap();
    assert_eq!(refreshed.access_key_id, "ASIASECOND");
    assert_eq!(script.calls(), 2);
}

#[tokio::test]
async fn credentials_without_expiry_are_kept() {
    let script = Script::default().then_credentials("AKIALONGTERM", None);
    let provider = script.provider();
    for days in [0, 1, 400] {
        let at = noon() + Duration::from_secs(days * 86_400);
        let credentials = provider.credentials_at(at).await.unwrap();
        assert_eq!(credentials.access_key_id, "AKIALONGTERM");
    }
    assert_eq!(script.calls(), 1);
}

#[tokio::test]
async fn missing_credentials_fail_the_call_with_the_sdk_reason() {
    let script = Script::default().then_error(not_found());
    let error = script.provider().credentials_at(noon()).await.unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotFound { .. }),
        "{error:?}"
    );
    let message = ErrorChain(&error).to_string();
    assert!(
        message.starts_with("no AWS credentials: set [aws] access_key_id"),
        "{message}"
    );
    assert!(message.contains("AWS_PROFILE"), "{message}");
    assert!(
        message.contains("no providers in chain provided credentials"),
        "the SDK's reason is kept: {message}"
    );
}

#[tokio::test]
async fn provider_failures_are_told_apart_from_missing_credentials() {
    let script = Script::default().then_error(SdkCredentialsError::provider_error(
        "AccessDenied: not authorized to perform sts:AssumeRoleWithWebIdentity",
    ));
    let error = script.provider().credentials_at(noon()).await.unwrap_err();
    assert!(
        matches!(error, CredentialsError::Provider { .. }),
        "{error:?}"
    );
    let message = ErrorChain(&error).to_string();
    assert!(
        message.starts_with("AWS credentials could not be loaded"),
        "{message}"
    );
    assert!(
        message.contains("sts:AssumeRoleWithWebIdentity"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failure_is_not_retried_at_once() {
    let script = Script::default()
        .then_error(not_found())
        .then_credentials("ASIALATER", Some(noon() + minutes(60)));
    let provider = script.provider();
    provider.credentials_at(noon()).await.unwrap_err();
    // Callers right after the failure get the same answer without a second fetch.
    let error = provider
        .credentials_at(noon() + RETRY_AFTER_FAILURE - Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, CredentialsError::NotFound { .. }));
    assert_eq!(script.calls(), 1);
    // Then the chain is asked again.
    let credentials = provider
        .credentials_at(noon() + RETRY_AFTER_FAILURE)
        .await
        .unwrap();
    assert_eq!(credentials.access_key_id, "ASIALATER");
    assert_eq!(script.calls(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_credentials_until_they_expire() {
    let script = Script::default()
        .then_credentials("ASIAOLD", Some(noon() + minutes(10)))
        .then_error(SdkCredentialsError::provider_error(
            "metadata endpoint down",
        ))
        .then_credentials("ASIANEW", Some(noon() + minutes(70)));
    let provider = script.provider();
    provider.credentials_at(noon()).await.unwrap();

    let kept = provider.credentials_at(noon() + minutes(6)).await.unwrap();
    assert_eq!(kept.access_key_id, "ASIAOLD", "still valid, so still used");
    assert_eq!(script.calls(), 2);
    let kept = provider
        .credentials_at(noon() + minutes(6) + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(kept.access_key_id, "ASIAOLD");
    assert_eq!(script.calls(), 2, "not retried within RETRY_AFTER_FAILURE");

    let renewed = provider.credentials_at(noon() + minutes(7)).await.unwrap();
    assert_eq!(renewed.access_key_id, "ASIANEW");
}

#[tokio::test]
async fn expired_credentials_are_never_used() {
    let script = Script::default()
        .then_credentials("ASIAOLD", Some(noon() + minutes(10)))
        .then_error(SdkCredentialsError::provider_error(
            "metadata endpoint down",
        ));
    let provider = script.provider();
    provider.credentials_at(noon()).await.unwrap();
    let error = provider
        .credentials_at(noon() + minutes(10))
        .await
        .unwrap_err();
    assert!(matches!(error, CredentialsError::Provider { .. }));
}

#[tokio::test]
async fn the_region_is_the_sdk_region() {
    let provider = Script::default().provider();
    assert_eq!(provider.region().await, "eu-west-1");
    let without =
        CredentialsProvider::from_sdk(provide_credentials_fn(|| async { Err(not_found()) }), None);
    assert_eq!(without.region().await, GatewayConfig::DEFAULT_REGION);
}

#[test]
fn sdk_credentials_convert_with_an_empty_token_as_none() {
    let expiry = noon();
    let converted = Credentials::from(&aws_credential_types::Credentials::new(
        "ASIAX",
        "s",
        Some(String::new()),
        Some(expiry),
        "test",
    ));
    assert_eq!(converted.session_token, None);
    assert_eq!(converted.expires_at, Some(expiry));
}

#[test]
fn debug_redacts_secrets() {
    let credentials = Credentials {
        access_key_id: "AKIAVISIBLE".to_owned(),
        secret_access_key: "very-secret".to_owned(),
        session_token: Some("secret-token".to_owned()),
        expires_at: None,
    };
    let shown = format!("{credentials:?}");
    assert!(shown.contains("AKIAVISIBLE"));
    assert!(
        !shown.contains("very-secret") && !shown.contains("secret-token"),
        "{shown}"
    );
}

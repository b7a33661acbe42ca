//! Unit tests of the credentials chain: config, environment, shared files and
//! `credential_process`, all with an explicit environment and a temporary home directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

/// A directory under the system temp dir, removed when dropped.
struct TempHome(PathBuf);

impl TempHome {
    fn new(name: &str) -> TempHome {
        let bytes: [u8; 8] = crate::random_bytes();
        let suffix: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let path = std::env::temp_dir().join(format!("sockway-credentials-{name}-{suffix}"));
        std::fs::create_dir_all(path.join(".aws")).unwrap();
        TempHome(path)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn keys(access_key_id: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: token.map(str::to_owned),
        expires_at: None,
    }
}

async fn resolve_now(
    config: &AwsConfig,
    env: &HashMap<String, String>,
    home: Option<&Path>,
) -> Result<Credentials, CredentialsError> {
    CredentialsProvider::from_parts(config, env, home)
        .credentials()
        .await
}

#[tokio::test]
async fn config_keys_come_first() {
    let config = AwsConfig {
        access_key_id: Some("AKIACONFIG".to_owned()),
        secret_access_key: Some("config-secret".to_owned()),
        session_token: Some("config-token".to_owned()),
        profile: None,
    };
    let env = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ]);
    assert_eq!(
        resolve_now(&config, &env, None).await.unwrap(),
        keys("AKIACONFIG", "config-secret", Some("config-token"))
    );
}

#[tokio::test]
async fn environment_keys_come_before_profiles() {
    let home = TempHome::new("env");
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n",
    );
    let env = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ]);
    assert_eq!(
        resolve_now(&AwsConfig::default(), &env, Some(home.path()))
            .await
            .unwrap(),
        keys("AKIAENV", "env-secret", Some("env-token"))
    );
}

#[tokio::test]
async fn profiles_from_the_shared_files() {
    let home = TempHome::new("profiles");
    home.write(
        ".aws/credentials",
        "# comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default-secret\n\n\
         [work]\nAWS_ACCESS_KEY_ID=AKIAWORK\naws_secret_access_key=work-secret\n",
    );
    home.write(
        ".aws/config",
        "[default]\nregion = us-east-1\n\n[profile work]\naws_session_token = work-token\n\
         s3 =\n  max_concurrent_requests = 10\n\n\
         [profile  cfg-only]\naws_access_key_id = AKIACFG\naws_secret_access_key = cfg-secret\n",
    );
    let check = async |config: AwsConfig, env: HashMap<String, String>, expected: Credentials| {
        assert_eq!(
            resolve_now(&config, &env, Some(home.path())).await.unwrap(),
            expected
        );
    };
    check(
        AwsConfig::default(),
        env(&[]),
        keys("AKIADEFAULT", "default-secret", None),
    )
    .await;
    check(
        AwsConfig::default(),
        env(&[("AWS_PROFILE", "work")]),
        keys("AKIAWORK", "work-secret", Some("work-token")),
    )
    .await;
    check(
        AwsConfig {
            profile: Some("cfg-only".to_owned()),
            ..AwsConfig::default()
        },
        env(&[("AWS_PROFILE", "work")]),
        keys("AKIACFG", "cfg-secret", None),
    )
    .await;
}

#[tokio::test]
async fn file_locations_follow_the_environment() {
    let home = TempHome::new("locations");
    let credentials = home.write(
        "elsewhere-credentials",
        "[default]\naws_access_key_id = AKIAELSEWHERE\naws_secret_access_key = s\n",
    );
    let env = env(&[("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap())]);
    assert_eq!(
        resolve_now(&AwsConfig::default(), &env, None)
            .await
            .unwrap(),
        keys("AKIAELSEWHERE", "s", None)
    );
}

#[tokio::test]
async fn missing_credentials_fail_only_when_asked_for() {
    let home = TempHome::new("missing");
    let provider =
        CredentialsProvider::from_parts(&AwsConfig::default(), &env(&[]), Some(home.path()));
    let error = provider.credentials().await.unwrap_err();
    assert!(
        matches!(error, CredentialsError::NotFound { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no AWS credentials"), "{error}");

    let named = AwsConfig {
        profile: Some("nope".to_owned()),
        ..AwsConfig::default()
    };
    let error = resolve_now(&named, &env(&[]), Some(home.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::ProfileNotFound { .. }),
        "{error:?}"
    );

    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAHALF\n",
    );
    let error = resolve_now(&AwsConfig::default(), &env(&[]), Some(home.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialsError::IncompleteProfile { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn credential_process_is_run_and_refreshed_before_expiry() {
    let home = TempHome::new("process");
    let counter = home.path().join("runs");
    // Each run appends a line to `runs` and reports the run number in the key id. The
    // credentials expire ten minutes after 2026-11-28T12:00:00Z.
    let script = home.write(
        "process.sh",
        &format!(
            "echo run >> '{counter}'\n\
             runs=$(wc -l < '{counter}' | tr -d ' ')\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"AKIARUN%s\", \"SecretAccessKey\": \"s\", \
             \"SessionToken\": \"t\", \"Expiration\": \"2026-11-28T12:10:00Z\"}}' \"$runs\"\n",
            counter = counter.display()
        ),
    );
    home.write(
        ".aws/config",
        &format!(
            "[profile proc]\ncredential_process = sh '{}'\n",
            script.display()
        ),
    );
    let config = AwsConfig {
        profile: Some("proc".to_owned()),
        ..AwsConfig::default()
    };
    let provider = CredentialsProvider::from_parts(&config, &env(&[]), Some(home.path()));
    let noon = crate::aws::time::parse_amz_date("20261128T120000Z").unwrap();

    let first = provider.credentials_at(noon).await.unwrap();
    assert_eq!(first.access_key_id, "AKIARUN1");
    assert_eq!(first.session_token.as_deref(), Some("t"));
    assert_eq!(first.expires_at, Some(noon + Duration::from_secs(600)));
    // Still more than five minutes left: the cached credentials are used.
    let cached = provider
        .credentials_at(noon + Duration::from_secs(4 * 60))
        .await
        .unwrap();
    assert_eq!(cached.access_key_id, "AKIARUN1");
    // Within five minutes of expiry: the process runs again.
    let refreshed = provider
        .credentials_at(noon + Duration::from_secs(6 * 60))
        .await
        .unwrap();
    assert_eq!(refreshed.access_key_id, "AKIARUN2");
}

#[tokio::test]
async fn credential_process_failures_are_reported() {
    let home = TempHome::new("process-fail");
    home.write(
        ".aws/config",
        "[default]\ncredential_process = echo nope >&2; exit 3\n",
    );
    let error = resolve_now(&AwsConfig::default(), &env(&[]), Some(home.path()))
        .await
        .unwrap_err();
    let CredentialsError::Process { source, .. } = &error else {
        panic!("expected a process error, got {error:?}");
    };
    assert!(source.to_string().contains("nope"), "{source}");
}

#[test]
fn process_documents() {
    let now = crate::aws::time::parse_amz_date("20261128T120000Z").unwrap();
    let read = |text: &str| read_process_output(text.as_bytes(), now);
    let credentials = read(r#"{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"s"}"#).unwrap();
    assert_eq!(credentials, keys("AKIA", "s", None));
    assert!(matches!(
        read(r#"{"Version":2,"AccessKeyId":"AKIA","SecretAccessKey":"s"}"#),
        Err(ProcessError::Version(2))
    ));
    assert!(matches!(read("not json"), Err(ProcessError::Output(_))));
    assert!(matches!(
        read(r#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"soon"}"#),
        Err(ProcessError::Expiration(_))
    ));
    assert!(matches!(
        read(
            r#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2026-11-28T11:00:00Z"}"#
        ),
        Err(ProcessError::Expired(_))
    ));
}

#[test]
fn debug_redacts_secrets() {
    let credentials = keys("AKIAVISIBLE", "very-secret", Some("secret-token"));
    let shown = format!("{credentials:?}");
    assert!(shown.contains("AKIAVISIBLE"));
    assert!(
        !shown.contains("very-secret") && !shown.contains("secret-token"),
        "{shown}"
    );
}

#[test]
fn ini_parsing() {
    let parsed = parse_ini(
        "; comment\nstray = ignored\n[ profile  spaced ]\nKey = value = with equals\n\
         nested =\n    inner = skipped\n[default]\nempty =\n",
    );
    assert_eq!(parsed["profile spaced"]["key"], "value = with equals");
    assert!(!parsed["profile spaced"].contains_key("inner"));
    assert_eq!(parsed["default"]["empty"], "");
    assert!(!parsed.contains_key(""));
    assert_eq!(parsed.len(), 2);
}

#[test]
fn freshness_window() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let expiring = |seconds: u64| Credentials {
        expires_at: Some(now + Duration::from_secs(seconds)),
        ..keys("A", "s", None)
    };
    assert!(fresh(&keys("A", "s", None), now));
    assert!(fresh(&expiring(301), now));
    assert!(!fresh(&expiring(300), now));
}

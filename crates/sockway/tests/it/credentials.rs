//! Where sockway's Lambda calls get their credentials and region (issue 15, point 2): the real
//! binary, in an environment of each test's making (only `PATH` kept, a `HOME` of its own,
//! instance metadata off unless a stand-in plays it), against loopback stand-ins of the
//! services the AWS SDK's providers ask. Each test ends with Lambda Invoke calls arriving at
//! the Lambda stand-in signed with the temporary credentials a stand-in handed out: the
//! signature verifies and `X-Amz-Security-Token` is the token issued with the key.

use std::time::Duration;

use crate::binary;
use serde_json::{Value, json};
use sockway_testkit::credentials::{
    ContainerCredentials, InstanceMetadata, Issuer, SsoPortal, Sts, StsExpectation,
    TemporaryCredentials, rfc3339, sso_token_cache_path,
};
use sockway_testkit::sigv4::SigningKey;
use sockway_testkit::{
    ConfigFile, FakeLambda, GatewayProcess, Invocation, KeyRing, LambdaReply, connect, http_request,
};

/// A function that accepts every connection and echoes a message's body.
fn echo(event: Value) -> LambdaReply {
    LambdaReply::Ok(json!({"statusCode": 200, "body": event["body"]}))
}

/// `$connect` and `$default` on function `chat` at `lambda`, with no region anywhere unless
/// `extra` (appended to the file) names one.
fn gateway_config(lambda: &FakeLambda, extra: &str) -> String {
    format!(
        r#"
[routes."$connect"]
integration = "chat"

[routes."$default"]
integration = "chat"
route_response = true

[integrations.chat]
type = "lambda"
function = "chat"
endpoint_url = "{}"

{extra}
"#,
        lambda.endpoint_url()
    )
}

/// What every test's gateway runs with: its own `HOME` and shared files (which may not
/// exist), and instance metadata off, so nothing leaves loopback.
fn environment(home: &ConfigFile, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    // The shared files exist (empty unless the test wrote them), as the SDK warns about a
    // file named by AWS_CONFIG_FILE or AWS_SHARED_CREDENTIALS_FILE that does not.
    for file in [".aws/config", ".aws/credentials"] {
        if !home.directory().join(file).exists() {
            home.write(file, "");
        }
    }
    let home_path = home.directory().to_string_lossy().into_owned();
    let mut env = vec![
        ("HOME".to_owned(), home_path.clone()),
        (
            "AWS_CONFIG_FILE".to_owned(),
            format!("{home_path}/.aws/config"),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            format!("{home_path}/.aws/credentials"),
        ),
    ];
    if !extra
        .iter()
        .any(|(name, _)| *name == "AWS_EC2_METADATA_SERVICE_ENDPOINT")
    {
        env.push(("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()));
    }
    env.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    env
}

async fn start(home: &ConfigFile, env: &[(String, String)]) -> GatewayProcess {
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    GatewayProcess::start_with_env(binary(), &home.path, &env).await
}

/// Connects (one invocation, `$connect`) and sends a message (a second, `$default`), and
/// returns both invocations as the Lambda stand-in accepted them.
async fn two_invocations(
    gateway: &GatewayProcess,
    lambda: &mut FakeLambda,
) -> (Invocation, Invocation) {
    let mut client = connect(&gateway.ws_url)
        .await
        .expect("the $connect function accepts the connection");
    let first = lambda.next_invocation_for("$connect").await;
    client.send_text("hello").await;
    let second = lambda.next_invocation_for("$default").await;
    assert_eq!(client.next_text().await, "hello");
    assert_eq!(lambda.rejected_signatures(), 0);
    (first, second)
}

fn assert_signed_with(invocation: &Invocation, credentials: &TemporaryCredentials) {
    assert!(
        invocation.access_key_id.starts_with("ASIA"),
        "{}",
        invocation.access_key_id
    );
    assert_eq!(invocation.access_key_id, credentials.access_key_id);
    assert_eq!(
        invocation.session_token.as_deref(),
        Some(credentials.session_token.as_str())
    );
    assert_eq!(
        invocation.headers["x-amz-security-token"],
        credentials.session_token.as_str()
    );
}

#[tokio::test]
async fn ecs_container_credentials_sign_lambda_calls_and_are_kept_until_near_expiry() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("ECS", &keys);
    let container =
        ContainerCredentials::start(&issuer, "/v2/credentials/task", "Basic ecs-agent-token").await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("ecs", &gateway_config(&lambda, ""));
    let full_uri = container.full_uri();
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic ecs-agent-token"),
                ("AWS_REGION", "eu-west-1"),
            ],
        ),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "fetched once, then kept: {issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[0]);
    // No region in the file: the SDK's, from AWS_REGION.
    assert_eq!(first.region, "eu-west-1");
    let received = container.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].status, 200);

    // The stand-in refuses what the agent refuses.
    let (status, _, _) = http_request("GET", &full_uri, "").await;
    assert_eq!(status, 400, "no Authorization header");
}

#[tokio::test]
async fn eks_pod_identity_token_file_credentials_are_refreshed_before_expiry() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("EKS", &keys);
    // Four minutes: inside the five minutes before expiry in which sockway fetches again.
    issuer.set_lifetime(Duration::from_secs(4 * 60));
    let container =
        ContainerCredentials::start(&issuer, "/v1/credentials", "eks-pod-identity-token").await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new(
        "eks",
        &gateway_config(&lambda, "[gateway]\nregion = \"eu-west-3\"\n"),
    );
    let token_file = home.write("eks-pod-identity-token", "eks-pod-identity-token");
    let full_uri = container.full_uri();
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    token_file.to_str().unwrap(),
                ),
            ],
        ),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 2, "fetched again near expiry: {issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[1]);
    // `gateway.region` set: it wins over the SDK's region.
    assert_eq!(first.region, "eu-west-3");
    assert!(
        container
            .received()
            .iter()
            .all(|request| request.headers["authorization"] == "eks-pod-identity-token"),
        "the token file's content is the Authorization header"
    );
}

#[tokio::test]
async fn ec2_instance_metadata_gives_credentials_and_region_over_imdsv2() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("IMDS", &keys);
    let imds = InstanceMetadata::start(&issuer, "sockway-instance", Some("ap-southeast-2")).await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("imds", &gateway_config(&lambda, ""));
    let endpoint = imds.endpoint();
    let gateway = start(
        &home,
        &environment(&home, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(imds.credential_fetches(), 1);
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[0]);
    // No region in the file or the environment: instance metadata's.
    assert_eq!(first.region, "ap-southeast-2");

    // Every request had a session token: a PUT for it came first, and no GET was refused.
    let received = imds.received();
    assert_eq!(received[0].method, "PUT");
    assert_eq!(received[0].target, "/latest/api/token");
    assert!(
        received.iter().all(|request| request.status == 200),
        "{:?}",
        received
            .iter()
            .map(|request| (&request.method, &request.target, request.status))
            .collect::<Vec<_>>()
    );
    assert!(
        received
            .iter()
            .any(|request| request.target == "/latest/meta-data/placement/region")
    );
    // The stand-in refuses what IMDSv2 refuses.
    let (status, _, _) = http_request(
        "GET",
        &format!("{endpoint}/latest/meta-data/iam/security-credentials/"),
        "",
    )
    .await;
    assert_eq!(status, 401, "a GET without a session token");
}

#[tokio::test]
async fn web_identity_token_file_is_exchanged_at_sts() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("WEBIDENTITY", &keys);
    let role_arn = "arn:aws:iam::123456789012:role/sockway-irsa";
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln";
    let sts = Sts::start(
        &issuer,
        StsExpectation::WebIdentity {
            role_arn: role_arn.to_owned(),
            token: token.to_owned(),
        },
    )
    .await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("web-identity", &gateway_config(&lambda, ""));
    let token_file = home.write("token", token);
    let endpoint = sts.endpoint();
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
                ("AWS_ROLE_ARN", role_arn),
                ("AWS_ROLE_SESSION_NAME", "sockway-test"),
                ("AWS_ENDPOINT_URL_STS", &endpoint),
                ("AWS_REGION", "us-west-2"),
            ],
        ),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[0]);
    assert_eq!(first.region, "us-west-2");
    let received = sts.received();
    assert_eq!(received.len(), 1);
    let (request, form) = &received[0];
    assert_eq!(request.status, 200);
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(form["RoleSessionName"], "sockway-test");
}

#[tokio::test]
async fn assume_role_profile_signs_sts_with_its_source_profile() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("ASSUMEROLE", &keys);
    let role_arn = "arn:aws:iam::123456789012:role/sockway-gateway";
    let source = SigningKey::new("AKIASOURCEPROFILE001", "source-profile-secret");
    let source_keys = KeyRing::new();
    source_keys.add(source.clone());
    let sts = Sts::start(
        &issuer,
        StsExpectation::AssumeRole {
            role_arn: role_arn.to_owned(),
            source: source_keys,
        },
    )
    .await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    // `[aws] profile` picks the profile; its `region` is the SDK's region.
    let home = ConfigFile::new(
        "assume-role",
        &gateway_config(&lambda, "[aws]\nprofile = \"gateway\"\n"),
    );
    home.write(
        ".aws/credentials",
        &format!(
            "[base]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            source.access_key_id, source.secret_access_key
        ),
    );
    home.write(
        ".aws/config",
        &format!(
            "[profile gateway]\nrole_arn = {role_arn}\nsource_profile = base\n\
             role_session_name = sockway-gateway\nregion = eu-central-1\n"
        ),
    );
    let endpoint = sts.endpoint();
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_ENDPOINT_URL_STS", &endpoint),
                // Not the profile [aws] names: ignored.
                ("AWS_PROFILE", "base"),
            ],
        ),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[0]);
    assert_eq!(first.region, "eu-central-1");
    let received = sts.received();
    assert_eq!(received.len(), 1);
    let (request, form) = &received[0];
    assert_eq!(
        request.status, 200,
        "signature verified with the source keys"
    );
    assert_eq!(form["Action"], "AssumeRole");
    assert_eq!(form["RoleArn"], role_arn);
    assert_eq!(form["RoleSessionName"], "sockway-gateway");
}

#[tokio::test]
async fn credential_process_runs_again_before_its_credentials_expire() {
    let keys = KeyRing::new();
    // What the script prints on its first and second run; it says they expire four minutes
    // after it runs.
    let runs: Vec<SigningKey> = (1..=2)
        .map(|run| SigningKey {
            access_key_id: format!("ASIAPROCESSXXXXX000{run}"),
            secret_access_key: format!("process-secret-{run}"),
            session_token: Some(format!("process-token-{run}")),
        })
        .collect();
    for key in &runs {
        keys.add(key.clone());
    }
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("process", &gateway_config(&lambda, ""));
    let counter = home.directory().join("runs");
    let script = home.write(
        "credential-process.sh",
        &format!(
            "echo run >> '{counter}'\n\
             run=$(wc -l < '{counter}' | tr -d ' ')\n\
             expiration=$(date -u -d '+4 minutes' +%Y-%m-%dT%H:%M:%SZ)\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"ASIAPROCESSXXXXX000%s\", \
             \"SecretAccessKey\": \"process-secret-%s\", \"SessionToken\": \"process-token-%s\", \
             \"Expiration\": \"%s\"}}' \"$run\" \"$run\" \"$run\" \"$expiration\"\n",
            counter = counter.display()
        ),
    );
    home.write(
        ".aws/config",
        &format!(
            "[profile process]\ncredential_process = sh '{}'\nregion = ca-central-1\n",
            script.display()
        ),
    );
    let gateway = start(&home, &environment(&home, &[("AWS_PROFILE", "process")])).await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    assert_eq!(first.access_key_id, runs[0].access_key_id);
    assert_eq!(first.session_token, runs[0].session_token);
    assert_eq!(second.access_key_id, runs[1].access_key_id, "run again");
    assert_eq!(second.session_token, runs[1].session_token);
    assert_eq!(first.region, "ca-central-1", "the profile's region");
}

#[tokio::test]
async fn sso_profile_takes_role_credentials_from_the_portal_with_the_cached_token() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("SSO", &keys);
    let portal = SsoPortal::start(
        &issuer,
        "cached-sso-access-token",
        "123456789012",
        "Gateway",
    )
    .await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("sso", &gateway_config(&lambda, ""));
    home.write(
        ".aws/config",
        "[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = Gateway\nregion = eu-north-1\n\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
         sso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n",
    );
    // What `aws sso login` leaves in the cache: a token valid for an hour.
    let expires_at = rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    home.write(
        &sso_token_cache_path("corp"),
        &json!({
            "accessToken": "cached-sso-access-token",
            "expiresAt": expires_at,
            "region": "eu-west-1",
            "startUrl": "https://corp.awsapps.com/start",
        })
        .to_string(),
    );
    let endpoint = portal.endpoint();
    let gateway = start(
        &home,
        &environment(
            &home,
            &[("AWS_PROFILE", "sso"), ("AWS_ENDPOINT_URL_SSO", &endpoint)],
        ),
    )
    .await;

    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_signed_with(&second, &issued[0]);
    assert_eq!(first.region, "eu-north-1");
    let received = portal.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].status, 200);
}

#[tokio::test]
async fn environment_keys_sign_lambda_calls() {
    let mut lambda = FakeLambda::start("AKIAENVIRONMENT0001", "environment-secret").await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("environment", &gateway_config(&lambda, ""));
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT0001"),
                ("AWS_SECRET_ACCESS_KEY", "environment-secret"),
                ("AWS_DEFAULT_REGION", "sa-east-1"),
            ],
        ),
    )
    .await;
    let (first, _) = two_invocations(&gateway, &mut lambda).await;
    assert_eq!(first.access_key_id, "AKIAENVIRONMENT0001");
    assert_eq!(first.session_token, None);
    assert_eq!(first.region, "sa-east-1");
}

#[tokio::test]
async fn missing_credentials_fail_the_call_not_the_start_and_say_why() {
    let mut lambda = FakeLambda::start("AKIAUNUSED0000000001", "unused").await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("missing", &gateway_config(&lambda, ""));
    let mut gateway = start(&home, &environment(&home, &[])).await;
    let refused = connect(&gateway.ws_url).await;
    assert!(refused.is_err(), "the $connect integration failed");
    let line = gateway.wait_for_stderr("$connect integration failed").await;
    assert!(line.contains("no AWS credentials"), "{line}");
    assert!(
        line.contains("no providers in chain provided credentials"),
        "the SDK's reason: {line}"
    );
    assert!(lambda.drain().is_empty());
}

#[tokio::test]
async fn a_failing_credential_process_is_reported_with_its_output() {
    let mut lambda = FakeLambda::start("AKIAUNUSED0000000001", "unused").await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("process-fails", &gateway_config(&lambda, ""));
    home.write(
        ".aws/config",
        "[default]\ncredential_process = sh -c 'echo refused by the vault >&2; exit 3'\nregion = eu-west-1\n",
    );
    let mut gateway = start(&home, &environment(&home, &[])).await;
    assert!(connect(&gateway.ws_url).await.is_err());
    let line = gateway.wait_for_stderr("$connect integration failed").await;
    assert!(
        line.contains("AWS credentials could not be loaded"),
        "{line}"
    );
    assert!(
        line.contains("refused by the vault"),
        "the process's stderr: {line}"
    );
    assert!(lambda.drain().is_empty());
}

#[tokio::test]
async fn legacy_sso_profile_finds_its_token_by_start_url() {
    let keys = KeyRing::new();
    let issuer = Issuer::new("SSOLEGACY", &keys);
    let portal = SsoPortal::start(&issuer, "legacy-access-token", "210987654321", "Ops").await;
    let mut lambda = FakeLambda::start_with(keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("sso-legacy", &gateway_config(&lambda, ""));
    let start_url = "https://legacy.awsapps.com/start";
    home.write(
        ".aws/config",
        &format!(
            "[default]\nsso_start_url = {start_url}\nsso_region = us-east-2\n\
             sso_account_id = 210987654321\nsso_role_name = Ops\nregion = us-east-2\n"
        ),
    );
    let expires_at = rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    home.write(
        &sso_token_cache_path(start_url),
        &json!({
            "accessToken": "legacy-access-token",
            "expiresAt": expires_at,
            "region": "us-east-2",
            "startUrl": start_url,
        })
        .to_string(),
    );
    let endpoint = portal.endpoint();
    let gateway = start(
        &home,
        &environment(&home, &[("AWS_ENDPOINT_URL_SSO", &endpoint)]),
    )
    .await;
    let (first, _) = two_invocations(&gateway, &mut lambda).await;
    let issued = issuer.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_signed_with(&first, &issued[0]);
    assert_eq!(first.region, "us-east-2");
}

#[tokio::test]
async fn credential_source_assumes_a_role_with_the_container_credentials() {
    // The container endpoint's credentials only sign the AssumeRole call; the role's sign
    // the Lambda calls.
    let container_keys = KeyRing::new();
    let container_issuer = Issuer::new("TASK", &container_keys);
    let container =
        ContainerCredentials::start(&container_issuer, "/v2/credentials/task", "task-token").await;
    let lambda_keys = KeyRing::new();
    let role_issuer = Issuer::new("ROLE", &lambda_keys);
    let role_arn = "arn:aws:iam::123456789012:role/sockway-cross-account";
    let sts = Sts::start(
        &role_issuer,
        StsExpectation::AssumeRole {
            role_arn: role_arn.to_owned(),
            source: container_keys,
        },
    )
    .await;
    let mut lambda = FakeLambda::start_with(lambda_keys).await;
    lambda.on("chat", echo);
    let home = ConfigFile::new("credential-source", &gateway_config(&lambda, ""));
    home.write(
        ".aws/config",
        &format!(
            "[profile cross]\nrole_arn = {role_arn}\ncredential_source = EcsContainer\n\
             role_session_name = sockway-cross\n"
        ),
    );
    let (full_uri, endpoint) = (container.full_uri(), sts.endpoint());
    let gateway = start(
        &home,
        &environment(
            &home,
            &[
                ("AWS_PROFILE", "cross"),
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-token"),
                ("AWS_ENDPOINT_URL_STS", &endpoint),
                ("AWS_REGION", "eu-south-1"),
            ],
        ),
    )
    .await;
    let (first, second) = two_invocations(&gateway, &mut lambda).await;
    let role = role_issuer.issued();
    assert_eq!(role.len(), 1, "{role:?}");
    assert_signed_with(&first, &role[0]);
    assert_signed_with(&second, &role[0]);
    assert_eq!(container_issuer.issued().len(), 1);
    let received = sts.received();
    assert_eq!(received.len(), 1);
    let (request, form) = &received[0];
    assert_eq!(
        request.status, 200,
        "signed with the container's credentials"
    );
    assert_eq!(
        request.headers["x-amz-security-token"],
        container_issuer.issued()[0].session_token.as_str()
    );
    assert_eq!(form["RoleSessionName"], "sockway-cross");
}

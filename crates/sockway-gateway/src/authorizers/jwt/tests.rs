//! Tests of the JWT authorizer against a real JWKS endpoint on port 0, with tokens signed by
//! the keys in `tests/fixtures/jwt` (test-only keys generated once with openssl; see the README
//! there).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sockway_testkit::JwksServer;

use super::{JwtAuthorizer, JwtError, VerifiedToken};
use crate::config::{JwtAuthorizerConfig, TokenUse};

const AUDIENCE: &str = "client-a";

/// The test keys: the private key file, the JWK file and the JWK's `kid`.
#[derive(Debug, Clone, Copy)]
enum TestKey {
    Rsa1,
    Rsa2,
    Ec1,
}

impl TestKey {
    fn name(self) -> &'static str {
        match self {
            TestKey::Rsa1 => "rsa1",
            TestKey::Rsa2 => "rsa2",
            TestKey::Ec1 => "ec1",
        }
    }

    fn jwk(self) -> Value {
        serde_json::from_str(&fixture(&format!("{}.jwk.json", self.name()))).unwrap()
    }

    fn kid(self) -> String {
        self.jwk()["kid"].as_str().unwrap().to_owned()
    }

    /// The private key. `jsonwebtoken` reads PEM only with its `use_pem` feature, which pulls
    /// in an ASN.1 stack (and a newer `time` for the whole workspace) just for tests; a PEM
    /// body is the base64 of the DER it wants: PKCS#1 for RSA, PKCS#8 for EC.
    fn encoding_key(self) -> EncodingKey {
        let pem = fixture(&format!("{}.pem", self.name()));
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        match self {
            TestKey::Rsa1 | TestKey::Rsa2 => {
                assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "PKCS#1");
                EncodingKey::from_rsa_der(&der)
            }
            TestKey::Ec1 => EncodingKey::from_ec_der(&der),
        }
    }
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn jwks(keys: &[TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>() })
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A JWKS server holding `keys` and an authorizer for it (leeway 60 s, no `token_use`).
async fn setup(keys: &[TestKey]) -> (JwksServer, JwtAuthorizer) {
    setup_with(keys, |_| {}).await
}

async fn setup_with(
    keys: &[TestKey],
    configure: impl FnOnce(&mut JwtAuthorizerConfig),
) -> (JwksServer, JwtAuthorizer) {
    let server = JwksServer::start(jwks(keys)).await;
    let mut config = JwtAuthorizerConfig {
        issuer: server.issuer(),
        audience: vec!["other-client".to_owned(), AUDIENCE.to_owned()],
        jwks_url: server.jwks_url().parse().unwrap(),
        leeway: Duration::from_secs(60),
        token_use: None,
    };
    configure(&mut config);
    let authorizer = JwtAuthorizer::new(&config);
    (server, authorizer)
}

/// Valid ID-token claims for `server`'s issuer, with `changes` merged in (`null` removes).
fn claims(server: &JwksServer, changes: Value) -> Value {
    let mut claims = json!({
        "iss": server.issuer(),
        "sub": "user-1",
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
        "token_use": "id",
    });
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// `claims` signed by `key` with `algorithm`, the header naming the key's `kid`.
fn sign(key: TestKey, algorithm: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(key.kid());
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
}

/// A token with this header and payload JSON and `signature`, built by hand.
fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

async fn check(authorizer: &JwtAuthorizer, token: &str) -> Result<VerifiedToken, JwtError> {
    tokio::time::timeout(Duration::from_secs(10), authorizer.authorize(token))
        .await
        .expect("authorize answers within 10 s")
}

async fn accepted(authorizer: &JwtAuthorizer, token: &str) -> VerifiedToken {
    check(authorizer, token)
        .await
        .unwrap_or_else(|error| panic!("token refused: {error} ({error:?})"))
}

#[tokio::test]
async fn valid_rs256_token_is_accepted() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    let verified = accepted(&authorizer, &token).await;
    assert_eq!(verified.principal_id, "user-1");
    assert_eq!(verified.context["sub"], "user-1");
    assert_eq!(verified.context["iss"], server.issuer().as_str());
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn valid_es256_token_is_accepted() {
    let (server, authorizer) = setup(&[TestKey::Rsa1, TestKey::Ec1]).await;
    let token = sign(TestKey::Ec1, Algorithm::ES256, &claims(&server, json!({})));
    assert_eq!(accepted(&authorizer, &token).await.principal_id, "user-1");
}

#[tokio::test]
async fn rsa_key_without_alg_verifies_pss_and_larger_hashes() {
    let mut jwk = TestKey::Rsa1.jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    let server = JwksServer::start(json!({ "keys": [jwk] })).await;
    let (_, authorizer) = setup_with(&[], |config| {
        config.issuer = server.issuer();
        config.jwks_url = server.jwks_url().parse().unwrap();
    })
    .await;
    for algorithm in [Algorithm::PS256, Algorithm::RS512] {
        let token = sign(TestKey::Rsa1, algorithm, &claims(&server, json!({})));
        accepted(&authorizer, &token).await;
    }
}

#[tokio::test]
async fn algorithm_outside_the_jwk_alg_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1, TestKey::Ec1]).await;
    // rsa1's JWK says `"alg": "RS256"`.
    let rs384 = sign(TestKey::Rsa1, Algorithm::RS384, &claims(&server, json!({})));
    let refused = check(&authorizer, &rs384).await;
    assert!(
        matches!(
            refused,
            Err(JwtError::KeyAlgorithmMismatch {
                algorithm: Algorithm::RS384,
                ..
            })
        ),
        "{refused:?}"
    );
    // An ES256 token whose header names the RSA key's kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(TestKey::Rsa1.kid());
    let confused = jsonwebtoken::encode(
        &header,
        &claims(&server, json!({})),
        &TestKey::Ec1.encoding_key(),
    )
    .unwrap();
    let refused = check(&authorizer, &confused).await;
    assert!(
        matches!(
            refused,
            Err(JwtError::KeyAlgorithmMismatch {
                algorithm: Algorithm::ES256,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(&server, json!({"exp": now() - 120})),
    );
    assert!(matches!(
        check(&authorizer, &token).await,
        Err(JwtError::Expired)
    ));
}

#[tokio::test]
async fn token_not_yet_valid_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(&server, json!({"nbf": now() + 120})),
    );
    assert!(matches!(
        check(&authorizer, &token).await,
        Err(JwtError::NotYetValid)
    ));
}

#[tokio::test]
async fn leeway_is_honoured_for_exp_and_nbf() {
    let (server, lenient) = setup(&[TestKey::Rsa1]).await;
    let (_, strict) = setup_with(&[], |config| {
        config.issuer = server.issuer();
        config.jwks_url = server.jwks_url().parse().unwrap();
        config.leeway = Duration::ZERO;
    })
    .await;
    let just_expired = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(&server, json!({"exp": now() - 30})),
    );
    let almost_valid = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(&server, json!({"nbf": now() + 30})),
    );
    accepted(&lenient, &just_expired).await;
    accepted(&lenient, &almost_valid).await;
    assert!(matches!(
        check(&strict, &just_expired).await,
        Err(JwtError::Expired)
    ));
    assert!(matches!(
        check(&strict, &almost_valid).await,
        Err(JwtError::NotYetValid)
    ));
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let other = format!("{}/other-pool", server.issuer());
    for issuer in [json!(other), json!([server.issuer()])] {
        let token = sign(
            TestKey::Rsa1,
            Algorithm::RS256,
            &claims(&server, json!({"iss": issuer})),
        );
        let refused = check(&authorizer, &token).await;
        assert!(
            matches!(refused, Err(JwtError::WrongIssuer)),
            "iss {issuer}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    for claim in ["sub", "exp", "iss"] {
        let token = sign(
            TestKey::Rsa1,
            Algorithm::RS256,
            &claims(&server, json!({claim: null})),
        );
        let refused = check(&authorizer, &token).await;
        assert!(
            matches!(&refused, Err(JwtError::MissingClaim(missing)) if missing == claim),
            "{claim}: {refused:?}"
        );
    }
    let token = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(&server, json!({"sub": ""})),
    );
    assert!(matches!(
        check(&authorizer, &token).await,
        Err(JwtError::InvalidClaim(_))
    ));
}

#[tokio::test]
async fn audience_must_intersect_the_configured_ones() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let outcomes = [
        (json!("someone-else"), false),
        (json!(["someone-else", AUDIENCE]), true),
        (json!(["someone-else", "nobody"]), false),
        (json!([]), false),
    ];
    for (audience, expected) in outcomes {
        let token = sign(
            TestKey::Rsa1,
            Algorithm::RS256,
            &claims(&server, json!({"aud": audience})),
        );
        let outcome = check(&authorizer, &token).await;
        match expected {
            true => assert!(outcome.is_ok(), "aud {audience}: {outcome:?}"),
            false => assert!(
                matches!(outcome, Err(JwtError::WrongAudience)),
                "aud {audience}: {outcome:?}"
            ),
        }
    }
    // `client_id` only stands in for a missing `aud`.
    let token = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(
            &server,
            json!({"aud": "someone-else", "client_id": AUDIENCE}),
        ),
    );
    assert!(matches!(
        check(&authorizer, &token).await,
        Err(JwtError::WrongAudience)
    ));
}

#[tokio::test]
async fn cognito_access_token_is_matched_by_client_id_and_token_use() {
    let (server, authorizer) = setup_with(&[TestKey::Rsa1], |config| {
        config.token_use = Some(TokenUse::Access)
    })
    .await;
    let access = |changes: Value| {
        let mut access_claims = claims(
            &server,
            json!({"aud": null, "client_id": AUDIENCE, "token_use": "access", "scope": "aws.cognito.signin.user.admin"}),
        );
        for (name, value) in changes.as_object().unwrap() {
            access_claims[name] = value.clone();
        }
        sign(TestKey::Rsa1, Algorithm::RS256, &access_claims)
    };
    let verified = accepted(&authorizer, &access(json!({}))).await;
    assert_eq!(verified.context["client_id"], AUDIENCE);
    let id_token = access(json!({"token_use": "id"}));
    assert!(matches!(
        check(&authorizer, &id_token).await,
        Err(JwtError::WrongTokenUse { expected: "access" })
    ));
    let other_client = access(json!({"client_id": "someone-else"}));
    assert!(matches!(
        check(&authorizer, &other_client).await,
        Err(JwtError::WrongAudience)
    ));
    let id_claims = claims(&server, json!({}));
    let id_token = sign(TestKey::Rsa1, Algorithm::RS256, &id_claims);
    assert!(matches!(
        check(&authorizer, &id_token).await,
        Err(JwtError::WrongTokenUse { .. })
    ));
}

#[tokio::test]
async fn unknown_kid_is_accepted_after_the_rotated_jwks_is_fetched() {
    let (server, mut authorizer) = setup(&[TestKey::Rsa1]).await;
    authorizer.keys.set_refetch_interval(Duration::ZERO);
    accepted(
        &authorizer,
        &sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({}))),
    )
    .await;
    let rotated = sign(TestKey::Rsa2, Algorithm::RS256, &claims(&server, json!({})));
    assert!(matches!(
        check(&authorizer, &rotated).await,
        Err(JwtError::UnknownKey(_))
    ));
    assert_eq!(server.fetches(), 2);

    server.serve(jwks(&[TestKey::Rsa2]));
    assert_eq!(accepted(&authorizer, &rotated).await.principal_id, "user-1");
    assert_eq!(server.fetches(), 3);
    // A successful fetch replaces the set: the withdrawn key no longer verifies.
    let withdrawn = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    assert!(matches!(
        check(&authorizer, &withdrawn).await,
        Err(JwtError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let garbage = |kid: &str| {
        let header = json!({"alg": "RS256", "kid": kid});
        unsigned(&header, &claims(&server, json!({})), b"not a signature")
    };
    // The first token fetches the JWKS (lazily); the next unknown kids must not.
    for kid in ["garbage-1", "garbage-2", "garbage-3"] {
        let refused = check(&authorizer, &garbage(kid)).await;
        assert!(
            matches!(&refused, Err(JwtError::UnknownKey(unknown)) if unknown == kid),
            "{refused:?}"
        );
    }
    assert_eq!(server.fetches(), 1);
    // Even a key the issuer has since published waits for the interval to pass.
    server.serve(jwks(&[TestKey::Rsa1, TestKey::Rsa2]));
    let rotated = sign(TestKey::Rsa2, Algorithm::RS256, &claims(&server, json!({})));
    assert!(matches!(
        check(&authorizer, &rotated).await,
        Err(JwtError::UnknownKey(_))
    ));
    assert_eq!(server.fetches(), 1);
    // Known keys are unaffected.
    accepted(
        &authorizer,
        &sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({}))),
    )
    .await;
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn jwks_outage_keeps_the_cached_keys() {
    let (server, mut authorizer) = setup(&[TestKey::Rsa1]).await;
    authorizer.keys.set_refetch_interval(Duration::ZERO);
    let known = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    accepted(&authorizer, &known).await;

    server.fail();
    let unknown = sign(TestKey::Rsa2, Algorithm::RS256, &claims(&server, json!({})));
    let refused = check(&authorizer, &unknown).await;
    assert!(
        matches!(refused, Err(JwtError::JwksUnavailable(_))),
        "{refused:?}"
    );
    assert_eq!(server.fetches(), 2);
    accepted(&authorizer, &known).await;
    assert_eq!(server.fetches(), 2, "cached keys are used without a fetch");
}

#[tokio::test]
async fn jwks_outage_on_first_use_refuses_tokens() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    server.fail();
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    let refused = check(&authorizer, &token).await;
    let Err(JwtError::JwksUnavailable(failure)) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        failure.to_string().contains("answered HTTP 500"),
        "{failure}"
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let header = json!({"alg": "none", "kid": TestKey::Rsa1.kid()});
    let token = unsigned(&header, &claims(&server, json!({})), b"");
    let refused = check(&authorizer, &token).await;
    assert!(
        matches!(&refused, Err(JwtError::UnsupportedAlgorithm(alg)) if alg == "none"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let public_pem = fixture("rsa1.pub.pem");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(TestKey::Rsa1.kid());
    let token = jsonwebtoken::encode(
        &header,
        &claims(&server, json!({})),
        &EncodingKey::from_secret(public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let refused = check(&authorizer, &token).await;
    assert!(
        matches!(&refused, Err(JwtError::UnsupportedAlgorithm(alg)) if alg == "HS256"),
        "{refused:?}"
    );
    assert_eq!(server.fetches(), 0, "refused before any key is looked up");
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = claims(&server, json!({"sub": "admin"}));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    assert!(matches!(
        check(&authorizer, &forged).await,
        Err(JwtError::BadSignature)
    ));
}

#[tokio::test]
async fn malformed_tokens_are_rejected() {
    let (_server, authorizer) = setup(&[TestKey::Rsa1]).await;
    for token in [
        "",
        "Bearer ",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.e30",
        "e30.e30.e30",
    ] {
        let refused = check(&authorizer, token).await;
        assert!(
            matches!(refused, Err(JwtError::Malformed(_))),
            "{token:?}: {refused:?}"
        );
    }
    let no_kid = unsigned(&json!({"alg": "RS256"}), &json!({}), b"x");
    assert!(matches!(
        check(&authorizer, &no_kid).await,
        Err(JwtError::MissingKeyId)
    ));
}

#[tokio::test]
async fn bearer_prefix_is_stripped_in_any_case() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    for prefix in ["Bearer ", "bearer ", "BEARER  ", " "] {
        accepted(&authorizer, &format!("{prefix}{token}")).await;
    }
}

#[tokio::test]
async fn claims_are_stringified_into_the_context() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let exp = now() + 600;
    let token = sign(
        TestKey::Rsa1,
        Algorithm::RS256,
        &claims(
            &server,
            json!({
                "exp": exp,
                "email_verified": true,
                "cognito:groups": ["admins", "ops"],
                "address": {"country": "FR", "zip": 75001},
                "ratio": 0.5,
                "nickname": "x\"y",
                "principalId": "not-the-subject",
                "middle_name": null,
            }),
        ),
    );
    let context = accepted(&authorizer, &token).await.context;
    let expected = json!({
        "iss": server.issuer(),
        "sub": "user-1",
        "aud": AUDIENCE,
        "iat": context["iat"],
        "exp": exp.to_string(),
        "token_use": "id",
        "email_verified": "true",
        "cognito:groups": r#"["admins","ops"]"#,
        "address": r#"{"country":"FR","zip":75001}"#,
        "ratio": "0.5",
        "nickname": "x\"y",
    });
    assert_eq!(Value::Object(context), expected);
}

#[tokio::test]
async fn concurrent_first_use_fetches_the_jwks_once() {
    let (server, authorizer) = setup(&[TestKey::Rsa1]).await;
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    let outcomes = futures_util::future::join_all((0..8).map(|_| check(&authorizer, &token))).await;
    for outcome in outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let (server, authorizer) = setup(&[]).await;
    server.serve(json!({"keys": [TestKey::Rsa1.jwk()], "padding": "x".repeat(1024 * 1024)}));
    let token = sign(TestKey::Rsa1, Algorithm::RS256, &claims(&server, json!({})));
    let refused = check(&authorizer, &token).await;
    let Err(JwtError::JwksUnavailable(failure)) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        failure.to_string().contains("larger than 1048576 bytes"),
        "{failure}"
    );
}

//! The admin commands (`sockway connections`, `sockway groups`, `sockway broadcast`) run as
//! the real binary against a real gateway process: what they change is checked on the
//! WebSocket clients and the backend, what they print is parsed.

use std::collections::BTreeSet;
use std::process::Stdio;

use serde_json::Value;
use sockway_testkit::{ConfigFile, DEADLINE, GatewayProcess, MockBackend, WsClient, connect};
use tokio::io::AsyncWriteExt;

use crate::binary;

/// The management keys of the signed gateway: AWS's documentation examples.
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A well-formed connection id that no gateway handed out.
const UNKNOWN_ID: &str = "L0SM9cOFvHcCIhw=";

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The run succeeded; its standard output.
    pub(crate) fn ok(self) -> String {
        assert_eq!(self.code, 0, "{self:#?}");
        self.stdout
    }

    /// The run succeeded and printed one JSON document.
    pub(crate) fn json(self) -> Value {
        let stdout = self.ok();
        assert_eq!(stdout.lines().count(), 1, "one document: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
    }

    /// The run failed with `code`; its standard error.
    pub(crate) fn failed(self, code: i32) -> String {
        assert_eq!(self.code, code, "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        self.stderr
    }
}

/// Runs `sockway args...` with none of the AWS credential variables but those in `env`,
/// feeding `stdin`, and waits for it under the deadline.
pub(crate) async fn sockway(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start sockway");
    let mut input = child.stdin.take().expect("stdin is piped");
    // A command that does not read its input may exit before it is written.
    let _ = input.write_all(stdin).await;
    drop(input);
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sockway {args:?} did not exit within {DEADLINE:?}"))
        .expect("wait for sockway");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running gateway with its backend, and the flags that point the admin commands at it.
struct Setup {
    process: GatewayProcess,
    backend: MockBackend,
    /// `--endpoint`: the management listener's base URL.
    endpoint: String,
    config: ConfigFile,
}

impl Setup {
    /// A gateway on stage `dev` that sends `$connect` and `$disconnect` to a mock backend.
    async fn start(name: &str) -> Setup {
        let backend = MockBackend::start().await;
        let text = format!("[gateway]\nstage = \"dev\"\n{}", lifecycle_routes(&backend));
        let config = ConfigFile::new(name, &text);
        let process = GatewayProcess::start(binary(), &config.path).await;
        let endpoint = process
            .management_url()
            .strip_suffix("/dev")
            .expect("the management URL ends with the stage")
            .to_owned();
        Setup {
            process,
            backend,
            endpoint,
            config,
        }
    }

    /// Runs an admin command against the gateway, unsigned.
    async fn admin(&self, args: &[&str]) -> Run {
        self.admin_with_input(args, b"").await
    }

    async fn admin_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--endpoint", &self.endpoint, "--stage", "dev"]);
        sockway(&all, &[], stdin).await
    }

    /// Connects a client and returns it with its connection id.
    async fn client(&mut self) -> (WsClient, String) {
        let client = connect(&self.process.ws_url).await.unwrap();
        let event = self.backend.next_event_for("$connect").await;
        let id = event["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .to_owned();
        (client, id)
    }
}

/// `$connect` and `$disconnect` routes to `backend`.
fn lifecycle_routes(backend: &MockBackend) -> String {
    format!(
        "[routes.\"$connect\"]\nintegration = \"backend\"\n\
         [routes.\"$disconnect\"]\nintegration = \"backend\"\n\
         [integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n",
        backend.url("/events")
    )
}

/// The connection ids of a `--json` listing.
fn listed_ids(page: &Value) -> BTreeSet<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {page}"))
        .iter()
        .map(|item| item["connectionId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn send_get_and_delete_act_on_a_live_connection() {
    let mut setup = Setup::start("admin-connection").await;
    let (mut client, id) = setup.client().await;

    let stdout = setup
        .admin(&["connections", "send", &id, "--data", "hello"])
        .await
        .ok();
    assert_eq!(stdout, format!("sent 5 bytes to {id}\n"));
    assert_eq!(client.next_text().await, "hello");

    // Without --data or --file the message is standard input, sent as it is.
    setup
        .admin_with_input(&["connections", "send", &id], b"from stdin\n")
        .await
        .ok();
    assert_eq!(client.next_text().await, "from stdin\n");

    // A file is sent byte for byte; bytes that are not UTF-8 arrive as a binary message.
    let message = setup.config.path.with_file_name("message.bin");
    std::fs::write(&message, [0u8, 159, 146, 150]).unwrap();
    let json = setup
        .admin(&[
            "connections",
            "send",
            &id,
            "--file",
            message.to_str().unwrap(),
            "--json",
        ])
        .await
        .json();
    assert_eq!(json, serde_json::json!({ "ok": true }));
    let received = client.next_message().await;
    assert!(received.is_binary(), "{received:?}");
    assert_eq!(received.into_data().as_ref(), [0u8, 159, 146, 150]);

    let stdout = setup.admin(&["connections", "get", &id]).await.ok();
    let fields: Vec<(&str, &str)> = stdout
        .lines()
        .map(|line| line.split_once(char::is_whitespace).unwrap())
        .map(|(name, value)| (name, value.trim()))
        .collect();
    assert_eq!(fields[0], ("connectionId", id.as_str()), "{stdout}");
    assert_eq!(fields[1].0, "connectedAt", "{stdout}");
    assert_eq!(fields[2].0, "lastActiveAt", "{stdout}");
    assert_eq!(fields[3], ("sourceIp", "127.0.0.1"), "{stdout}");

    let json = setup
        .admin(&["connections", "get", &id, "--json"])
        .await
        .json();
    assert_eq!(json["identity"]["sourceIp"], "127.0.0.1");
    let connected_at = json["connectedAt"].as_str().unwrap();
    assert!(
        connected_at.len() == 24 && connected_at.ends_with('Z'),
        "{json}"
    );
    assert!(json["lastActiveAt"].as_str().unwrap() >= connected_at);

    let stdout = setup.admin(&["connections", "delete", &id]).await.ok();
    assert_eq!(stdout, format!("closed {id}\n"));
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1000));
    let event = setup.backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["connectionId"], id.as_str());

    let stderr = setup.admin(&["connections", "get", &id]).await.failed(1);
    assert!(
        stderr.contains("GoneException (HTTP 410)"),
        "a deleted connection is gone: {stderr}"
    );
}

#[tokio::test]
async fn api_errors_exit_1_with_the_aws_error_type() {
    let setup = Setup::start("admin-gone").await;
    for args in [
        &["connections", "send", UNKNOWN_ID, "--data", "x"][..],
        &["connections", "send", UNKNOWN_ID, "--data", "x", "--json"],
        &["connections", "get", UNKNOWN_ID],
        &["connections", "delete", UNKNOWN_ID, "--json"],
    ] {
        let stderr = setup.admin(args).await.failed(1);
        assert!(
            stderr.starts_with("sockway: GoneException (HTTP 410): "),
            "{args:?}: {stderr}"
        );
    }
    // A stage the gateway does not serve is AWS's 403 for an unknown path.
    let stderr = sockway(
        &[
            "connections",
            "get",
            UNKNOWN_ID,
            "--endpoint",
            &setup.endpoint,
            "--stage",
            "prod",
        ],
        &[],
        b"",
    )
    .await
    .failed(1);
    assert!(
        stderr.starts_with("sockway: ForbiddenException (HTTP 403): Forbidden")
            && stderr.contains("check --stage"),
        "{stderr}"
    );
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2_before_any_call() {
    let check = async |args: &[&str], env: &[(&str, &str)], expected: &str| {
        let stderr = sockway(args, env, b"").await.failed(2);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    // Nothing listens at this endpoint: each of these must fail before calling it.
    let endpoint = ["--endpoint", "http://127.0.0.1:0"];
    check(&["connections", "get", UNKNOWN_ID], &[], "--endpoint URL").await;
    check(
        &["connections", "get", "nope", endpoint[0], endpoint[1]],
        &[],
        "connection id must be 16 characters",
    )
    .await;
    check(
        &[
            "groups",
            "join",
            UNKNOWN_ID,
            "a b",
            endpoint[0],
            endpoint[1],
        ],
        &[],
        "group name has ' '",
    )
    .await;
    check(
        &[
            "connections",
            "send",
            UNKNOWN_ID,
            "--data",
            "x",
            "--file",
            "x",
        ],
        &[],
        "cannot be used with",
    )
    .await;
    check(
        &["connections", "list", "--max-results", "0"],
        &[],
        "--max-results",
    )
    .await;
    check(
        &["connections", "get", UNKNOWN_ID, "--endpoint", "ftp://host"],
        &[],
        "scheme must be http or https",
    )
    .await;
    check(
        &[
            "connections",
            "get",
            UNKNOWN_ID,
            endpoint[0],
            endpoint[1],
            "--stage",
            "a/b",
        ],
        &[],
        "invalid stage",
    )
    .await;
    check(
        &["connections", "get", UNKNOWN_ID, endpoint[0], endpoint[1]],
        &[("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)],
        "AWS_SECRET_ACCESS_KEY is not",
    )
    .await;
    check(
        &[
            "connections",
            "send",
            UNKNOWN_ID,
            "--file",
            "/nonexistent/message",
            endpoint[0],
            endpoint[1],
        ],
        &[],
        "cannot read /nonexistent/message",
    )
    .await;

    let bad = ConfigFile::new("admin-bad-config", "[management]\nlisten = 8081\n");
    let path = bad.path.to_str().unwrap();
    check(
        &["connections", "get", UNKNOWN_ID, "--config", path],
        &[],
        "management.listen",
    )
    .await;
    let unbound = ConfigFile::new("admin-port-0", "[management]\nlisten = \"127.0.0.1:0\"\n");
    let path = unbound.path.to_str().unwrap();
    check(
        &["connections", "get", UNKNOWN_ID, "--config", path],
        &[],
        "port 0",
    )
    .await;
}

#[tokio::test]
async fn signed_requests_use_config_or_environment_keys_and_wrong_keys_are_refused() {
    let mut backend = MockBackend::start().await;
    let text = format!(
        "[gateway]\nstage = \"prod\"\nregion = \"eu-west-1\"\n\
         [management]\nlisten = \"127.0.0.1:0\"\n\
         [[management.credentials]]\naccess_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key = \"{SECRET_ACCESS_KEY}\"\n{}",
        lifecycle_routes(&backend)
    );
    let config = ConfigFile::new("admin-signed", &text);
    let mut process = GatewayProcess::start(binary(), &config.path).await;
    let line = tokio::time::timeout(DEADLINE, process.stdout.next_line())
        .await
        .expect("management line within the deadline")
        .unwrap()
        .expect("a management line");
    let management_url = line
        .strip_prefix("sockway management listening on ")
        .unwrap_or_else(|| panic!("unexpected line: {line}"));
    let endpoint = management_url.strip_suffix("/prod").unwrap().to_owned();
    let addr = endpoint.strip_prefix("http://").unwrap();

    let mut client = connect(&process.ws_url).await.unwrap();
    let event = backend.next_event_for("$connect").await;
    let id = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The operator's copy of the config names the bound address; the stage, the region and
    // the first key pair come from it too.
    let operator = ConfigFile::new(
        "admin-operator",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nstage = \"prod\"\nregion = \"eu-west-1\"\n\
             [management]\nlisten = \"{addr}\"\n\
             [[management.credentials]]\naccess_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key = \"{SECRET_ACCESS_KEY}\"\n"
        ),
    );
    let operator_path = operator.path.to_str().unwrap();
    sockway(
        &[
            "connections",
            "send",
            &id,
            "--data",
            "signed by config",
            "--config",
            operator_path,
        ],
        &[],
        b"",
    )
    .await
    .ok();
    assert_eq!(client.next_text().await, "signed by config");

    let flags = [
        "--endpoint",
        endpoint.as_str(),
        "--stage",
        "prod",
        "--region",
        "eu-west-1",
    ];
    let run = async |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["connections", "send", id.as_str()];
        args.extend(extra);
        sockway(&args, env, b"").await
    };
    let mut with_flags = flags.to_vec();
    with_flags.extend(["--data", "signed by environment"]);
    let right_keys = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];
    run(&with_flags, &right_keys).await.ok();
    assert_eq!(client.next_text().await, "signed by environment");

    // A session token is sent and signed as the SDKs do, and the gateway accepts it.
    let mut with_token = right_keys.to_vec();
    with_token.push(("AWS_SESSION_TOKEN", "session-token"));
    let mut with_flags = flags.to_vec();
    with_flags.extend(["--data", "with a session token"]);
    run(&with_flags, &with_token).await.ok();
    assert_eq!(client.next_text().await, "with a session token");

    let mut data_flags = flags.to_vec();
    data_flags.extend(["--data", "refused"]);
    let stderr = run(
        &data_flags,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    )
    .await
    .failed(1);
    assert!(
        stderr.contains("InvalidSignatureException (HTTP 403): The request signature we calculated does not match"),
        "{stderr}"
    );

    let stderr = run(&data_flags, &[]).await.failed(1);
    assert!(
        stderr.contains(
            "MissingAuthenticationTokenException (HTTP 403): Missing Authentication Token"
        ),
        "{stderr}"
    );

    // Signed for the default region instead of the gateway's.
    let stderr = run(
        &[
            "--endpoint",
            endpoint.as_str(),
            "--stage",
            "prod",
            "--data",
            "refused",
        ],
        &right_keys,
    )
    .await
    .failed(1);
    assert!(
        stderr.contains("InvalidSignatureException") && stderr.contains("'us-east-1'"),
        "{stderr}"
    );

    // The config's keys win over the environment's.
    sockway(
        &[
            "connections",
            "get",
            &id,
            "--json",
            "--config",
            operator_path,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAI44QH8DHBEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "unrelated"),
        ],
        b"",
    )
    .await
    .json();
}

#[tokio::test]
async fn list_shows_connected_clients_one_page_or_all_and_broadcast_reaches_them() {
    let mut setup = Setup::start("admin-list").await;
    let mut clients = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let (client, id) = setup.client().await;
        clients.push(client);
        ids.insert(id);
    }

    let stdout = setup.admin(&["connections", "list"]).await.ok();
    let mut lines = stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>());
    assert_eq!(
        lines.next().unwrap(),
        ["connectionId", "connectedAt", "lastActiveAt", "sourceIp"]
    );
    let mut listed = BTreeSet::new();
    for row in lines {
        assert_eq!(row.len(), 4, "{stdout}");
        assert_eq!(row[3], "127.0.0.1", "{stdout}");
        listed.insert(row[0].to_owned());
    }
    assert_eq!(listed, ids, "{stdout}");

    let page = setup.admin(&["connections", "list", "--json"]).await.json();
    assert_eq!(listed_ids(&page), ids);
    assert!(page.get("nextToken").is_none(), "{page}");

    let first = setup
        .admin(&["connections", "list", "--max-results", "1", "--json"])
        .await
        .json();
    assert_eq!(listed_ids(&first).len(), 1, "{first}");
    let token = first["nextToken"].as_str().expect("more pages follow");
    let second = setup
        .admin(&[
            "connections",
            "list",
            "--max-results",
            "1",
            "--next-token",
            token,
            "--json",
        ])
        .await
        .json();
    assert_eq!(listed_ids(&second).len(), 1, "{second}");
    assert_ne!(listed_ids(&first), listed_ids(&second));

    let run = setup
        .admin(&["connections", "list", "--max-results", "1"])
        .await;
    assert!(run.stderr.contains("--next-token"), "{run:#?}");
    assert_eq!(run.ok().lines().count(), 2, "a header and one connection");

    let all = setup
        .admin(&[
            "connections",
            "list",
            "--max-results",
            "1",
            "--all",
            "--json",
        ])
        .await
        .json();
    assert_eq!(listed_ids(&all), ids, "--all follows every nextToken");
    assert!(all.get("nextToken").is_none(), "{all}");

    let stdout = setup.admin(&["broadcast", "--data", "everyone"]).await.ok();
    assert_eq!(stdout, "delivered to 3 connections, dropped for 0\n");
    for client in &mut clients {
        assert_eq!(client.next_text().await, "everyone");
    }
    let json = setup
        .admin_with_input(&["broadcast", "--json"], b"from stdin")
        .await
        .json();
    assert_eq!(json, serde_json::json!({ "delivered": 3, "dropped": 0 }));
    for client in &mut clients {
        assert_eq!(client.next_text().await, "from stdin");
    }
}

#[tokio::test]
async fn groups_are_joined_listed_broadcast_to_and_left() {
    let mut setup = Setup::start("admin-groups").await;
    let (mut a, id_a) = setup.client().await;
    let (mut b, id_b) = setup.client().await;
    let (mut c, id_c) = setup.client().await;

    let stdout = setup.admin(&["groups", "join", &id_a, "room:1"]).await.ok();
    assert_eq!(stdout, format!("{id_a} joined room:1\n"));
    let json = setup
        .admin(&["groups", "join", &id_b, "room:1", "--json"])
        .await
        .json();
    assert_eq!(json, serde_json::json!({ "ok": true }));

    assert_eq!(setup.admin(&["groups", "of", &id_a]).await.ok(), "room:1\n");
    assert_eq!(
        setup.admin(&["groups", "of", &id_a, "--json"]).await.json(),
        serde_json::json!({ "groups": ["room:1"] })
    );
    assert_eq!(
        setup.admin(&["groups", "of", &id_c]).await.ok(),
        format!("{id_c} is in no group\n")
    );

    let members = setup
        .admin(&["groups", "members", "room:1", "--json"])
        .await
        .json();
    let expected: BTreeSet<String> = [id_a.clone(), id_b.clone()].into();
    assert_eq!(listed_ids(&members), expected);
    let filtered = setup
        .admin(&["connections", "list", "--group", "room:1", "--json"])
        .await
        .json();
    assert_eq!(listed_ids(&filtered), expected);
    let table = setup
        .admin(&["groups", "members", "room:1", "--max-results", "1", "--all"])
        .await
        .ok();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains(&id_a) && table.contains(&id_b) && !table.contains(&id_c));

    let stdout = setup
        .admin(&["groups", "broadcast", "room:1", "--data", "to the room"])
        .await
        .ok();
    assert_eq!(stdout, "delivered to 2 connections, dropped for 0\n");
    assert_eq!(a.next_text().await, "to the room");
    assert_eq!(b.next_text().await, "to the room");
    // What c receives next is this message, so the room's message did not reach it.
    setup
        .admin(&["connections", "send", &id_c, "--data", "only for c"])
        .await
        .ok();
    assert_eq!(c.next_text().await, "only for c");

    let stdout = setup
        .admin(&["groups", "leave", &id_a, "room:1"])
        .await
        .ok();
    assert_eq!(stdout, format!("{id_a} left room:1\n"));
    assert_eq!(
        setup.admin(&["groups", "of", &id_a]).await.ok(),
        format!("{id_a} is in no group\n")
    );
    let members = setup
        .admin(&["groups", "members", "room:1", "--json"])
        .await
        .json();
    assert_eq!(listed_ids(&members), [id_b.clone()].into());
    // Listings carry each connection's groups through unchanged.
    let everyone = setup.admin(&["connections", "list", "--json"]).await.json();
    let item_b = everyone["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["connectionId"] == id_b.as_str())
        .unwrap();
    assert_eq!(
        item_b["groups"],
        serde_json::json!(["room:1"]),
        "{everyone}"
    );

    let stderr = setup
        .admin(&["groups", "join", UNKNOWN_ID, "room:1"])
        .await
        .failed(1);
    assert!(stderr.contains("GoneException (HTTP 410)"), "{stderr}");
}

#[tokio::test]
async fn a_gateway_that_never_answers_fails_after_the_timeout() {
    // Accepts connections and reads nothing: the call can only end by the client's timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let started = std::time::Instant::now();
    let stderr = sockway(
        &[
            "connections",
            "get",
            UNKNOWN_ID,
            "--endpoint",
            &endpoint,
            "--timeout",
            "300ms",
        ],
        &[],
        b"",
    )
    .await
    .failed(1);
    assert!(
        started.elapsed() < DEADLINE / 2,
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("300ms"), "{stderr}");
    hold.abort();

    let stderr = sockway(
        &[
            "connections",
            "get",
            UNKNOWN_ID,
            "--endpoint",
            &endpoint,
            "--timeout",
            "0s",
        ],
        &[],
        b"",
    )
    .await
    .failed(2);
    assert!(stderr.contains("must be more than 0s"), "{stderr}");
}

#[tokio::test]
async fn a_connection_id_that_starts_with_a_hyphen_is_an_id_not_a_flag() {
    // Ids are URL-safe base64, so one in 64 starts with '-'. Nothing listens on the endpoint
    // (a port bound and released): the call fails (exit 1) after the id was accepted, rather
    // than as a usage error (exit 2).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let stderr = sockway(
        &[
            "connections",
            "get",
            "-5SM9cOFvHcCIhw=",
            "--endpoint",
            &endpoint,
        ],
        &[],
        b"",
    )
    .await
    .failed(1);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
}

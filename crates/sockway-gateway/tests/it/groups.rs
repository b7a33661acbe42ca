//! Groups, broadcast and lists (sockway extensions beside `@connections`) on one node: joining
//! through the API and through the `$connect` answer, broadcasts that reach members only,
//! membership that ends with the connection, and paginated lists.

use std::collections::BTreeSet;

use serde_json::Value;
use sockway_testkit::{MockBackend, MockResponse, TestGateway, WsClient, http_request};
use tokio_tungstenite::tungstenite::Message;

use crate::{check_error, config, connect};

/// `{management_url}/@connections/{id}/groups/{group}`.
fn membership_url(gateway: &TestGateway, id: &str, group: &str) -> String {
    format!("{}/groups/{group}", gateway.connection_url(id))
}

async fn join(gateway: &TestGateway, id: &str, group: &str) {
    let (status, _, body) = http_request("PUT", &membership_url(gateway, id, group), "").await;
    assert_eq!(status, 204, "join {group}: {body:?}");
}

/// Posts `body` to a management path and returns the JSON answer of a 200.
async fn post_json(url: &str, body: impl Into<bytes::Bytes>) -> Value {
    let (status, _, answer) = http_request("POST", url, body).await;
    assert_eq!(status, 200, "POST {url}: {answer:?}");
    serde_json::from_slice(&answer).unwrap()
}

async fn get_json(url: &str) -> Value {
    let (status, _, answer) = http_request("GET", url, "").await;
    assert_eq!(status, 200, "GET {url}: {answer:?}");
    serde_json::from_slice(&answer).unwrap()
}

/// Connects `count` clients and returns them with their ids, in connection order.
async fn clients(
    gateway: &TestGateway,
    backend: &mut MockBackend,
    count: usize,
) -> Vec<(WsClient, String)> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(connect(gateway, backend).await);
    }
    clients
}

#[tokio::test]
async fn a_group_broadcast_reaches_its_members_only() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut clients = clients(&gateway, &mut backend, 3).await;
    join(&gateway, &clients[0].1, "room:1").await;
    join(&gateway, &clients[1].1, "room:1").await;
    // Joining twice changes nothing.
    join(&gateway, &clients[1].1, "room:1").await;
    join(&gateway, &clients[2].1, "lobby").await;

    let group_url = format!("{}/@groups/room:1", gateway.management_url);
    let answer = post_json(&group_url, "hello room").await;
    assert_eq!(answer, serde_json::json!({"delivered": 2, "dropped": 0}));
    assert_eq!(clients[0].0.next_text().await, "hello room");
    assert_eq!(clients[1].0.next_text().await, "hello room");

    // The non-member gets the next message addressed to it, not the group's.
    let (status, _, _) =
        http_request("POST", &gateway.connection_url(&clients[2].1), "direct").await;
    assert_eq!(status, 200);
    assert_eq!(clients[2].0.next_text().await, "direct");

    // Binary payloads stay binary for every member.
    let answer = post_json(&group_url, vec![0xffu8, 0x00]).await;
    assert_eq!(answer["delivered"], 2);
    for (client, _) in &mut clients[..2] {
        assert_eq!(
            client.next_message().await,
            Message::binary(vec![0xff, 0x00])
        );
    }

    // A group nobody is in reaches nobody, and that is not an error.
    let answer = post_json(&format!("{}/@groups/empty", gateway.management_url), "x").await;
    assert_eq!(answer["delivered"], 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn leaving_and_closing_end_membership() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut clients = clients(&gateway, &mut backend, 2).await;
    let (first, second) = (clients[0].1.clone(), clients[1].1.clone());
    for id in [&first, &second] {
        join(&gateway, id, "room").await;
        join(&gateway, id, "other").await;
    }
    let groups = get_json(&format!("{}/groups", gateway.connection_url(&first))).await;
    assert_eq!(groups, serde_json::json!({"groups": ["room", "other"]}));

    let (status, _, _) =
        http_request("DELETE", &membership_url(&gateway, &first, "room"), "").await;
    assert_eq!(status, 204);
    // Leaving a group one is not in is not an error either.
    let (status, _, _) =
        http_request("DELETE", &membership_url(&gateway, &first, "room"), "").await;
    assert_eq!(status, 204);
    let groups = get_json(&format!("{}/groups", gateway.connection_url(&first))).await;
    assert_eq!(groups["groups"], serde_json::json!(["other"]));

    let room = format!("{}/@groups/room", gateway.management_url);
    assert_eq!(post_json(&room, "one").await["delivered"], 1);
    assert_eq!(clients[1].0.next_text().await, "one");

    let (second_client, _) = clients.pop().unwrap();
    second_client.close(1000, "bye").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(
        disconnect["requestContext"]["connectionId"],
        second.as_str()
    );
    assert_eq!(post_json(&room, "two").await["delivered"], 0);
    let other = format!("{}/@groups/other", gateway.management_url);
    assert_eq!(post_json(&other, "three").await["delivered"], 1);
    assert_eq!(clients[0].0.next_text().await, "three");

    // A closed connection can neither join nor report its groups.
    let (status, headers, _) =
        http_request("PUT", &membership_url(&gateway, &second, "room"), "").await;
    check_error(status, &headers, 410, "GoneException");
    let (status, headers, _) = http_request(
        "GET",
        &format!("{}/groups", gateway.connection_url(&second)),
        "",
    )
    .await;
    check_error(status, &headers, 410, "GoneException");
    gateway.shutdown().await;
}

#[tokio::test]
async fn connect_answer_places_the_connection_in_groups() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request| {
        if request.route_key() == "$connect" {
            MockResponse::status(200, "").with_header("X-Sockway-Groups", "room:7, admins")
        } else {
            MockResponse::status(200, "")
        }
    });
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut clients = clients(&gateway, &mut backend, 1).await;
    let id = clients[0].1.clone();
    let groups = get_json(&format!("{}/groups", gateway.connection_url(&id))).await;
    assert_eq!(groups["groups"], serde_json::json!(["room:7", "admins"]));
    let answer = post_json(&format!("{}/@groups/admins", gateway.management_url), "hi").await;
    assert_eq!(answer["delivered"], 1);
    assert_eq!(clients[0].0.next_text().await, "hi");

    // A malformed list is the backend's bug: the upgrade fails the way a failed `$connect`
    // integration does, and the connection never opens.
    backend.respond_with(|request| {
        if request.route_key() == "$connect" {
            MockResponse::status(200, "").with_header("X-Sockway-Groups", "ok, not/ok")
        } else {
            MockResponse::status(200, "")
        }
    });
    let refused = sockway_testkit::connect(&gateway.ws_url).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 502);
        }
        other => panic!("expected a 502 refusal, got {other:?}"),
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn broadcast_to_every_connection() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut clients = clients(&gateway, &mut backend, 4).await;
    let url = format!("{}/@connections", gateway.management_url);
    let answer = post_json(&url, "to everyone").await;
    assert_eq!(answer, serde_json::json!({"delivered": 4, "dropped": 0}));
    for (client, _) in &mut clients {
        assert_eq!(client.next_text().await, "to everyone");
    }
    let (status, headers, _) = http_request("POST", &url, vec![b'x'; 128 * 1024 + 1]).await;
    check_error(status, &headers, 413, "PayloadTooLargeException");
    gateway.shutdown().await;
}

/// Pages through `url` with `maxResults=page_size` and returns every id, checking that each
/// page is in id order and no id comes twice.
async fn list_all(url: &str, page_size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut page_url = format!("{url}?maxResults={page_size}");
        if let Some(token) = &token {
            page_url.push_str(&format!("&nextToken={token}"));
        }
        let page = get_json(&page_url).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= page_size);
        let page_ids: Vec<String> = items
            .iter()
            .map(|item| item["connectionId"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = page_ids.clone();
        sorted.sort();
        assert_eq!(page_ids, sorted, "a node's page is in id order");
        for item in items {
            assert_eq!(item["identity"]["sourceIp"], "127.0.0.1");
            assert!(item["connectedAt"].as_str().unwrap().ends_with('Z'));
            assert!(item["groups"].is_array());
        }
        ids.extend(page_ids);
        pages += 1;
        assert!(pages < 100, "pagination ends");
        match page.get("nextToken").and_then(Value::as_str) {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no connection is listed twice");
    ids
}

#[tokio::test]
async fn lists_are_paginated_and_complete() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let clients = clients(&gateway, &mut backend, 25).await;
    for (_, id) in clients.iter().step_by(2) {
        join(&gateway, id, "even").await;
    }
    let all: BTreeSet<String> = clients.iter().map(|(_, id)| id.clone()).collect();
    let even: BTreeSet<String> = clients
        .iter()
        .step_by(2)
        .map(|(_, id)| id.clone())
        .collect();

    let listed = list_all(&format!("{}/@connections", gateway.management_url), 10).await;
    assert_eq!(listed.len(), 25);
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all);
    let listed = list_all(&format!("{}/@groups/even", gateway.management_url), 5).await;
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), even);

    // The default page holds them all here, with no token.
    let page = get_json(&format!("{}/@connections", gateway.management_url)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 25);
    assert!(page.get("nextToken").is_none());
    let member = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| even.contains(item["connectionId"].as_str().unwrap()))
        .unwrap();
    assert_eq!(member["groups"], serde_json::json!(["even"]));
    gateway.shutdown().await;
}

#[tokio::test]
async fn bad_group_requests_get_aws_style_errors() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let clients = clients(&gateway, &mut backend, 1).await;
    let id = &clients[0].1;
    let base = &gateway.management_url;

    for url in [
        format!("{base}/@groups/no%20spaces"),
        membership_url(&gateway, id, "a%2Fb"),
        format!("{base}/@groups/{}", "g".repeat(129)),
    ] {
        let (status, headers, body) = http_request("POST", &url, "x").await;
        check_error(status, &headers, 400, "BadRequestException");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid group name")
        );
    }
    for query in [
        "maxResults=0",
        "maxResults=1001",
        "maxResults=ten",
        "nextToken=%21%21",
    ] {
        let (status, headers, _) =
            http_request("GET", &format!("{base}/@connections?{query}"), "").await;
        check_error(status, &headers, 400, "BadRequestException");
    }
    let (status, headers, _) = http_request("PATCH", &format!("{base}/@groups/room"), "").await;
    check_error(status, &headers, 405, "MethodNotAllowedException");
    let (status, headers, _) = http_request(
        "PUT",
        &membership_url(&gateway, "AAAAAAAAAAAAAAA=", "room"),
        "",
    )
    .await;
    check_error(status, &headers, 410, "GoneException");

    for index in 0..100 {
        join(&gateway, id, &format!("g{index}")).await;
    }
    let (status, headers, _) =
        http_request("PUT", &membership_url(&gateway, id, "one-too-many"), "").await;
    check_error(status, &headers, 429, "LimitExceededException");
    gateway.shutdown().await;
}

//! The client side of the CLI against a fake node that speaks the API of docs/api.md: exactly
//! which requests go out, and how answers map to output and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use serde_json::{json, Value};
use util::{FakeNode, Reply};

const PEER: &str = "12D3KooWBobBobBobBobBobBobBobBobBobBobBobBobBobBob";

fn contacts() -> Value {
    json!([{"peer_id": PEER, "name": "bob", "verified": false}])
}

/// A node whose messages stay `sent`: `message.wait` never reaches anything beyond.
fn node_stuck_at(status: &'static str, reached: bool) -> FakeNode {
    FakeNode::start(move |method, params| match method {
        "message.send" => Reply::Result(json!({"id": "00ff", "status": "queued"})),
        "message.wait" => {
            Reply::Result(json!({"id": params["id"], "status": status, "reached": reached}))
        }
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    })
}

#[test]
fn send_sends_target_and_text() {
    let node = node_stuck_at("sent", false);
    let run = node.kith(&["send", "bob", "hello there", "--json"]);
    run.assert_code(0);
    assert_eq!(run.json(), json!({"id": "00ff", "status": "queued"}));
    assert_eq!(
        node.params_of("message.send"),
        json!({"target": "bob", "text": "hello there"})
    );
    assert_eq!(node.requests().len(), 1, "no wait without --wait");
}

#[test]
fn send_wait_that_times_out_exits_1_with_the_status_so_far() {
    let node = node_stuck_at("sent", false);
    let run = node.kith(&[
        "send",
        "bob",
        "hi",
        "--wait",
        "delivered",
        "--timeout",
        "3",
        "--json",
    ]);
    run.assert_code(1);
    assert_eq!(run.json()["status"], "sent");
    assert_eq!(
        node.params_of("message.wait"),
        json!({"id": "00ff", "status": "delivered", "timeout_secs": 3})
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

#[test]
fn send_wait_that_is_reached_exits_0() {
    let node = node_stuck_at("delivered", true);
    let run = node.kith(&["--json", "send", "bob", "hi", "--wait", "delivered"]);
    run.assert_code(0);
    assert_eq!(run.json()["status"], "delivered");
    assert_eq!(node.params_of("message.wait")["timeout_secs"], 30);
}

#[test]
fn send_wait_that_ends_failed_exits_1() {
    let node = node_stuck_at("failed", false);
    let run = node.kith(&["send", "bob", "hi", "--wait", "read"]);
    run.assert_code(1);
    assert!(run.stderr.contains("failed"), "{run:?}");
}

#[test]
fn a_missing_image_and_bad_timers_are_refused_before_anything_is_sent() {
    let node = node_stuck_at("sent", false);
    let run = node.kith(&["send", "bob", "--image", "/nonexistent/cat.png"]);
    run.assert_code(2);
    assert!(run.stderr.contains("cat.png"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1);
    for bad in ["2years", "-5s", "soon"] {
        node.kith(&["send", "bob", "hi", "--expire", bad])
            .assert_code(2);
    }
    assert!(node.requests().is_empty(), "nothing may be sent");
}

#[test]
fn an_image_is_passed_as_an_absolute_path_with_its_caption() {
    let node = node_stuck_at("sent", false);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cat.jpg");
    std::fs::write(&f, b"not checked by the CLI").unwrap();
    node.kith(&[
        "send",
        "bob",
        "a cat",
        "--image",
        f.to_str().unwrap(),
        "--original",
    ])
    .assert_code(0);
    let p = node.params_of("message.send");
    assert_eq!(
        p["image"],
        f.canonicalize().unwrap().to_string_lossy().as_ref()
    );
    assert_eq!(p["text"], "a cat");
    assert_eq!(p["original"], true);
}

#[test]
fn expire_is_passed_in_seconds() {
    let node = node_stuck_at("sent", false);
    node.kith(&["send", "bob", "hi", "--expire", "1h"])
        .assert_code(0);
    assert_eq!(node.params_of("message.send")["expire_secs"], 3600);
}

#[test]
fn api_errors_map_to_exit_codes() {
    let node = FakeNode::start(|method, _| match method {
        "message.send" => Reply::Error(1002, "unknown target \"carol\"", Value::Null),
        "message.read" => Reply::Error(1100, "the store failed", Value::Null),
        "contact.add" => Reply::Error(1001, "invalid PeerId or card", Value::Null),
        "contact.verify" => Reply::Error(
            1003,
            "target \"bob\" is ambiguous",
            json!({"candidates": [{"peer_id": "12D3A", "name": "bob"}, {"peer_id": "12D3B", "name": "bob"}]}),
        ),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    let run = node.kith(&["send", "carol", "hi"]);
    run.assert_code(2);
    assert_eq!(run.stderr.trim(), "kith: unknown target \"carol\"");
    node.kith(&["read", "bob"]).assert_code(1);
    node.kith(&["contact", "add", "nonsense"]).assert_code(2);
    let run = node.kith(&["contact", "verify", "bob"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("12D3A") && run.stderr.contains("12D3B"),
        "{run:?}"
    );
    node.kith(&["peers"]).assert_code(2);
}

#[test]
fn history_is_json_lines_and_human_lines_isolate_names() {
    let node = FakeNode::start(|method, _| match method {
        "contact.list" => {
            Reply::Result(json!([{"peer_id": PEER, "name": "e\u{202e}vil", "verified": false}]))
        }
        "message.history" => Reply::Result(json!([
            {"id": "01", "direction": "in", "from": PEER, "text": "hi \u{1b}[31mred",
             "status": "received", "reason": null, "sent_at": "2026-01-01T00:00:00Z",
             "received_at": "2026-01-01T00:00:01Z", "expires_at": null, "image": null, "receipts": null},
            {"id": "02", "direction": "out", "from": "12D3Me", "text": "yo", "status": "read",
             "reason": null, "sent_at": "2026-01-01T00:00:02Z", "received_at": null,
             "expires_at": null, "image": null, "receipts": null},
        ])),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    let run = node.kith(&["history", PEER, "--limit", "2", "--json"]);
    run.assert_code(0);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["direction"], "out");
    assert_eq!(
        node.params_of("message.history"),
        json!({"target": PEER, "limit": 2})
    );

    let run = node.kith(&["history", PEER]);
    run.assert_code(0);
    assert_eq!(run.stdout.lines().count(), 2, "{run:?}");
    assert!(
        run.stdout.contains("\u{2068}e\u{FFFD}vil\u{2069}: "),
        "{run:?}"
    );
    assert!(!run.stdout.contains('\u{1b}') && !run.stdout.contains('\u{202e}'));
    assert!(run.stdout.contains("you: yo  [read]"));
}

#[test]
fn contact_list_is_json_lines() {
    let node = FakeNode::start(|method, _| match method {
        "contact.list" => Reply::Result(json!([
            {"peer_id": PEER, "name": "bob", "verified": false},
            {"peer_id": "12D3KooWCarol", "name": "carol", "verified": true},
        ])),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    let lines = node
        .kith(&["contact", "list", "--json"])
        .assert_code(0)
        .json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["name"], "carol");
}

#[test]
fn watch_prints_events_until_the_node_closes() {
    let node = FakeNode::start(|method, _| match method {
        "events.subscribe" => Reply::Events(vec![
            json!({"type": "peer", "peer_id": PEER, "connected": true}),
            json!({"type": "message", "conversation": PEER, "id": "01", "from": PEER,
                   "text": "hi", "sent_at": "2026-01-01T00:00:00Z",
                   "received_at": "2026-01-01T00:00:01Z"}),
            json!({"type": "receipt", "conversation": PEER, "id": "02", "status": "read"}),
        ]),
        "contact.list" => Reply::Result(contacts()),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    let run = node.kith(&["watch", "--json"]);
    run.assert_code(0);
    let events = run.json_lines();
    assert_eq!(events.len(), 3, "{run:?}");
    assert_eq!(events[1]["text"], "hi");

    let run = node.kith(&["watch"]);
    run.assert_code(0);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            "peer bob connected",
            "2026-01-01T00:00:01Z  bob: hi",
            "message 02 to bob is read"
        ]
    );
}

#[test]
fn id_prints_the_card_as_a_qr_code() {
    let node = FakeNode::start(|method, _| match method {
        "node.id" => Reply::Result(json!({"peer_id": PEER, "name": "alice",
            "listen_addrs": [format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")], "relays": [],
            "card": "kith:exampleexampleexample"})),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    let run = node.kith(&["id", "--qr"]);
    run.assert_code(0);
    assert!(run.stdout.lines().count() > 10);
    assert_eq!(
        run.stdout.lines().last(),
        Some("kith:exampleexampleexample")
    );
    let id = node.kith(&["id", "--json"]).assert_code(0).json();
    assert_eq!(id["name"], "alice");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let many: Vec<Value> = (0..20_000)
        .map(|i| json!({"peer_id": format!("12D3KooW{i}"), "name": format!("n{i}"), "verified": false}))
        .collect();
    let node = FakeNode::start(move |method, _| match method {
        "contact.list" => Reply::Result(Value::Array(many.clone())),
        _ => Reply::Error(-32601, "unknown method", Value::Null),
    });
    // `kith contact list | head -n 1`: the reader goes away after the first line.
    let mut child = util::kith_command()
        .arg("--home")
        .arg(node.home.path())
        .args(["contact", "list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
    assert!(first.starts_with('{'));
    // The reader is dropped here; the rest of the output meets a closed pipe.
    let status = util::wait_timeout(&mut child, util::RUN_TIMEOUT).expect("kith hung");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

//! The CLI against a real node started with `kith up` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use util::Node;

#[test]
fn id_answers_with_the_contract_fields() {
    let node = Node::start("alice");
    let id = node.kith(&["id", "--json"]).assert_code(0).json();
    let peer_id = id["peer_id"].as_str().unwrap();
    assert!(peer_id.starts_with("12D3KooW"), "{id}");
    assert_eq!(id["name"], "alice");
    let addrs = id["listen_addrs"].as_array().unwrap();
    assert!(!addrs.is_empty(), "{id}");
    for addr in addrs {
        let addr = addr.as_str().unwrap();
        assert!(addr.ends_with(&format!("/p2p/{peer_id}")), "{addr}");
    }
    assert!(id["relays"].is_array(), "{id}");
    assert!(id["card"].as_str().unwrap().starts_with("kith:"), "{id}");
    // --json after or before the command.
    let before = util::kith(&["--json", "--home", node.home.path().to_str().unwrap(), "id"]);
    assert_eq!(before.assert_code(0).json()["peer_id"], peer_id);
    let peers = node.kith(&["peers", "--json"]).assert_code(0).json();
    assert!(
        peers["connected"].is_u64() && peers["peers"].is_array(),
        "{peers}"
    );
}

#[test]
fn rejected_requests_exit_2() {
    let node = Node::start("alice");
    let run = node.kith(&["send", "nobody-by-this-name", "hi"]);
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "{run:?}");

    let other = Node::start("bob");
    let bob_peer = other.peer_id();
    let big = "a".repeat(64 * 1024 + 1);
    node.kith(&["send", &bob_peer, &big]).assert_code(2);
    // Exactly 64 KiB is fine.
    node.kith(&["send", &bob_peer, &"a".repeat(64 * 1024)])
        .assert_code(0);

    node.kith(&["contact", "add", "12D3KooWnotapeerid"])
        .assert_code(2);
    node.kith(&["contact", "add", "not a peer id at all"])
        .assert_code(2);
    node.kith(&["contact", "add", &bob_peer, "--name", "\u{200b}\u{200b}"])
        .assert_code(2);
}

#[test]
fn contact_add_then_list() {
    let node = Node::start("alice");
    let bob = Node::start("bob");
    let bob_peer = bob.peer_id();
    let added = node.kith(&["contact", "add", &bob_peer, "--name", "bob", "--json"]);
    let added = added.assert_code(0).json();
    assert_eq!(added["peer_id"], bob_peer.as_str());
    assert_eq!(added["name"], "bob");
    let contacts = node
        .kith(&["contact", "list", "--json"])
        .assert_code(0)
        .json_lines();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["peer_id"], bob_peer.as_str());
    assert_eq!(contacts[0]["name"], "bob");
    assert_eq!(contacts[0]["verified"], false);
    // A contact name is now a valid target.
    let sent = node
        .kith(&["send", "bob", "hi", "--json"])
        .assert_code(0)
        .json();
    assert!(
        sent["id"].is_string() && sent["status"].is_string(),
        "{sent}"
    );
    let history = node
        .kith(&["history", "bob", "--json"])
        .assert_code(0)
        .json_lines();
    assert_eq!(history.last().map(|m| m["text"].clone()), Some("hi".into()));
}

#[test]
fn up_shuts_down_cleanly_on_sigterm() {
    let mut node = Node::start("alice");
    let status = node
        .terminate()
        .expect("kith up did not stop after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", node.log());
    node.kith(&["id"]).assert_code(2);
}

//! Crashes and restarts of real `kith up` processes on loopback: a node killed with SIGKILL
//! right after accepting a message, nodes stopped and started again, messages queued while the
//! recipient is away. A bootstrap node `boot` stays up throughout; alice and bob join through
//! it, so each finds the other's current address in the DHT after a restart (on a new port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use serde_json::Value;
use util::{poll_for, Node};

/// The longest a message may take to reach a status once both ends run.
const DELIVERY: Duration = Duration::from_secs(60);

/// A bootstrap node and two users; alice has bob as a contact named "bob".
struct Net {
    boot: Node,
    alice: Node,
    bob: Node,
    alice_id: String,
}

impl Net {
    fn start() -> Net {
        let boot = Node::start("boot");
        let alice = Node::start_joining("alice", &boot);
        let bob = Node::start_joining("bob", &boot);
        let alice_id = alice.peer_id();
        let bob_id = bob.peer_id();
        alice
            .kith(&["contact", "add", &bob_id, "--name", "bob", "--json"])
            .assert_code(0);
        Net {
            boot,
            alice,
            bob,
            alice_id,
        }
    }

    /// The three nodes' logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "==== boot's log ====\n{}\n==== alice's log ====\n{}\n==== bob's log ====\n{}",
            self.boot.log(),
            self.alice.log(),
            self.bob.log()
        )
    }

    /// alice's conversation with bob.
    fn alice_history(&self) -> Vec<Value> {
        self.alice.history("bob")
    }

    /// bob's conversation with alice (not one of his contacts: named by PeerId).
    fn bob_history(&self) -> Vec<Value> {
        self.bob.history(&self.alice_id)
    }

    /// `kith send bob TEXT --wait delivered --timeout 30` at alice, which must succeed; returns
    /// the message id.
    fn send_delivered(&self, text: &str) -> String {
        let args = [
            "send",
            "bob",
            text,
            "--wait",
            "delivered",
            "--timeout",
            "30",
            "--json",
        ];
        let run = self.alice.kith(&args);
        assert_eq!(
            run.code(),
            Some(0),
            "send {text:?} was not delivered: {run:#?}\n{}",
            self.logs()
        );
        let sent = run.json();
        assert_eq!(sent["status"], "delivered", "{sent}");
        sent["id"].as_str().unwrap().to_string()
    }

    /// `kith send bob TEXT --json` at alice, which must answer `queued`; returns the id.
    fn send_queued(&self, text: &str) -> String {
        let sent = self
            .alice
            .kith(&["send", "bob", text, "--json"])
            .assert_code(0)
            .json();
        assert_eq!(sent["status"], "queued", "{sent}");
        sent["id"].as_str().unwrap().to_string()
    }

    /// Polls alice's history until the messages `ids` all have `status`.
    fn wait_alice_sees(&self, ids: &[&str], status: &str) {
        poll_for(
            &format!("alice to see {ids:?} {status}"),
            DELIVERY,
            || {
                let history = self.alice_history();
                ids.iter()
                    .all(|id| entry(&history, id).is_some_and(|m| m["status"] == status))
                    .then_some(())
            },
            || {
                format!(
                    "alice's history: {:#?}\n{}",
                    self.alice_history(),
                    self.logs()
                )
            },
        );
    }
}

/// Stops `node` with SIGTERM; it must exit 0.
fn stop(node: &mut Node, who: &str) {
    let status = node.terminate();
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "{who}'s kith up ended with {status:?} after SIGTERM: {}",
        node.log()
    );
}

/// The history entry with message id `id`.
fn entry<'a>(history: &'a [Value], id: &str) -> Option<&'a Value> {
    history.iter().find(|m| m["id"] == id)
}

/// The texts of a history, in order.
fn texts(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

/// How many entries of a history have this text.
fn count(history: &[Value], text: &str) -> usize {
    history.iter().filter(|m| m["text"] == text).count()
}

#[test]
fn kill_9_right_after_send_loses_nothing_and_duplicates_nothing() {
    let mut net = Net::start();
    let before = net.send_delivered("before crash");

    stop(&mut net.bob, "bob");
    let id = net.send_queued("after crash");
    // The node answered, so the message is on disk: crash at once, before any clean-up.
    net.alice.kill();

    net.alice.restart();
    net.bob.restart();
    net.wait_alice_sees(&[&id], "delivered");

    let history = net.bob_history();
    assert_eq!(count(&history, "after crash"), 1, "{history:#?}");
    assert_eq!(count(&history, "before crash"), 1, "{history:#?}");
    let got = entry(&history, &id).unwrap_or_else(|| panic!("{id} missing: {history:#?}"));
    assert_eq!(got["direction"], "in");
    assert_eq!(got["from"], net.alice_id.as_str());

    // A later message goes through the same outbox: once it is delivered, the crashed one
    // has still arrived only once, and alice's side holds each message once too.
    let after = net.send_delivered("after the restart");
    let history = net.bob_history();
    assert_eq!(
        texts(&history),
        ["before crash", "after crash", "after the restart"],
        "{history:#?}"
    );
    let alice_side = net.alice_history();
    let ids: Vec<&str> = alice_side
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [before.as_str(), id.as_str(), after.as_str()]);
}

#[test]
fn histories_and_statuses_survive_restart() {
    let mut net = Net::start();
    // Emoji (with a skin-tone modifier), right-to-left scripts, a zero-width space, a newline.
    let text = "héllo 👋🏽 — שלום עולם, مرحبا\u{200b}!\nsecond line";
    let id = net.send_delivered(text);

    let marked = net
        .bob
        .kith(&["read", &net.alice_id, "--json"])
        .assert_code(0)
        .json();
    assert_eq!(marked["marked"], 1, "{marked}");
    net.wait_alice_sees(&[&id], "read");

    stop(&mut net.alice, "alice");
    stop(&mut net.bob, "bob");
    net.alice.restart();
    net.bob.restart();

    let alice_side = net.alice_history();
    let sent = entry(&alice_side, &id).unwrap_or_else(|| panic!("{id} lost: {alice_side:#?}"));
    assert_eq!(sent["direction"], "out", "{sent}");
    assert_eq!(sent["status"], "read", "{sent}");
    assert_eq!(sent["text"].as_str(), Some(text), "{sent}");

    let bob_side = net.bob_history();
    let got = entry(&bob_side, &id).unwrap_or_else(|| panic!("{id} lost: {bob_side:#?}"));
    assert_eq!(got["direction"], "in", "{got}");
    assert_eq!(got["status"], "read", "{got}");
    assert_eq!(got["from"], net.alice_id.as_str(), "{got}");
    assert_eq!(got["text"].as_str(), Some(text), "{got}");
    assert_eq!(bob_side.len(), 1, "{bob_side:#?}");
}

#[test]
fn three_queued_messages_arrive_once_in_order() {
    let mut net = Net::start();
    // Bob's record is in the DHT and alice has reached him once.
    net.send_delivered("hello");

    stop(&mut net.bob, "bob");
    let ids: Vec<String> = ["queued 1", "queued 2", "queued 3"]
        .iter()
        .map(|text| net.send_queued(text))
        .collect();
    net.bob.restart();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    net.wait_alice_sees(&ids, "delivered");

    let history = net.bob_history();
    assert_eq!(
        texts(&history),
        ["hello", "queued 1", "queued 2", "queued 3"],
        "{history:#?}"
    );
    let got: Vec<&str> = history[1..]
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
}

#[test]
fn api_socket_is_private() {
    let node = Node::start("alice");
    let meta = std::fs::symlink_metadata(node.socket()).unwrap();
    assert!(meta.file_type().is_socket(), "{meta:?}");
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "api.sock has mode {mode:o}");
}

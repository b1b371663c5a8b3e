//! Relays under kill -9, with real `kith up` processes on loopback: messages to an offline peer
//! are stored at its relay (status `sent`), survive crashes of the sender, the relay and the
//! recipient (killed while it fetches), arrive once and in order, and their receipts come back.
//!
//! The relay listens on a fixed port so that it keeps its address across restarts; the others
//! listen on random loopback ports and find each other through a bootstrap node.
//!
//! Not covered here: a relay whose quota refuses a deposit (the message must then stay queued
//! at the sender). That needs a relay with a small quota, and `kith up` has no flag to set one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::time::{Duration, Instant};

use serde_json::Value;
use util::{free_loopback_port, poll_for, Node, Run};

/// The longest a condition in this test may take to hold.
const WAIT: Duration = Duration::from_secs(60);

/// The five messages alice sends while bob is away, in order.
const OFFLINE: [&str; 5] = [
    "offline 1",
    "offline 2",
    "offline 3",
    "offline 4",
    "offline 5",
];

/// A bootstrap node, a relay on a fixed port, and two users registered at the relay. alice has
/// bob as a contact named "bob".
struct Net {
    boot: Node,
    relay: Node,
    alice: Node,
    bob: Node,
    alice_id: String,
    started: Instant,
    timings: Vec<(String, Duration)>,
}

impl Net {
    fn start() -> Net {
        let started = Instant::now();
        let boot = Node::start("boot");
        let boot_addr = boot.loopback_addr();

        let port = free_loopback_port();
        let listen = format!("/ip4/127.0.0.1/tcp/{port}");
        let relay = Node::start_at("relay", &listen, &["--bootstrap", &boot_addr, "--relay"]);
        let relay_addr = format!("{listen}/p2p/{}", relay.peer_id());
        assert_eq!(relay.loopback_addr(), relay_addr, "{}", relay.log());

        let joining = ["--bootstrap", &boot_addr, "--use-relay", &relay_addr];
        let bob = Node::start_with("bob", &joining);
        let alice = Node::start_with("alice", &joining);
        let alice_id = alice.peer_id();
        let mut net = Net {
            boot,
            relay,
            alice,
            bob,
            alice_id,
            started,
            timings: Vec::new(),
        };
        net.mark("four nodes up");
        net
    }

    /// Records how long the test has run when `what` happened.
    fn mark(&mut self, what: &str) {
        self.timings
            .push((what.to_string(), self.started.elapsed()));
    }

    /// The timings recorded so far, one per line.
    fn timings(&self) -> String {
        let mut out = String::new();
        let mut previous = Duration::ZERO;
        for (what, at) in &self.timings {
            out.push_str(&format!(
                "  +{:>6} ms ({:>6} ms)  {what}\n",
                at.as_millis(),
                (*at - previous).as_millis()
            ));
            previous = *at;
        }
        out
    }

    /// The four nodes' logs (every run of each), for failure messages.
    fn logs(&self) -> String {
        format!(
            "==== timings ====\n{}==== boot's log ====\n{}\n==== relay's log ====\n{}\n\
             ==== alice's log ====\n{}\n==== bob's log ====\n{}",
            self.timings(),
            self.boot.log(),
            self.relay.log(),
            self.alice.log(),
            self.bob.log()
        )
    }

    /// Checks that a `kith` run exited 0, with the logs otherwise.
    #[track_caller]
    fn ok(&self, run: Run, what: &str) -> Value {
        assert_eq!(
            run.code(),
            Some(0),
            "{what} failed: {run:#?}\n{}",
            self.logs()
        );
        run.json()
    }

    /// `kith history TARGET --json` at `node`, or `None` if it did not answer (e.g. the node is
    /// still starting).
    fn history(node: &Node, target: &str) -> Option<Vec<Value>> {
        let run = node.kith(&["history", target, "--json"]);
        (run.code() == Some(0)).then(|| run.json_lines())
    }

    /// bob's conversation with alice (not one of his contacts: named by PeerId).
    fn bob_history(&self) -> Option<Vec<Value>> {
        Net::history(&self.bob, &self.alice_id)
    }

    /// bob's texts from alice that start with "offline ", in history order.
    fn bob_offline_texts(&self) -> Option<Vec<String>> {
        let history = self.bob_history()?;
        Some(
            texts(&history)
                .into_iter()
                .filter(|t| t.starts_with("offline "))
                .map(str::to_string)
                .collect(),
        )
    }

    /// Polls `probe` for [`WAIT`]; on timeout, panics with `what`, `state()` and the logs.
    fn poll<T>(
        &self,
        what: &str,
        probe: impl FnMut() -> Option<T>,
        state: impl FnOnce() -> String,
    ) -> T {
        poll_for(what, WAIT, probe, || {
            format!("{}\n{}", state(), self.logs())
        })
    }
}

/// The texts of a history, in order.
fn texts(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|m| m["text"].as_str().unwrap_or(""))
        .collect()
}

/// How many entries of a history have this text.
fn count(history: &[Value], text: &str) -> usize {
    history.iter().filter(|m| m["text"] == text).count()
}

#[test]
fn relay_scenario_with_kill_9_everywhere() {
    let mut net = Net::start();
    let bob_id = net.bob.peer_id();

    // bob holds a reservation at the relay, so his record names it.
    net.poll(
        "bob to list a relay in `kith id`",
        || {
            let run = net.bob.kith(&["--json", "id"]);
            let id = (run.code() == Some(0)).then(|| run.json())?;
            id["relays"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                .then_some(())
        },
        || format!("bob's id: {:?}", net.bob.kith(&["--json", "id"])),
    );
    net.mark("bob lists the relay");

    let run = net
        .alice
        .kith(&["contact", "add", &bob_id, "--name", "bob", "--json"]);
    net.ok(run, "contact add bob");
    let args = [
        "send",
        "bob",
        "hi",
        "--wait",
        "delivered",
        "--timeout",
        "30",
        "--json",
    ];
    let sent = net.ok(net.alice.kith(&args), "send bob hi --wait delivered");
    assert_eq!(sent["status"], "delivered", "{sent}\n{}", net.logs());
    net.mark("hi delivered directly");

    // bob crashes; alice's messages go to his relay.
    net.bob.kill();
    net.mark("bob killed (-9)");
    for text in OFFLINE {
        let args = [
            "send",
            "bob",
            text,
            "--wait",
            "sent",
            "--timeout",
            "30",
            "--json",
        ];
        let sent = net.ok(net.alice.kith(&args), &format!("send {text:?} --wait sent"));
        assert_eq!(
            sent["status"],
            "sent",
            "{text:?} was not stored at the relay: {sent}\n{}",
            net.logs()
        );
        net.mark(&format!("{text:?} sent (at the relay)"));
    }

    // alice and the relay crash between the deposit and the fetch; the relay comes back on
    // the same address.
    net.alice.kill();
    net.mark("alice killed (-9)");
    net.relay.kill();
    net.mark("relay killed (-9)");
    net.relay.restart();
    net.mark("relay restarted");

    // bob comes back and is killed as soon as the first message reached his history: while
    // he fetches (unless all five came in one go). His history is polled without a pause from
    // the moment `kith up` starts, to kill him as early as possible.
    net.bob.spawn_again();
    net.mark("bob started again");
    let deadline = Instant::now() + WAIT;
    let fetched_before_kill = loop {
        if let Some(fetched) = net.bob_offline_texts().filter(|t| !t.is_empty()) {
            break fetched;
        }
        assert!(
            net.bob.is_running(),
            "bob's kith up exited on its own\n{}",
            net.logs()
        );
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for bob to fetch a first offline message; \
             bob's history: {:#?}\n{}",
            net.bob_history(),
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    net.bob.kill();
    net.mark(&format!(
        "bob killed (-9) with {} offline message(s) fetched: {fetched_before_kill:?}",
        fetched_before_kill.len()
    ));

    net.bob.restart();
    net.mark("bob restarted again");
    net.poll(
        "bob to hold the five offline messages, once each, in order",
        || (net.bob_offline_texts()? == OFFLINE).then_some(()),
        || format!("bob's history: {:#?}", net.bob_history()),
    );
    net.mark("bob holds offline 1..5 in order");

    // alice comes back and collects the receipts.
    net.alice.restart();
    net.mark("alice restarted");
    net.poll(
        "alice to see the five offline messages delivered",
        || {
            let history = Net::history(&net.alice, "bob")?;
            OFFLINE
                .iter()
                .all(|text| {
                    history
                        .iter()
                        .any(|m| m["text"] == *text && m["status"] == "delivered")
                })
                .then_some(())
        },
        || format!("alice's history: {:#?}", Net::history(&net.alice, "bob")),
    );
    net.mark("alice sees offline 1..5 delivered");

    // Nothing is duplicated at bob, and the message from before the crashes is still there.
    let history = net
        .bob_history()
        .unwrap_or_else(|| panic!("bob's history did not answer\n{}", net.logs()));
    let mut expected = vec!["hi"];
    expected.extend(OFFLINE);
    assert_eq!(texts(&history), expected, "{history:#?}\n{}", net.logs());
    for text in &expected {
        assert_eq!(count(&history, text), 1, "{text:?}: {history:#?}");
    }
    for m in &history {
        assert_eq!(m["direction"], "in", "{m}");
        assert_eq!(m["from"], net.alice_id.as_str(), "{m}");
    }
    // alice's side holds each message once too.
    let alice_side = Net::history(&net.alice, "bob")
        .unwrap_or_else(|| panic!("alice's history did not answer\n{}", net.logs()));
    assert_eq!(texts(&alice_side), expected, "{alice_side:#?}");

    net.mark("checks done");
    eprintln!(
        "relay_scenario_with_kill_9_everywhere timings:\n{}",
        net.timings()
    );
}

//! Helpers for tests that run the real `kith` binary: temporary homes, runs under a timeout,
//! a node started with `kith up`, and a fake API server speaking the node's JSON-RPC.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// The longest any single `kith` command may take in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a node may take to start answering its API.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two polls of a condition.
pub const POLL: Duration = Duration::from_millis(100);

/// What a finished `kith` run left behind.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The stdout as one JSON object.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:?}"))
    }

    /// The stdout as JSON Lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), Some(code), "unexpected exit: {self:#?}");
        self
    }
}

/// A `kith` command with a clean environment (no KITH_HOME, no RUST_LOG).
pub fn kith_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.env_remove("KITH_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `kith ARGS` to its end (killed and failed after [`RUN_TIMEOUT`]).
pub fn kith(args: &[&str]) -> Run {
    run_command(kith_command().args(args))
}

/// Runs `kith --home HOME ARGS`.
pub fn kith_in(home: &Path, args: &[&str]) -> Run {
    run_command(kith_command().arg("--home").arg(home).args(args))
}

/// Runs a prepared command to its end, with stdout and stderr captured in files so that no
/// pipe can fill up, under [`RUN_TIMEOUT`].
pub fn run_command(cmd: &mut Command) -> Run {
    let dir = TempDir::new().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("cannot start kith");
    let status = wait_timeout(&mut child, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("kith did not finish within {RUN_TIMEOUT:?}: {cmd:?}"));
    Run {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// Waits for `child` to exit; kills it and returns `None` after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

/// A temporary home holding an identity made by `kith init`.
pub fn initialized_home(name: Option<&str>) -> TempDir {
    let home = TempDir::new().unwrap();
    let mut args = vec!["init"];
    if let Some(name) = name {
        args.extend(["--name", name]);
    }
    kith_in(home.path(), &args).assert_code(0);
    home
}

/// A node started with `kith up` on loopback, killed when dropped.
pub struct Node {
    pub home: TempDir,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Initializes a home and runs `kith up` in it; returns once `kith id` answers.
    pub fn start(name: &str) -> Node {
        let home = initialized_home(Some(name));
        let log = home.path().join("up.log");
        let child = kith_command()
            .arg("--home")
            .arg(home.path())
            .args(["up", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("cannot start kith up");
        let mut node = Node { home, child, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("kith up exited with {status}: {}", node.log());
            }
            if node.kith(&["id", "--json"]).code() == Some(0) {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "kith up did not answer in time: {}",
                node.log()
            );
            thread::sleep(POLL);
        }
    }

    /// Runs `kith --home HOME ARGS` against this node.
    pub fn kith(&self, args: &[&str]) -> Run {
        kith_in(self.home.path(), args)
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> String {
        let id = self.kith(&["id", "--json"]).assert_code(0).json();
        id["peer_id"].as_str().unwrap().to_string()
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the node to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_timeout(&mut self.child, RUN_TIMEOUT)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a fake node answers to one request.
pub enum Reply {
    Result(Value),
    Error(i64, &'static str, Value),
    /// Answer `{"subscribed": true}`, send these events, then close the connection.
    Events(Vec<Value>),
}

type Handler = dyn Fn(&str, &Value) -> Reply + Send + Sync;

/// A fake node: serves JSON-RPC on HOME/api.sock with canned answers and records requests.
pub struct FakeNode {
    pub home: TempDir,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeNode {
    pub fn start(handler: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> FakeNode {
        let home = TempDir::new().unwrap();
        let listener = UnixListener::bind(home.path().join("api.sock")).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        // The accept loop ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || serve(stream, &*handler, &recorded));
            }
        });
        FakeNode { home, requests }
    }

    pub fn kith(&self, args: &[&str]) -> Run {
        kith_in(self.home.path(), args)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The params of the first request for `method`.
    pub fn params_of(&self, method: &str) -> Value {
        self.requests()
            .into_iter()
            .find(|r| r["method"] == method)
            .map(|r| r["params"].clone())
            .unwrap_or_else(|| panic!("no {method} request among {:?}", self.requests()))
    }
}

fn serve(stream: std::os::unix::net::UnixStream, handler: &Handler, recorded: &Mutex<Vec<Value>>) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let request: Value = serde_json::from_str(&line).unwrap();
        recorded.lock().unwrap().push(request.clone());
        let method = request["method"].as_str().unwrap_or("");
        let id = request["id"].clone();
        let params = request.get("params").cloned().unwrap_or(Value::Null);
        let mut send = |v: Value| writeln!(writer, "{v}").is_ok();
        match handler(method, &params) {
            Reply::Result(result) => {
                send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
            }
            Reply::Error(code, message, data) => {
                send(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": code, "message": message, "data": data}}));
            }
            Reply::Events(events) => {
                send(json!({"jsonrpc": "2.0", "id": id, "result": {"subscribed": true}}));
                for event in events {
                    send(json!({"jsonrpc": "2.0", "method": "event", "params": event}));
                }
                return;
            }
        }
    }
}

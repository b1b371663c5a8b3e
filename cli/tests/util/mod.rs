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

/// Polls `probe` until it yields a value, panicking after `timeout` with `what` and what
/// `context` says then (for instance the nodes' logs).
pub fn poll_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
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

/// A node started with `kith up` on loopback (without mDNS), killed when dropped. It can be
/// stopped (SIGTERM), killed (SIGKILL) and started again on the same home; every run appends
/// its stderr to the same log, HOME/up.log.
pub struct Node {
    pub home: TempDir,
    child: Child,
    log: PathBuf,
    /// The `--listen` address: `/ip4/127.0.0.1/tcp/0` (a new port on every run) unless the
    /// node was started with [`Node::start_at`].
    listen: String,
    /// The `kith up` flags after `--listen LISTEN --no-mdns`.
    extra_args: Vec<String>,
}

impl Node {
    /// Initializes a home and runs `kith up` in it; returns once `kith id` answers.
    pub fn start(name: &str) -> Node {
        Node::start_with(name, &[])
    }

    /// Like [`Node::start`], with more `kith up` flags (e.g. `--bootstrap ADDR`).
    pub fn start_with(name: &str, extra_args: &[&str]) -> Node {
        Node::start_at(name, "/ip4/127.0.0.1/tcp/0", extra_args)
    }

    /// Like [`Node::start_with`], listening on `listen` instead of a random loopback port. A
    /// fixed port (see [`free_loopback_port`]) keeps the node's address across restarts.
    pub fn start_at(name: &str, listen: &str, extra_args: &[&str]) -> Node {
        let home = initialized_home(Some(name));
        let log = home.path().join("up.log");
        let listen = listen.to_string();
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let child = spawn_up(home.path(), &log, &listen, &extra_args);
        let mut node = Node {
            home,
            child,
            log,
            listen,
            extra_args,
        };
        node.wait_ready();
        node
    }

    /// A node bootstrapping from `boot` (its loopback address, see [`Node::loopback_addr`]).
    pub fn start_joining(name: &str, boot: &Node) -> Node {
        Node::start_with(name, &["--bootstrap", &boot.loopback_addr()])
    }

    /// Runs `kith up` again on the same home with the same flags, after the previous run
    /// ended; returns once `kith id` answers.
    pub fn restart(&mut self) {
        self.spawn_again();
        self.wait_ready();
    }

    /// Runs `kith up` again on the same home with the same flags, after the previous run
    /// ended, and returns at once: the node may not answer its API yet.
    pub fn spawn_again(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "restart of a node that still runs"
        );
        if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(log, "---- test: kith up started again ----");
        }
        self.child = spawn_up(self.home.path(), &self.log, &self.listen, &self.extra_args);
    }

    /// Polls `kith id` until it answers; panics if `kith up` exits or takes too long.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("kith up exited with {status}: {}", self.log());
            }
            if self.kith(&["id", "--json"]).code() == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kith up did not answer in time: {}",
                self.log()
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

    /// This node's first listen address on 127.0.0.1, with its `/p2p/` suffix: what others
    /// pass to `--bootstrap`.
    pub fn loopback_addr(&self) -> String {
        let id = self.kith(&["id", "--json"]).assert_code(0).json();
        id["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/") && a.contains("/p2p/"))
            .unwrap_or_else(|| panic!("no loopback /p2p/ address in {id}"))
            .to_string()
    }

    /// `kith history TARGET --json`, which must succeed.
    pub fn history(&self, target: &str) -> Vec<Value> {
        self.kith(&["history", target, "--json"])
            .assert_code(0)
            .json_lines()
    }

    /// HOME/api.sock.
    pub fn socket(&self) -> PathBuf {
        self.home.path().join("api.sock")
    }

    /// The process id of the current `kith up`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the node logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the node to exit (`None` if it did not within
    /// [`RUN_TIMEOUT`]; it is then killed).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.child.try_wait().unwrap() {
            return Some(status);
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_timeout(&mut self.child, RUN_TIMEOUT)
    }

    /// Sends SIGKILL at once and reaps the process: a crash, with no chance to clean up.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.child.try_wait().unwrap() {
            return status;
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Whether the current `kith up` is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Spawns `kith --home HOME up --listen LISTEN --no-mdns EXTRA...`, appending its stderr to
/// `log`.
fn spawn_up(home: &Path, log: &Path, listen: &str, extra_args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    kith_command()
        .arg("--home")
        .arg(home)
        .args(["up", "--listen", listen, "--no-mdns"])
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cannot start kith up")
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

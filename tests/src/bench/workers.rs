//! Spreading a benchmark's nodes over worker processes, so that no process runs out of file
//! descriptors (a loopback connection inside one process costs two).
//!
//! The parent runs node 0 (the sender, and everyone's bootstrap) and starts children — the same
//! binary with `--worker KIND FIRST COUNT BOOTSTRAP` — that each run nodes `FIRST..FIRST+COUNT`
//! on 127.0.0.1, bootstrapping from node 0. They talk in lines: a child prints `peer I PEERID`
//! for each node it started, then `ready`; it answers the parent's commands on stdin with one line
//! each, and may print `arrival I TAG NANOS` at any time. A child ends when its stdin closes
//! (the parent closed it or died); the parent kills children it drops.
//!
//! Times crossing processes are nanoseconds on a clock shared by every process on the machine:
//! each process reads the wall clock once and counts from there on its monotonic clock
//! ([`nanos_of`], [`instant_of`]).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kith_node::harness::Harness;
use libp2p::Multiaddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::bare::{Arrival, BareNode, Roles};

/// Nodes per worker process, unless `KITH_BENCH_PER_WORKER` says otherwise.
pub const PER_WORKER: usize = 50;
/// Lines queued between a pipe's reader task and its consumer.
const LINES_CAPACITY: usize = 1024;
/// How long a child may take to answer one command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a child may take to start its nodes.
const START_TIMEOUT: Duration = Duration::from_secs(300);

fn reference() -> &'static (Instant, u128) {
    static REF: OnceLock<(Instant, u128)> = OnceLock::new();
    REF.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), wall.as_nanos())
    })
}

/// `at` as nanoseconds since the Unix epoch, comparable across processes.
pub fn nanos_of(at: Instant) -> u128 {
    let (i, w) = reference();
    match at.checked_duration_since(*i) {
        Some(d) => w + d.as_nanos(),
        None => w.saturating_sub(i.duration_since(at).as_nanos()),
    }
}

/// The local instant of [`nanos_of`]'s `nanos`.
pub fn instant_of(nanos: u128) -> Instant {
    let (i, w) = reference();
    let d = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
    if nanos >= *w {
        *i + d(nanos - w)
    } else {
        i.checked_sub(d(w - nanos)).unwrap_or(*i)
    }
}

/// Nodes per worker process.
pub fn per_worker() -> usize {
    std::env::var("KITH_BENCH_PER_WORKER")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(PER_WORKER)
}

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

static FD_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Starts sampling [`fd_count`] every 200 ms (once per process); see [`peak_fds`].
pub fn sample_fds() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::Relaxed) {
        return;
    }
    tokio::spawn(async {
        loop {
            FD_PEAK.fetch_max(fd_count(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// The highest descriptor count sampled since [`sample_fds`] or [`reset_peak_fds`].
pub fn peak_fds() -> usize {
    FD_PEAK.load(Ordering::Relaxed).max(fd_count())
}

/// Starts counting [`peak_fds`] again from now.
pub fn reset_peak_fds() {
    FD_PEAK.store(fd_count(), Ordering::Relaxed);
}

/// The arguments of a worker process: `--worker KIND FIRST COUNT BOOTSTRAP`.
pub struct WorkerArgs {
    pub kind: String,
    pub first: usize,
    pub count: usize,
    pub boot: Multiaddr,
}

impl WorkerArgs {
    /// Parsed from [`super::args`], if this process is a worker.
    pub fn from_args(args: &[String]) -> Option<WorkerArgs> {
        match args {
            [w, kind, first, count, boot, ..] if w == "--worker" => Some(WorkerArgs {
                kind: kind.clone(),
                first: first.parse().ok()?,
                count: count.parse().ok()?,
                boot: boot.parse().ok()?,
            }),
            _ => None,
        }
    }

    pub fn nodes(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.count
    }
}

/// One line to the parent (stdout is line-buffered).
pub fn say(line: &str) {
    println!("{line}");
}

/// Reports an arrival to the parent.
pub fn say_arrival((node, tag, at): Arrival) {
    say(&format!("arrival {node} {tag} {}", nanos_of(at)));
}

static STDIN_CLOSED: AtomicBool = AtomicBool::new(false);

/// Child side: the parent's command lines, read from stdin from now on. The channel closes
/// when stdin does; the nodes' start loops then stop early too.
pub fn commands() -> mpsc::Receiver<String> {
    sample_fds();
    let (tx, rx) = mpsc::channel(LINES_CAPACITY);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
        STDIN_CLOSED.store(true, Ordering::Relaxed);
    });
    rx
}

fn stdin_closed() -> bool {
    STDIN_CLOSED.load(Ordering::Relaxed)
}

/// Child side: answers the [`commands`] until stdin closes. `fds` is answered here
/// (`fds PEAK`); every other line goes to `handle`, whose answer is printed.
pub async fn serve<F, Fut>(mut commands: mpsc::Receiver<String>, mut handle: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    while let Some(line) = commands.recv().await {
        if line == "fds" {
            say(&format!("fds {}", peak_fds()));
        } else {
            say(&handle(line).await);
        }
    }
}

/// Child side: a harness of kith nodes `args.nodes()` bootstrapping from `args.boot`; prints
/// `peer I PEERID` for each, then `ready`.
pub async fn start_kith(args: &WorkerArgs, prefix: &str) -> Harness {
    let mut net = Harness::new().expect("harness");
    net.set_bootstrap(vec![args.boot.clone()]);
    for i in args.nodes().take_while(|_| !stdin_closed()) {
        let k = net.add(&format!("{prefix}{i}")).await.expect("node starts");
        say(&format!("peer {i} {}", net.peer_id(k)));
    }
    say("ready");
    net
}

/// Child side: bare nodes `args.nodes()` bootstrapping from `args.boot`, each passed to
/// `started`; prints `peer I PEERID` for each, then `ready`. Gossip arrivals are printed.
pub async fn start_bare(
    args: &WorkerArgs,
    roles: Roles,
    mut started: impl FnMut(&Arc<BareNode>),
) -> Vec<Arc<BareNode>> {
    let (tx, mut rx) = mpsc::channel(super::fanout::ARRIVALS_CAPACITY);
    tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            say_arrival(a);
        }
    });
    let mut nodes = vec![];
    for i in args.nodes().take_while(|_| !stdin_closed()) {
        let arrivals = roles.gossip.then(|| tx.clone());
        let node = Arc::new(BareNode::start(roles, Some(args.boot.clone()), i, arrivals).await);
        started(&node);
        say(&format!("peer {i} {}", node.peer_id));
        nodes.push(node);
    }
    say("ready");
    nodes
}

/// Parent side: one child process.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The nodes it runs.
    pub nodes: std::ops::Range<usize>,
}

impl Worker {
    /// Starts this binary as `--worker KIND FIRST COUNT BOOT`. Its `arrival` lines go to
    /// `arrivals`; the others are read with [`Worker::line`].
    pub fn spawn(
        kind: &str,
        nodes: std::ops::Range<usize>,
        boot: &Multiaddr,
        arrivals: Option<mpsc::Sender<Arrival>>,
    ) -> std::io::Result<Worker> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--worker".to_string(),
                kind.to_string(),
                nodes.start.to_string(),
                nodes.len().to_string(),
                boot.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel(LINES_CAPACITY);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                match (parse_arrival(&l), &arrivals) {
                    (Some(a), Some(to)) => {
                        let _ = to.send(a).await;
                    }
                    (Some(_), None) => {}
                    (None, _) => {
                        if tx.send(l).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Worker {
            child,
            stdin,
            lines: rx,
            nodes,
        })
    }

    /// The next line that is not an arrival, within `timeout`.
    pub async fn line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) -> bool {
        let Some(s) = self.stdin.as_mut() else {
            return false;
        };
        s.write_all(format!("{line}\n").as_bytes()).await.is_ok() && s.flush().await.is_ok()
    }

    /// Sends a command and returns its answer.
    pub async fn ask(&mut self, line: &str) -> Option<String> {
        if !self.send(line).await {
            return None;
        }
        self.line(REPLY_TIMEOUT).await
    }

    /// Closes its stdin and waits (bounded) for it to stop its nodes and exit; kills it if not.
    pub async fn close(mut self) {
        self.stdin = None;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn parse_arrival(l: &str) -> Option<Arrival> {
    let mut w = l.strip_prefix("arrival ")?.split(' ');
    let node = w.next()?.parse().ok()?;
    let tag = w.next()?.parse().ok()?;
    let nanos = w.next()?.parse().ok()?;
    Some((node, tag, instant_of(nanos)))
}

/// Parent side: the children that run nodes `1..n`, and every node's PeerId (index 0 is the
/// parent's node, filled in by the caller).
pub struct Workers {
    pub list: Vec<Worker>,
    pub peers: Vec<String>,
}

impl Workers {
    /// Starts children of `kind` for nodes `1..n` ([`per_worker`] each), all at once, and waits
    /// until every one is ready. `None` if one failed.
    pub async fn spawn(
        kind: &str,
        n: usize,
        boot: &Multiaddr,
        arrivals: Option<mpsc::Sender<Arrival>>,
    ) -> Option<Workers> {
        let per = per_worker();
        let mut list = vec![];
        let mut first = 1;
        while first < n {
            let end = (first + per).min(n);
            list.push(Worker::spawn(kind, first..end, boot, arrivals.clone()).ok()?);
            first = end;
        }
        let mut peers = vec![String::new(); n];
        for w in &mut list {
            loop {
                let l = w.line(START_TIMEOUT).await?;
                if l == "ready" {
                    break;
                }
                let mut it = l.strip_prefix("peer ")?.split(' ');
                let i: usize = it.next()?.parse().ok()?;
                *peers.get_mut(i)? = it.next()?.to_string();
            }
        }
        Some(Workers { list, peers })
    }

    /// The child running node `i`.
    pub fn owner(&mut self, i: usize) -> Option<&mut Worker> {
        self.list.iter_mut().find(|w| w.nodes.contains(&i))
    }

    /// The highest descriptor count any child reached.
    pub async fn peak_fds(&mut self) -> usize {
        let mut max = 0;
        for w in &mut self.list {
            if let Some(n) = w
                .ask("fds")
                .await
                .and_then(|l| l.strip_prefix("fds ")?.parse().ok())
            {
                max = max.max(n);
            }
        }
        max
    }

    /// Closes every child and waits for them to exit.
    pub async fn close(self) {
        futures::future::join_all(self.list.into_iter().map(Worker::close)).await;
    }
}

/// The `main` of a benchmark with workers: as `--worker kith|bare …`, runs `kith` or `bare`
/// with its arguments; otherwise runs `parent` with the sizes given as arguments (`default`
/// without any).
pub fn main<K, KF, B, BF, P, PF>(kith: K, bare: B, default: &[usize], parent: P)
where
    K: FnOnce(WorkerArgs) -> KF,
    KF: std::future::Future<Output = ()>,
    B: FnOnce(WorkerArgs) -> BF,
    BF: std::future::Future<Output = ()>,
    P: FnOnce(Vec<usize>) -> PF,
    PF: std::future::Future<Output = ()>,
{
    super::init_logs();
    let rt = super::runtime();
    let args = super::args();
    if let Some(w) = WorkerArgs::from_args(&args) {
        match w.kind.as_str() {
            "kith" => rt.block_on(kith(w)),
            _ => rt.block_on(bare(w)),
        }
        return;
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = default.to_vec();
    }
    rt.block_on(async {
        sample_fds();
        parent(sizes).await
    });
}

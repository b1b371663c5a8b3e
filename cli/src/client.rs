//! A JSON-RPC 2.0 client for the node's local API: newline-delimited JSON over the Unix socket
//! HOME/api.sock (docs/api.md).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::error::CliError;
use crate::home::Home;

/// How long a call waits for its answer when it has no timeout of its own. The local API
/// answers quickly; this only keeps a wedged node from hanging the command forever.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Most events kept while an answer is awaited; the node itself sends `lagged` past 1024.
const EARLY_EVENTS_CAPACITY: usize = 1024;

/// One connection to a running node.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// Events that arrived while waiting for an answer, kept for [`Client::next_event`].
    early_events: VecDeque<Value>,
}

impl Client {
    /// Connects to the node of `home`. No socket, or a socket nobody listens on, means no node
    /// is running: that is a rejection (exit 2) with a hint to start one.
    pub async fn connect(home: &Home) -> Result<Client, CliError> {
        let socket = home.socket();
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(no_node(home));
            }
            Err(e) => {
                return Err(CliError::Rejected(format!(
                    "cannot connect to the node's API at {}: {e}",
                    socket.display()
                )));
            }
        };
        let (reader, writer) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(reader),
            writer,
            next_id: 1,
            early_events: VecDeque::new(),
        })
    }

    /// Calls `method` and returns its result, waiting at most [`CALL_TIMEOUT`].
    pub async fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, CliError> {
        self.call_with_timeout(method, params, CALL_TIMEOUT).await
    }

    /// Calls `method` and returns its result, waiting at most `timeout` for the answer.
    pub async fn call_with_timeout(
        &mut self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, CliError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            request["params"] = params;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| lost(&format!("sending {method}"), &e))?;
        match tokio::time::timeout(timeout, self.answer(id)).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(CliError::NotReached(format!(
                "the node did not answer {method} within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// Reads lines until the answer to request `id`, skipping notifications.
    async fn answer(&mut self, id: u64) -> Result<Value, CliError> {
        loop {
            let Some(message) = self.read_message().await? else {
                return Err(CliError::NotReached(
                    "the node closed the connection before answering".into(),
                ));
            };
            let answer_id = message.get("id");
            let is_ours = answer_id.and_then(Value::as_u64) == Some(id);
            // An error about a line the node could not read carries `"id": null`.
            let is_unattributed_error = answer_id.is_none_or(Value::is_null)
                && message.get("method").is_none()
                && message.get("error").is_some();
            if !is_ours && !is_unattributed_error {
                if let Some(event) = event_params(message) {
                    if self.early_events.len() < EARLY_EVENTS_CAPACITY {
                        self.early_events.push_back(event);
                    }
                }
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(rpc_error(error));
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// The next event on a connection that called `events.subscribe`, or `None` once the node
    /// closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<Value>, CliError> {
        if let Some(event) = self.early_events.pop_front() {
            return Ok(Some(event));
        }
        loop {
            let Some(message) = self.read_message().await? else {
                return Ok(None);
            };
            if let Some(event) = event_params(message) {
                return Ok(Some(event));
            }
        }
    }

    /// One JSON message from the node, or `None` at the end of the stream.
    async fn read_message(&mut self) -> Result<Option<Value>, CliError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .await
                .map_err(|e| lost("reading the answer", &e))?;
            if n == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line).map(Some).map_err(|e| {
                CliError::NotReached(format!("the node sent a line that is not JSON-RPC: {e}"))
            });
        }
    }
}

/// The params of an `event` notification; `None` for any other message.
fn event_params(mut message: Value) -> Option<Value> {
    if message.get("method").and_then(Value::as_str) == Some("event") {
        Some(
            message
                .get_mut("params")
                .map(Value::take)
                .unwrap_or_default(),
        )
    } else {
        None
    }
}

/// The one-line rejection for a home where no node listens.
fn no_node(home: &Home) -> CliError {
    let path = home.path().display();
    if home.path().is_dir() {
        CliError::Rejected(format!(
            "no node is running in {path}; start one with `{}`",
            home.command("up")
        ))
    } else {
        CliError::Rejected(format!(
            "no node is running in {path} (there is no kith home there); create one with `{}`, \
             then start it with `{}`",
            home.command("init"),
            home.command("up")
        ))
    }
}

/// The connection broke after the node accepted it.
fn lost(doing: &str, e: &io::Error) -> CliError {
    CliError::NotReached(format!(
        "lost the connection to the node while {doing}: {e}"
    ))
}

/// Turns a JSON-RPC error object into a [`CliError::Rpc`].
fn rpc_error(error: &Value) -> CliError {
    CliError::Rpc {
        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the node answered with an error")
            .to_string(),
        data: error.get("data").cloned(),
    }
}

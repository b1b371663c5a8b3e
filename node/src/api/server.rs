//! The Unix-socket server: one task accepts, one task per connection reads request lines.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::methods::{call, RpcError};
use super::MAX_REQUEST_LINE;
use crate::events::Event;
use crate::{home, Error, Handle, Result};

/// The running API server.
pub struct ApiServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Binds `HOME/api.sock` (mode 0600) and starts serving.
    pub async fn start(handle: Handle) -> Result<ApiServer> {
        let path = home::socket_path(&handle.core.cfg.home);
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(Error::AlreadyRunning(handle.core.cfg.home.clone()));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("setting permissions on {}", path.display()), e))?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let h = handle.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(h, stream).await {
                                tracing::debug!("API connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("API accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(ApiServer { path, task })
    }

    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one line of at most `MAX_REQUEST_LINE` bytes. `Ok(None)` at end of stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() { None } else { Some(true) });
        }
        if let Some(i) = avail.iter().position(|b| *b == b'\n') {
            let fits = buf.len() + i <= MAX_REQUEST_LINE;
            if fits {
                buf.extend_from_slice(&avail[..i]);
            }
            r.consume(i + 1);
            return Ok(Some(fits));
        }
        let n = avail.len();
        if buf.len() + n > MAX_REQUEST_LINE {
            r.consume(n);
            return Ok(Some(false));
        }
        buf.extend_from_slice(avail);
        r.consume(n);
    }
}

async fn serve(h: Handle, stream: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    while let Some(fits) = read_line(&mut r, &mut buf).await? {
        if !fits {
            write(
                &mut w,
                &error(
                    Value::Null,
                    RpcError::new(-32600, "request line over 1 MiB"),
                ),
            )
            .await?;
            return Ok(());
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req: Value = match serde_json::from_slice(&buf) {
            Ok(v) => v,
            Err(e) => {
                write(
                    &mut w,
                    &error(
                        Value::Null,
                        RpcError::new(-32700, format!("parse error: {e}")),
                    ),
                )
                .await?;
                continue;
            }
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let (Some("2.0"), Some(method)) = (
            req.get("jsonrpc").and_then(Value::as_str),
            req.get("method").and_then(Value::as_str),
        ) else {
            write(
                &mut w,
                &error(id, RpcError::new(-32600, "not a JSON-RPC 2.0 request")),
            )
            .await?;
            continue;
        };
        let params = req.get("params").cloned().unwrap_or(Value::Null);
        if method == "events.subscribe" {
            let rx = h.subscribe();
            write(
                &mut w,
                &json!({"jsonrpc": "2.0", "id": id, "result": {"subscribed": true}}),
            )
            .await?;
            return stream_events(rx, w).await;
        }
        let resp = match call(&h, method, params).await {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error(id, e),
        };
        write(&mut w, &resp).await?;
    }
    Ok(())
}

async fn stream_events(
    mut rx: broadcast::Receiver<Event>,
    mut w: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => Event::Lagged { missed: n },
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        let params = serde_json::to_value(&ev).unwrap_or(Value::Null);
        write(
            &mut w,
            &json!({"jsonrpc": "2.0", "method": "event", "params": params}),
        )
        .await?;
    }
}

fn error(id: Value, e: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})
}

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, v: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

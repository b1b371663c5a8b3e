//! The progress bar of `kith send --image`, on a terminal only (never under `--json` or when
//! stderr is not a terminal). It follows the node's `progress` events for the message over a
//! second API connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::context::Ctx;

pub struct Progress {
    bar: ProgressBar,
    id: Arc<Mutex<Option<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Shows a spinner while the node prepares the image, and starts listening for events.
    pub async fn start(ctx: &Ctx) -> Progress {
        let bar = ProgressBar::new_spinner();
        bar.set_message("preparing the image (orientation, metadata, size)");
        bar.enable_steady_tick(Duration::from_millis(120));
        let id: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let task = match ctx.connect().await {
            Ok(mut events) => {
                let (bar2, id2) = (bar.clone(), id.clone());
                Some(tokio::spawn(async move {
                    if events.call("events.subscribe", None).await.is_err() {
                        return;
                    }
                    while let Ok(Some(ev)) = events.next_event().await {
                        on_event(&bar2, &id2, &ev);
                    }
                }))
            }
            Err(_) => None,
        };
        Progress { bar, id, task }
    }

    /// The message is stored: follow its transfer.
    pub fn follow(&self, id: &str) {
        *self.id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
        self.bar
            .set_message("waiting for the recipient to fetch the image");
    }

    /// Ends the bar with a last word.
    pub fn finish(mut self, how: &str) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.bar.finish_with_message(how.to_string());
    }
}

fn on_event(bar: &ProgressBar, id: &Mutex<Option<String>>, ev: &Value) {
    if ev.get("type").and_then(Value::as_str) != Some("progress") {
        return;
    }
    let mine = id.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if mine.is_none() || ev.get("message").and_then(Value::as_str) != mine.as_deref() {
        return;
    }
    let total = ev.get("total").and_then(Value::as_u64).unwrap_or(0);
    let bytes = ev.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    if bar.length() != Some(total) {
        bar.set_length(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("sending");
    }
    bar.set_position(bytes);
}

//! `kith watch`: prints the node's events as they happen, until interrupted or until the node
//! closes the connection.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};

use crate::client::Client;
use crate::context::Ctx;
use crate::error::CliError;
use crate::message::{contact_names, who};
use crate::output::{shown_text, str_field, str_or_dash};

/// The contact list is fetched again for an unknown PeerId at most this often.
const NAMES_REFRESH: Duration = Duration::from_secs(2);

/// `kith watch`: calls `events.subscribe`, then prints each event: its params as one JSON line
/// with `--json`, a line for people without. SIGINT or SIGTERM end it with exit 0.
pub async fn watch(ctx: &Ctx) -> Result<(), CliError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut events = ctx.connect().await?;
    events.call("events.subscribe", None).await?;
    let mut names = Names::new(ctx).await?;
    loop {
        let event = tokio::select! {
            event = events.next_event() => event?,
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        let Some(event) = event else {
            if !ctx.out.is_json() {
                let _ = writeln!(std::io::stderr(), "kith: the node closed the connection");
            }
            return Ok(());
        };
        if ctx.out.is_json() {
            ctx.out.json_line(&event)?;
        } else {
            let line = human_event(&event, &mut names).await?;
            ctx.out.line(&line)?;
        }
    }
}

fn signal_error(e: std::io::Error) -> CliError {
    CliError::NotReached(format!("cannot listen for signals: {e}"))
}

/// Contact names for human output, fetched over a second connection (the first one carries
/// only events once subscribed).
struct Names {
    client: Option<Client>,
    names: HashMap<String, String>,
    fetched: Instant,
}

impl Names {
    async fn new(ctx: &Ctx) -> Result<Names, CliError> {
        if ctx.out.is_json() {
            return Ok(Names {
                client: None,
                names: HashMap::new(),
                fetched: Instant::now(),
            });
        }
        let mut client = ctx.connect().await?;
        let names = contact_names(&mut client).await?;
        Ok(Names {
            client: Some(client),
            names,
            fetched: Instant::now(),
        })
    }

    /// The name of `peer_id`; a PeerId not seen before may be a contact added since the last
    /// fetch, so the list is fetched again (not more often than [`NAMES_REFRESH`]).
    async fn who(&mut self, peer_id: &str) -> Result<String, CliError> {
        if !self.names.contains_key(peer_id) && self.fetched.elapsed() >= NAMES_REFRESH {
            if let Some(client) = self.client.as_mut() {
                self.names = contact_names(client).await?;
                self.fetched = Instant::now();
            }
        }
        Ok(who(peer_id, &self.names))
    }
}

async fn human_event(event: &Value, names: &mut Names) -> Result<String, CliError> {
    let line = match str_field(event, "type") {
        Some("message") => {
            let from = names.who(str_or_dash(event, "from")).await?;
            let time =
                str_field(event, "received_at").unwrap_or_else(|| str_or_dash(event, "sent_at"));
            let text = shown_text(str_field(event, "text").unwrap_or(""), 4);
            format!("{time}  {from}: {text}")
        }
        Some("receipt") => {
            let to = names.who(str_or_dash(event, "conversation")).await?;
            format!(
                "message {} to {to} is {}",
                str_or_dash(event, "id"),
                str_or_dash(event, "status")
            )
        }
        Some("peer") => {
            let state = if event.get("connected").and_then(Value::as_bool) == Some(true) {
                "connected"
            } else {
                "disconnected"
            };
            let peer = names.who(str_or_dash(event, "peer_id")).await?;
            format!("peer {peer} {state}")
        }
        Some("presence") => {
            let peer = names.who(str_or_dash(event, "peer_id")).await?;
            let state = if event.get("online").and_then(Value::as_bool) == Some(true) {
                "online"
            } else {
                "offline"
            };
            format!("{peer} is {state}")
        }
        Some("typing") => {
            let from = names.who(str_or_dash(event, "from")).await?;
            format!("{from} is typing")
        }
        Some("progress") => {
            let peer = names.who(str_or_dash(event, "peer")).await?;
            let n = |k: &str| event.get(k).and_then(Value::as_u64).unwrap_or(0);
            let way = if str_field(event, "direction") == Some("up") {
                "to"
            } else {
                "from"
            };
            format!(
                "image {} {way} {peer}: {} of {} bytes",
                str_or_dash(event, "blob"),
                n("bytes"),
                n("total")
            )
        }
        Some("group") => format!(
            "group {} ({}): {}",
            shown_text(str_or_dash(event, "name"), 0),
            str_or_dash(event, "group_id"),
            str_or_dash(event, "change")
        ),
        Some("dropped") => {
            let from = names.who(str_or_dash(event, "from")).await?;
            format!("dropped from {from}: {}", str_or_dash(event, "reason"))
        }
        Some("lagged") => {
            let missed = event.get("missed").and_then(Value::as_u64).unwrap_or(0);
            format!("(fell behind: {missed} events were skipped)")
        }
        // Events this client does not know yet: show them as they are.
        _ => format!("event {event}"),
    };
    Ok(line)
}

//! `kith send`, `kith history` and `kith read`: one conversation's messages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{Client, CALL_TIMEOUT};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{plural, shown_name, shown_text, str_field, str_or_dash};

/// The status `kith send --wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    Sent,
    Delivered,
    Read,
}

impl WaitFor {
    fn as_str(self) -> &'static str {
        match self {
            WaitFor::Sent => "sent",
            WaitFor::Delivered => "delivered",
            WaitFor::Read => "read",
        }
    }
}

/// What `kith send` was asked to do.
#[derive(Debug)]
pub struct SendRequest {
    pub target: String,
    pub text: Option<String>,
    pub image: Option<PathBuf>,
    pub original: bool,
    pub expire: Option<Duration>,
    pub wait: Option<WaitFor>,
    pub timeout: Duration,
}

/// The longest timer a message or conversation may have (one year).
pub const MAX_TIMER_SECS: u64 = kith_protocol::disappearing::MAX_TIMER_SECS;

/// `kith disappear TARGET DURATION|off`: calls `disappear.set`.
pub async fn disappear(ctx: &Ctx, target: &str, duration: &str) -> Result<(), CliError> {
    let secs = if duration == "off" {
        None
    } else {
        let d = humantime::parse_duration(duration).map_err(|e| {
            CliError::Rejected(format!(
                "'{duration}' is not a duration like 30s, 5m, 1h, 7d, or off: {e}"
            ))
        })?;
        if d.as_secs() == 0 || d.as_secs() > MAX_TIMER_SECS {
            return Err(CliError::Rejected(format!(
                "'{duration}': a timer is between 1 s and one year"
            )));
        }
        Some(d.as_secs())
    };
    let mut client = ctx.connect().await?;
    let r = client
        .call(
            "disappear.set",
            Some(json!({"target": target, "secs": secs})),
        )
        .await?;
    ctx.out
        .result(&r, |r| match r.get("timer_secs").and_then(Value::as_u64) {
            Some(s) => format!(
                "messages with {} now disappear {s} s after they are sent",
                shown_name(target)
            ),
            None => format!("disappearing messages with {} are off", shown_name(target)),
        })
}

/// `kith send`: calls `message.send`, then with `--wait` `message.wait`.
pub async fn send(ctx: &Ctx, request: SendRequest) -> Result<(), CliError> {
    let expire_secs = request.expire.map(|d| d.as_secs().max(1));
    if expire_secs.is_some_and(|s| s > MAX_TIMER_SECS) {
        return Err(CliError::Rejected(
            "--expire: a timer is at most one year".into(),
        ));
    }
    let text = match (&request.text, &request.image) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => String::new(),
        (None, None) => return Err(CliError::Rejected("nothing to send: give a TEXT".into())),
    };
    let mut params = json!({"target": request.target, "text": text});
    if let Some(s) = expire_secs {
        params["expire_secs"] = json!(s);
    }
    let mut progress = None;
    if let Some(path) = &request.image {
        let path = std::fs::canonicalize(path)
            .map_err(|e| CliError::Rejected(format!("{}: {e}", path.display())))?;
        let md = std::fs::metadata(&path)
            .map_err(|e| CliError::Rejected(format!("{}: {e}", path.display())))?;
        if !md.is_file() {
            return Err(CliError::Rejected(format!(
                "{}: not a file",
                path.display()
            )));
        }
        params["image"] = json!(path.to_string_lossy());
        params["original"] = json!(request.original);
        if !ctx.out.is_json() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            progress = Some(crate::progress::Progress::start(ctx).await);
        }
    }
    let mut client = ctx.connect().await?;
    let sent = client.call("message.send", Some(params)).await;
    let sent = match sent {
        Ok(s) => s,
        Err(e) => {
            if let Some(p) = progress {
                p.finish("not sent");
            }
            return Err(e);
        }
    };
    let id = str_field(&sent, "id")
        .ok_or_else(|| CliError::NotReached("the node's answer holds no message id".into()))?;
    if let Some(p) = &progress {
        p.follow(id);
    }
    let Some(wait) = request.wait else {
        if let Some(p) = progress {
            p.finish("queued; the recipient fetches the image from this node or its relay");
        }
        return ctx.out.result(&sent, human_sent);
    };
    let params = json!({
        "id": id,
        "status": wait.as_str(),
        "timeout_secs": request.timeout.as_secs(),
    });
    // The node answers when the timeout passes; give it time to say so before giving up.
    let waited = client
        .call_with_timeout("message.wait", Some(params), request.timeout + CALL_TIMEOUT)
        .await;
    if let Some(p) = progress {
        p.finish(match &waited {
            Ok(w) => str_or_dash(w, "status"),
            Err(_) => "not confirmed",
        });
    }
    let waited = waited?;
    ctx.out.result(&waited, human_sent)?;
    let status = str_or_dash(&waited, "status");
    if status == "failed" {
        let reason = str_field(&waited, "reason")
            .map(|r| format!(": {}", shown_name(r)))
            .unwrap_or_default();
        return Err(CliError::NotReached(format!("message {id} failed{reason}")));
    }
    if waited.get("reached").and_then(Value::as_bool) != Some(true) {
        return Err(CliError::NotReached(format!(
            "message {id} is still {status} after {}; it was not {} in time",
            humantime::format_duration(request.timeout),
            wait.as_str()
        )));
    }
    Ok(())
}

/// `kith history TARGET [--limit N]`: calls `message.history`; JSON Lines with `--json`.
pub async fn history(ctx: &Ctx, target: &str, limit: Option<u64>) -> Result<(), CliError> {
    let mut params = json!({"target": target});
    if let Some(limit) = limit {
        params["limit"] = json!(limit);
    }
    let mut client = ctx.connect().await?;
    let messages = client.call("message.history", Some(params)).await?;
    let names = if ctx.out.is_json() {
        HashMap::new()
    } else {
        contact_names(&mut client).await?
    };
    ctx.out
        .list(&messages, |m| human_message(m, &names), "no messages yet")
}

/// `kith read TARGET`: calls `message.read`.
pub async fn read(ctx: &Ctx, target: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let marked = client
        .call("message.read", Some(json!({"target": target})))
        .await?;
    ctx.out.result(&marked, |m| {
        let n = m.get("marked").and_then(Value::as_u64).unwrap_or(0);
        format!("marked {} read", plural(n, "message", "messages"))
    })
}

/// PeerId → contact name, to show names instead of PeerIds.
pub async fn contact_names(client: &mut Client) -> Result<HashMap<String, String>, CliError> {
    let contacts = client.call("contact.list", None).await?;
    Ok(crate::output::items(&contacts)
        .iter()
        .filter_map(|c| {
            Some((
                str_field(c, "peer_id")?.to_string(),
                str_field(c, "name")?.to_string(),
            ))
        })
        .collect())
}

/// Who a PeerId is, for people: its contact name, or the PeerId itself.
pub fn who(peer_id: &str, names: &HashMap<String, String>) -> String {
    names
        .get(peer_id)
        .map_or_else(|| peer_id.to_string(), |name| shown_name(name))
}

fn human_sent(m: &Value) -> String {
    format!(
        "message {} {}",
        str_or_dash(m, "id"),
        str_or_dash(m, "status")
    )
}

/// One history entry: `TIME  WHO: TEXT  [STATUS]`.
fn human_message(m: &Value, names: &HashMap<String, String>) -> String {
    let outgoing = str_field(m, "direction") == Some("out");
    let status = str_or_dash(m, "status");
    let (time, who, mark) = if outgoing {
        let mark = match (status, str_field(m, "reason")) {
            ("failed", Some(reason)) => format!("  [failed: {}]", shown_name(reason)),
            (status, _) => format!("  [{status}]"),
        };
        (str_or_dash(m, "sent_at"), "you".to_string(), mark)
    } else {
        let time = str_field(m, "received_at").unwrap_or_else(|| str_or_dash(m, "sent_at"));
        let mark = if status == "received" {
            "  [unread]"
        } else {
            ""
        };
        (time, who(str_or_dash(m, "from"), names), mark.to_string())
    };
    let mut body = shown_text(str_field(m, "text").unwrap_or(""), 4);
    if let Some(image) = m.get("image").filter(|i| i.is_object()) {
        let size = |k: &str| image.get(k).and_then(Value::as_u64).unwrap_or(0);
        let image = format!(
            "[image {}x{}, {} bytes: {}]",
            size("width"),
            size("height"),
            size("bytes"),
            shown_name(str_or_dash(image, "path"))
        );
        body = if body.is_empty() {
            image
        } else {
            format!("{image} {body}")
        };
    }
    format!("{time}  {who}: {body}{mark}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_name_the_sender() {
        let names = HashMap::from([("12D3B".to_string(), "bob".to_string())]);
        let m = json!({"id": "00", "direction": "in", "from": "12D3B", "text": "hi",
            "status": "received", "sent_at": "2026-01-01T00:00:00Z",
            "received_at": "2026-01-01T00:00:01Z", "image": null});
        assert_eq!(
            human_message(&m, &names),
            "2026-01-01T00:00:01Z  bob: hi  [unread]"
        );
        let m = json!({"id": "01", "direction": "out", "from": "12D3A", "text": "yo",
            "status": "failed", "reason": "expired", "sent_at": "2026-01-01T00:00:02Z",
            "received_at": null, "image": null});
        assert_eq!(
            human_message(&m, &names),
            "2026-01-01T00:00:02Z  you: yo  [failed: expired]"
        );
    }
}

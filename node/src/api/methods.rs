//! The API methods: parameters in, JSON results out. Every method is a thin call on [`Handle`].

use std::time::Duration;

use kith_protocol::group::OpKind;
use kith_protocol::status::Status;
use kith_protocol::MessageId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::StoredMessage;
use crate::{Error, Handle};

/// A JSON-RPC error object.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidInput(_) | Error::Protocol(_) => 1001,
            Error::UnknownTarget(_) => 1002,
            Error::Ambiguous { .. } => 1003,
            Error::AlreadyInitialized(_) => 1004,
            _ => 1100,
        };
        let mut r = RpcError::new(code, e.to_string());
        if let Error::Ambiguous { candidates, .. } = &e {
            r.data = Some(json!({
                "candidates": candidates.iter().map(|(p, n)| json!({"peer_id": p, "name": n})).collect::<Vec<_>>()
            }));
        }
        r
    }
}

fn params<T: for<'de> Deserialize<'de>>(p: Value) -> Result<T, RpcError> {
    let p = if p.is_null() { json!({}) } else { p };
    serde_json::from_value(p).map_err(|e| RpcError::invalid_params(e.to_string()))
}

#[derive(Deserialize)]
struct Target {
    target: String,
}

#[derive(Deserialize)]
struct ContactAdd {
    card: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Verify {
    target: String,
    #[serde(default)]
    confirm: bool,
}

#[derive(Deserialize)]
struct Send {
    target: String,
    #[serde(default)]
    text: String,
    expire_secs: Option<u64>,
    /// Path of an image file to send (the text is then its caption).
    image: Option<String>,
    #[serde(default)]
    original: bool,
}

#[derive(Deserialize)]
struct Disappear {
    target: String,
    secs: Option<u64>,
}

#[derive(Deserialize)]
struct Wait {
    id: String,
    status: String,
    timeout_secs: f64,
}

#[derive(Deserialize)]
struct History {
    target: String,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct Value_ {
    value: String,
}

#[derive(Deserialize)]
struct GroupCreate {
    name: String,
    members: Vec<String>,
}

#[derive(Deserialize)]
struct GroupTarget {
    group: String,
    target: String,
}

#[derive(Deserialize)]
struct GroupRename {
    group: String,
    name: String,
}

#[derive(Deserialize)]
struct GroupOnly {
    group: String,
}

fn to_json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// One history entry as the API and the CLI show it.
pub fn history_entry(m: &StoredMessage) -> Value {
    json!({
        "id": m.id.to_string(),
        "direction": if m.outgoing { "out" } else { "in" },
        "from": m.from.to_string(),
        "text": m.text,
        "status": m.status.as_str(),
        "reason": m.reason,
        "sent_at": m.sent_at.to_string(),
        "received_at": m.received_at.map(|t| t.to_string()),
        "expires_at": m.expires_at.map(|t| t.to_string()),
        "image": image_entry(m),
        "receipts": if m.group.is_some() && m.outgoing {
            Value::Object(m.receipts.iter().map(|(p, s)| (p.to_string(), json!(s.as_str()))).collect())
        } else {
            Value::Null
        },
    })
}

/// An image message's picture as the API shows it: `path` is null until the whole image is
/// here and checked; `thumbnail` is the path of the preview, there from the start.
fn image_entry(m: &StoredMessage) -> Value {
    let Some(img) = &m.image else {
        return Value::Null;
    };
    let Some(r) = &img.reference else {
        return Value::Null;
    };
    let bytes = img
        .file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map(|md| md.len());
    json!({
        "path": img.file,
        "width": r.width,
        "height": r.height,
        "bytes": bytes.unwrap_or(r.size()),
        "mime": r.mime,
        "blob": r.id.to_string(),
        "complete": img.file.is_some(),
        "thumbnail": img.thumbnail_file,
    })
}

/// Runs one method.
pub async fn call(h: &Handle, method: &str, p: Value) -> Result<Value, RpcError> {
    match method {
        "node.id" => {
            let info = h.net_info().await?;
            Ok(json!({
                "peer_id": h.peer_id().to_string(),
                "name": h.name(),
                "listen_addrs": info.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "relays": info.relays.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "card": h.card().await?,
            }))
        }
        "node.peers" => Ok(serde_json::to_value(h.peers().await?).unwrap_or(Value::Null)),
        "contact.add" => {
            let a: ContactAdd = params(p)?;
            let c = h.add_contact(&a.card, a.name).await?;
            Ok(json!({"peer_id": c.peer_id.to_string(), "name": c.name}))
        }
        "contact.list" => Ok(Value::Array(
            h.contacts()?
                .iter()
                .map(|c| json!({"peer_id": c.peer_id.to_string(), "name": c.name, "verified": c.verified}))
                .collect(),
        )),
        "contact.verify" => {
            let v: Verify = params(p)?;
            let (peer, sn, verified) = h.verify(&v.target, v.confirm).await?;
            Ok(json!({"peer_id": peer.to_string(), "safety_number": sn, "verified": verified}))
        }
        "message.send" => {
            let s: Send = params(p)?;
            let r = match &s.image {
                Some(path) => {
                    h.send_image(&s.target, std::path::Path::new(path), &s.text, s.original, s.expire_secs)
                        .await?
                }
                None => h.send_text_expiring(&s.target, &s.text, s.expire_secs).await?,
            };
            Ok(json!({"id": r.id.to_string(), "status": r.status.as_str()}))
        }
        "message.wait" => {
            let w: Wait = params(p)?;
            let id: MessageId = w.id.parse().map_err(|e| RpcError::invalid_params(format!("id: {e}")))?;
            let target: Status = w.status.parse().map_err(RpcError::invalid_params)?;
            if !matches!(target, Status::Sent | Status::Delivered | Status::Read) {
                return Err(RpcError::invalid_params("status must be sent, delivered or read"));
            }
            if !(0.0..=86_400.0).contains(&w.timeout_secs) {
                return Err(RpcError::invalid_params("timeout_secs must be between 0 and 86400"));
            }
            let (s, reached) = h.wait(id, target, Duration::from_secs_f64(w.timeout_secs)).await?;
            Ok(json!({"id": id.to_string(), "status": s.as_str(), "reached": reached}))
        }
        "message.history" => {
            let a: History = params(p)?;
            Ok(Value::Array(h.history(&a.target, a.limit)?.iter().map(history_entry).collect()))
        }
        "message.read" => {
            let t: Target = params(p)?;
            Ok(json!({"marked": h.read(&t.target).await?}))
        }
                "group.create" => {
            let c: GroupCreate = params(p)?;
            Ok(to_json(h.group_create(&c.name, &c.members).await?))
        }
        "group.add" | "group.remove" | "group.promote" => {
            let c: GroupTarget = params(p)?;
            let member = h.resolve_member(&c.target)?;
            let kind = match method {
                "group.add" => OpKind::Add { member },
                "group.remove" => OpKind::Remove { member },
                _ => OpKind::Promote { member },
            };
            Ok(to_json(h.group_change(&c.group, kind).await?))
        }
        "group.rename" => {
            let c: GroupRename = params(p)?;
            Ok(to_json(h.group_change(&c.group, OpKind::Rename { name: c.name }).await?))
        }
        "group.leave" => {
            let c: GroupOnly = params(p)?;
            Ok(to_json(h.group_change(&c.group, OpKind::Leave).await?))
        }
                        "disappear.set" => {
            let d: Disappear = params(p)?;
            Ok(json!({"target": d.target, "timer_secs": h.set_timer(&d.target, d.secs).await?}))
        }
        "presence.get" => {
            let t: Target = params(p)?;
            Ok(to_json(h.presence(&t.target)?))
        }
        "settings.last_seen" => {
            let v: Value_ = params(p)?;
            Ok(json!({"last_seen": h.set_last_seen(&v.value).await?.as_str()}))
        }
        "typing.send" => {
            let t: Target = params(p)?;
            h.typing(&t.target).await?;
            Ok(json!({"target": t.target}))
        }
        "group.list" => Ok(Value::Array(h.group_list()?.into_iter().map(to_json).collect())),
        other => Err(RpcError::new(-32601, format!("unknown method '{other}'"))),
    }
}

//! `kith presence`, `kith settings last-seen`, `kith typing`.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{shown_name, str_or_dash};

/// `kith presence TARGET`: calls `presence.get`.
pub async fn presence(ctx: &Ctx, target: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let p = client
        .call("presence.get", Some(json!({"target": target})))
        .await?;
    ctx.out.result(&p, |p| {
        let online = p.get("online").and_then(Value::as_bool) == Some(true);
        let seen = p
            .get("last_seen")
            .and_then(Value::as_str)
            .map_or("hidden or unknown".to_string(), |s| s.to_string());
        format!(
            "{}: {}, last seen {seen}",
            shown_name(target),
            if online { "online" } else { "offline" }
        )
    })
}

/// `kith settings last-seen everyone|contacts|nobody`: calls `settings.last_seen`.
pub async fn last_seen(ctx: &Ctx, value: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let r = client
        .call("settings.last_seen", Some(json!({"value": value})))
        .await?;
    ctx.out.result(&r, |r| {
        format!("last seen shown to: {}", str_or_dash(r, "last_seen"))
    })
}

/// `kith typing TARGET`: calls `typing.send`.
pub async fn typing(ctx: &Ctx, target: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let r = client
        .call("typing.send", Some(json!({"target": target})))
        .await?;
    ctx.out.result(&r, |_| {
        format!("told {} you are typing", shown_name(target))
    })
}

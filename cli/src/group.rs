//! `kith group create|add|remove|promote|rename|leave|list`: group chats.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{shown_name, str_or_dash};

/// `kith group create NAME --member TARGET...`: calls `group.create`.
pub async fn create(ctx: &Ctx, name: &str, members: &[String]) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let g = client
        .call(
            "group.create",
            Some(json!({"name": name, "members": members})),
        )
        .await?;
    ctx.out.result(&g, |g| {
        format!(
            "created group {} ({})\n{}",
            shown_name(str_or_dash(g, "name")),
            str_or_dash(g, "group_id"),
            members_line(g)
        )
    })
}

/// `kith group add|remove|promote GROUP TARGET`: calls `group.<op>`.
pub async fn change(ctx: &Ctx, op: &str, group: &str, target: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let g = client
        .call(
            &format!("group.{op}"),
            Some(json!({"group": group, "target": target})),
        )
        .await?;
    ctx.out.result(&g, |g| {
        format!(
            "{op}: group {} now\n{}",
            shown_name(str_or_dash(g, "name")),
            members_line(g)
        )
    })
}

/// `kith group rename GROUP NAME`: calls `group.rename`.
pub async fn rename(ctx: &Ctx, group: &str, name: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let g = client
        .call("group.rename", Some(json!({"group": group, "name": name})))
        .await?;
    ctx.out.result(&g, |g| {
        format!("renamed to {}", shown_name(str_or_dash(g, "name")))
    })
}

/// `kith group leave GROUP`: calls `group.leave`.
pub async fn leave(ctx: &Ctx, group: &str) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let g = client
        .call("group.leave", Some(json!({"group": group})))
        .await?;
    ctx.out.result(&g, |g| {
        format!(
            "left {}; its history stays, read-only",
            shown_name(str_or_dash(g, "name"))
        )
    })
}

/// `kith group list`: calls `group.list`; JSON Lines with `--json`.
pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let groups = client.call("group.list", None).await?;
    ctx.out.list(
        &groups,
        human_group,
        "no groups yet; create one with `kith group create NAME --member TARGET`",
    )
}

fn members_line(g: &Value) -> String {
    let n = g
        .get("members")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let a = g
        .get("admins")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!("{n} members, {a} admins")
}

fn human_group(g: &Value) -> String {
    let left = if g.get("left").and_then(Value::as_bool) == Some(true) {
        "  (left, read-only)"
    } else {
        ""
    };
    let timer = match g.get("timer_secs").and_then(Value::as_u64) {
        Some(s) => format!(", messages disappear after {s} s"),
        None => String::new(),
    };
    format!(
        "{}  {}  {}{timer}{left}",
        str_or_dash(g, "group_id"),
        shown_name(str_or_dash(g, "name")),
        members_line(g)
    )
}

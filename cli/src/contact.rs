//! `kith contact add|list|verify`: the node's contact list.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{shown_name, str_field, str_or_dash};

/// `kith contact add PEER_ID_OR_CARD [--name NAME]`: calls `contact.add`.
pub async fn add(ctx: &Ctx, card: &str, name: Option<&str>) -> Result<(), CliError> {
    let mut params = json!({"card": card});
    if let Some(name) = name {
        params["name"] = json!(name);
    }
    let mut client = ctx.connect().await?;
    let contact = client.call("contact.add", Some(params)).await?;
    ctx.out.result(&contact, |c| {
        let peer_id = str_or_dash(c, "peer_id");
        match str_field(c, "name") {
            Some(name) => format!("added {} ({peer_id})", shown_name(name)),
            None => format!("added {peer_id}"),
        }
    })
}

/// `kith contact list`: calls `contact.list`; JSON Lines with `--json`.
pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let contacts = client.call("contact.list", None).await?;
    ctx.out.list(
        &contacts,
        human_contact,
        "no contacts yet; add one with `kith contact add PEER_ID_OR_CARD --name NAME`",
    )
}

/// `kith contact verify TARGET [--confirm]`: calls `contact.verify`.
pub async fn verify(ctx: &Ctx, target: &str, confirm: bool) -> Result<(), CliError> {
    let params = json!({"target": target, "confirm": confirm});
    let mut client = ctx.connect().await?;
    let verified = client.call("contact.verify", Some(params)).await?;
    ctx.out.result(&verified, |v| human_verify(v, target))
}

fn human_contact(contact: &Value) -> String {
    let verified = if contact.get("verified").and_then(Value::as_bool) == Some(true) {
        "verified  "
    } else {
        "unverified"
    };
    let name = str_field(contact, "name")
        .map(shown_name)
        .unwrap_or_default();
    format!("{}  {verified}  {name}", str_or_dash(contact, "peer_id"))
}

fn human_verify(v: &Value, target: &str) -> String {
    let who = shown_name(target);
    let mut lines = vec![format!(
        "safety number with {who} ({}):",
        str_or_dash(v, "peer_id")
    )];
    // 60 digits in twelve groups of five: two rows of six are easy to read out.
    let groups: Vec<&str> = str_or_dash(v, "safety_number").split_whitespace().collect();
    lines.extend(groups.chunks(6).map(|row| format!("    {}", row.join(" "))));
    if v.get("verified").and_then(Value::as_bool) == Some(true) {
        lines.push(format!("{who} is verified"));
    } else {
        lines.push(format!(
            "not verified: compare this number with {who} in person or over a call you trust, \
             then run `kith contact verify {who} --confirm`"
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_number_is_shown_in_two_rows() {
        let digits = ["12345"; 12].join(" ");
        let v = json!({"peer_id": "12D3X", "safety_number": digits, "verified": false});
        let text = human_verify(&v, "bob");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("    12345")).count(),
            2
        );
        assert!(text.contains("--confirm"));
    }

    #[test]
    fn contact_line_isolates_names() {
        let c = json!({"peer_id": "12D3X", "name": "a\u{202e}b", "verified": true});
        let line = human_contact(&c);
        assert!(line.contains('\u{2068}') && !line.contains('\u{202e}'));
    }
}

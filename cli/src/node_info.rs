//! `kith id` and `kith peers`: what the running node says about itself.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use serde_json::Value;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{shown_name, str_field, str_or_dash};

/// `kith id [--qr]`: calls `node.id`. With `--qr` (and without `--json`) prints the contact
/// card as a QR code followed by the card string.
pub async fn id(ctx: &Ctx, qr: bool) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let id = client.call("node.id", None).await?;
    if ctx.out.is_json() {
        return ctx.out.json_line(&id);
    }
    if qr {
        let card = str_field(&id, "card")
            .ok_or_else(|| CliError::NotReached("the node's answer holds no card".into()))?;
        ctx.out.line(&qr_code(card)?)?;
        return ctx.out.line(card);
    }
    ctx.out.line(&human_id(&id))
}

/// `kith peers`: calls `node.peers`.
pub async fn peers(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.connect().await?;
    let peers = client.call("node.peers", None).await?;
    ctx.out.result(&peers, human_peers)
}

fn human_id(id: &Value) -> String {
    let mut lines = vec![format!("peer id  {}", str_or_dash(id, "peer_id"))];
    lines.push(format!("name     {}", shown_name(str_or_dash(id, "name"))));
    let addrs = strings(id, "listen_addrs");
    if addrs.is_empty() {
        lines.push("address  none yet".into());
    }
    lines.extend(addrs.iter().map(|a| format!("address  {a}")));
    lines.extend(
        strings(id, "relays")
            .iter()
            .map(|r| format!("relay    {r}")),
    );
    lines.push(format!("card     {}", str_or_dash(id, "card")));
    lines.join("\n")
}

fn human_peers(peers: &Value) -> String {
    let count = |key: &str| peers.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut lines = vec![format!(
        "connected: {}, routing table: {}",
        count("connected"),
        count("routing_table")
    )];
    for peer in peers
        .get("peers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let addrs = strings(peer, "addrs").join(", ");
        lines.push(format!("{}  {addrs}", str_or_dash(peer, "peer_id")));
    }
    lines.join("\n")
}

/// The string items of an array field; anything else is skipped.
fn strings<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The card as a QR code of Unicode half blocks, light on dark as terminals usually are.
fn qr_code(card: &str) -> Result<String, CliError> {
    let code = QrCode::with_error_correction_level(card.as_bytes(), EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(card.as_bytes(), EcLevel::L))
        .map_err(|e| {
            CliError::NotReached(format!(
                "the card does not fit in a QR code ({e}); share the card string instead"
            ))
        })?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qr_code_renders_a_card() {
        let qr = qr_code("kith:example-card");
        assert!(qr.is_ok_and(|q| q.lines().count() > 10));
    }

    #[test]
    fn human_id_lists_addresses() {
        let id = json!({"peer_id": "12D3X", "name": null, "listen_addrs": ["/ip4/1.2.3.4/tcp/1"],
            "relays": [], "card": "kith:x"});
        let text = human_id(&id);
        assert!(text.contains("12D3X") && text.contains("/ip4/1.2.3.4/tcp/1"));
        assert!(text.contains("name     -"));
    }
}

//! What can go wrong in a `kith` command, and the exit code each outcome maps to.
//!
//! Exit codes (documented in docs/cli.md):
//! - 0: success (also when the reader of our stdout went away: a broken pipe is not an error);
//! - 1: the request was accepted but did not reach what was asked (a `--wait` that timed out,
//!   a message that ended `failed`, an internal error of the node);
//! - 2: the request was rejected (bad usage, invalid input, unknown or ambiguous target, no
//!   running node).

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::output::shown_name;

/// JSON-RPC error codes that mean "rejected before anything was stored or sent" (exit 2).
const REJECTED_CODES: [i64; 8] = [-32700, -32600, -32601, -32602, 1001, 1002, 1003, 1004];

/// The API's code for an ambiguous target; its `data.candidates` lists the matches.
const AMBIGUOUS_TARGET: i64 = 1003;

/// The outcome of a command that did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Rejected before anything was stored or sent: exit 2.
    Rejected(String),
    /// Accepted, but what was asked was not reached: exit 1.
    NotReached(String),
    /// An error answer from the node's JSON-RPC API; the exit code follows the error code.
    Rpc {
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// Our stdout was closed by its reader: stop quietly, exit 0.
    BrokenPipe,
}

impl CliError {
    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Rejected(_) => ExitCode::from(2),
            CliError::NotReached(_) => ExitCode::from(1),
            CliError::Rpc { code, .. } if REJECTED_CODES.contains(code) => ExitCode::from(2),
            // 1100 (internal error) and any code this client does not know.
            CliError::Rpc { .. } => ExitCode::from(1),
            CliError::BrokenPipe => ExitCode::SUCCESS,
        }
    }

    /// Tells the user on stderr what went wrong (nothing for a broken pipe).
    pub fn report(&self) {
        let text = match self {
            CliError::Rejected(msg) | CliError::NotReached(msg) => format!("kith: {msg}\n"),
            CliError::Rpc {
                code,
                message,
                data,
            } => rpc_report(*code, message, data.as_ref()),
            CliError::BrokenPipe => return,
        };
        // If stderr is gone too, there is nobody left to tell.
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }

    /// Maps an error writing to stdout: a closed pipe is a quiet end, anything else a failure.
    pub fn from_output(err: io::Error) -> CliError {
        if err.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::NotReached(format!("cannot write to stdout: {err}"))
        }
    }
}

/// The lines printed for an API error: the node's message, and for an ambiguous target one
/// indented line per candidate plus a hint.
fn rpc_report(code: i64, message: &str, data: Option<&Value>) -> String {
    let mut text = format!("kith: {}\n", shown_name(message));
    if code == AMBIGUOUS_TARGET {
        let candidates = data
            .and_then(|d| d.get("candidates"))
            .and_then(Value::as_array);
        if let Some(candidates) = candidates {
            for c in candidates {
                let peer_id = c.get("peer_id").and_then(Value::as_str).unwrap_or("?");
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                text.push_str(&format!("    {peer_id}  {}\n", shown_name(name)));
            }
            text.push_str("kith: name the contact by its PeerId instead\n");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        let rpc = |code| CliError::Rpc {
            code,
            message: String::new(),
            data: None,
        };
        for code in REJECTED_CODES {
            assert_eq!(rpc(code).exit_code(), ExitCode::from(2));
        }
        assert_eq!(rpc(1100).exit_code(), ExitCode::from(1));
        assert_eq!(rpc(-32603).exit_code(), ExitCode::from(1));
        assert_eq!(
            CliError::Rejected(String::new()).exit_code(),
            ExitCode::from(2)
        );
        assert_eq!(
            CliError::NotReached(String::new()).exit_code(),
            ExitCode::from(1)
        );
        assert_eq!(CliError::BrokenPipe.exit_code(), ExitCode::SUCCESS);
    }

    #[test]
    fn ambiguous_target_lists_candidates() {
        let data = serde_json::json!({"candidates": [
            {"peer_id": "12D3A", "name": "bob"},
            {"peer_id": "12D3B", "name": "bob"},
        ]});
        let text = rpc_report(AMBIGUOUS_TARGET, "target \"bob\" is ambiguous", Some(&data));
        assert!(text.contains("12D3A") && text.contains("12D3B"));
        assert!(text.lines().all(|l| !l.is_empty()));
    }
}

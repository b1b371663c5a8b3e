//! `kith init` and `kith up`: the two commands that work on the home directly through
//! `kith_node` instead of talking to a running node.

use std::future::Future;
use std::io::{IsTerminal, Write};

use kith_node::Multiaddr;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::shown_name;

/// Logging when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,libp2p=warn";

/// The flags of `kith up`, as typed.
#[derive(Debug, Default)]
pub struct UpRequest {
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub relay: bool,
    pub use_relays: Vec<String>,
    pub no_mdns: bool,
    pub max_image_mib: Option<u64>,
}

/// `kith init [--name NAME]`: creates the identity in the home. Refuses to overwrite one.
pub fn init(ctx: &Ctx, name: Option<&str>) -> Result<(), CliError> {
    let info = kith_node::home::init(ctx.home.path(), name).map_err(|e| match e {
        kith_node::Error::AlreadyInitialized(_) | kith_node::Error::InvalidInput(_) => {
            CliError::Rejected(e.to_string())
        }
        other => CliError::NotReached(format!("cannot create the identity: {other}")),
    })?;
    let peer_id = info.peer_id.to_string();
    let home = info.home.display().to_string();
    let result = json!({"peer_id": peer_id, "name": info.name, "home": home});
    ctx.out.result(&result, |_| {
        let named = info
            .name
            .as_deref()
            .map(|n| format!(" named {}", shown_name(n)))
            .unwrap_or_default();
        format!(
            "created identity {peer_id}{named} in {home}\nstart the node with `{}`",
            ctx.home.command("up")
        )
    })
}

/// `kith up`: runs the node in the foreground until SIGINT or SIGTERM, logging to stderr.
pub async fn up(ctx: &Ctx, request: UpRequest) -> Result<(), CliError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Fails only if a subscriber is already set, which leaves logging as it is.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();

    let mut config = kith_node::Config::builder(ctx.home.path().to_path_buf());
    if let Some(mib) = request.max_image_mib {
        config = config.max_image_bytes(mib * 1024 * 1024);
    }
    let config = config
        .listen(parse_addrs("--listen", &request.listen)?)
        .bootstrap(parse_addrs("--bootstrap", &request.bootstrap)?)
        .mdns(!request.no_mdns)
        .relay(request.relay)
        .use_relays(parse_addrs("--use-relay", &request.use_relays)?)
        .build()
        .map_err(|e| CliError::Rejected(format!("invalid configuration: {e}")))?;
    let shutdown = shutdown_signal()?;
    kith_node::run(config, shutdown).await.map_err(|e| match e {
        // Refused before the node did anything: nothing was stored or sent.
        kith_node::Error::NotInitialized(_)
        | kith_node::Error::AlreadyRunning(_)
        | kith_node::Error::StoreTooNew { .. }
        | kith_node::Error::StoreTooOld { .. }
        | kith_node::Error::InvalidInput(_) => CliError::Rejected(e.to_string()),
        other => CliError::NotReached(format!("the node stopped: {other}")),
    })
}

/// Parses the multiaddrs given to `flag`; a bad one is a rejection naming it.
fn parse_addrs(flag: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, CliError> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().map_err(|e| {
                CliError::Rejected(format!("{flag} {a:?} is not a valid multiaddr: {e}"))
            })
        })
        .collect()
}

/// A future that resolves on the first SIGINT or SIGTERM. A second signal while the node
/// shuts down ends the process at once.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, CliError> {
    let listen = |kind| {
        signal(kind).map_err(|e| CliError::NotReached(format!("cannot listen for signals: {e}")))
    };
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down; a second signal stops at once");
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            let _ = writeln!(std::io::stderr(), "kith: stopped without a clean shutdown");
            std::process::exit(130);
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_multiaddrs_are_rejected() {
        assert!(parse_addrs("--listen", &["/ip4/127.0.0.1/tcp/0".into()]).is_ok());
        let err = parse_addrs("--listen", &["127.0.0.1:4001".into()]);
        assert!(matches!(err, Err(CliError::Rejected(m)) if m.contains("--listen")));
    }
}

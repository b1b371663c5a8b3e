//! `kith`: the command line of the kith messenger.
//!
//! Layout, one concern per file:
//! - `main.rs`: the command-line grammar (clap derive) and the dispatch to each command.
//! - [`error`]: outcomes and their exit codes (0 success, 1 not reached, 2 rejected).
//! - [`home`]: which home directory a command works on.
//! - [`output`]: JSON Lines or lines for people; safe display of others' names and texts.
//! - [`client`]: the JSON-RPC client of a running node's API socket.
//! - [`context`]: the resolved global flags.
//! - [`node_info`], [`contact`], [`message`], [`watch`]: the commands that talk to the node.
//! - [`local`]: `init` and `up`, which call `kith_node` directly.
//! - [`demo`]: `kith demo`, a local network in temporary homes.
//! - [`sim`]: `kith sim`, a simulated network checked for exactly-once, in-order delivery.
//!
//! Every command and its JSON output are described in docs/cli.md.

mod client;
mod contact;
mod context;
mod demo;
mod error;
mod group;

mod home;
mod local;
mod message;
mod node_info;
mod output;
mod presence;
mod progress;
mod sim;

mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::context::Ctx;
use crate::error::CliError;
use crate::home::Home;
use crate::local::UpRequest;
use crate::message::{SendRequest, WaitFor};
use crate::output::Out;

/// The longest `send --wait` may wait, as the API allows (docs/api.md, `message.wait`).
const MAX_WAIT_SECS: u64 = 86_400;

/// kith: a peer-to-peer, end-to-end encrypted messenger.
///
/// Exit codes: 0 success; 1 accepted but not reached (a --wait that timed out, a message that
/// failed); 2 rejected (bad usage, invalid input, unknown or ambiguous target, no running node).
#[derive(Debug, Parser)]
#[command(name = "kith", version, arg_required_else_help = true)]
struct Cli {
    /// The home directory holding this node's keys, store and API socket. Wins over KITH_HOME,
    /// which wins over the platform data directory.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    /// Print results as JSON: one object per line (JSON Lines for lists).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this home's identity (refuses to overwrite an existing one).
    Init {
        /// The name shown to contacts.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the node in the foreground until SIGINT or SIGTERM; logs go to stderr (RUST_LOG).
    Up {
        /// Listen on this address (repeatable), e.g. /ip4/0.0.0.0/tcp/0.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Join the network through this node (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Serve as a relay for other nodes.
        #[arg(long)]
        relay: bool,
        /// Keep this node's mailbox at this relay (repeatable; MULTIADDR with /p2p/). To be
        /// reachable through a relay's circuit, also pass --listen RELAY_ADDR/p2p-circuit.
        #[arg(long = "use-relay", value_name = "MULTIADDR")]
        use_relay: Vec<String>,
        /// Do not discover peers on the local network with mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// The largest image file `kith send --image` accepts, in MiB (default 16, at most 64).
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=64))]
        max_image_mib: Option<u64>,
    },
    /// Show this node's PeerId, name, addresses and contact card.
    Id {
        /// Show the contact card as a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Manage contacts.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Send a message to a contact (TARGET: a contact name or a PeerId).
    Send {
        /// A contact name or a PeerId.
        target: String,
        /// The message text (at most 64 KiB).
        #[arg(required_unless_present = "image")]
        text: Option<String>,
        /// Send this image file (JPEG, PNG, WebP or GIF, at most 16 MiB); TEXT is its caption.
        /// Metadata (EXIF, GPS, XMP, comments) is stripped and the orientation applied.
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// Send the image at full size without lossy recompression (metadata still stripped).
        #[arg(long, requires = "image")]
        original: bool,
        /// Make the message disappear DURATION after it is sent, e.g. 30s, 5m, 1h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expire: Option<Duration>,
        /// Return only once the message is sent, delivered or read (exit 1 if not in time).
        #[arg(long, value_enum, value_name = "STATUS")]
        wait: Option<WaitFor>,
        /// How long --wait waits, in seconds (at most a day).
        #[arg(long, value_name = "SECS", default_value_t = 30, requires = "wait",
              value_parser = clap::value_parser!(u64).range(0..=MAX_WAIT_SECS))]
        timeout: u64,
    },
    /// Show a conversation, oldest first.
    History {
        /// A contact name or a PeerId.
        target: String,
        /// Show only the last N messages.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Mark a conversation's incoming messages read and send read receipts.
    Read {
        /// A contact name or a PeerId.
        target: String,
    },
    /// Print events (messages, receipts, peers) as they happen, until interrupted.
    Watch,
    /// Show the peers this node is connected to.
    Peers,
    /// Run a small local network in temporary homes and show what kith does, step by step.
    Demo,
    /// Simulate a network of real nodes in one process (no running node needed): a seeded
    /// workload of one-to-one and group texts with nodes going offline, then a check that
    /// every message arrived exactly once and in order. Exit 1 when the check finds a
    /// violation. The last line printed is the report as JSON.
    Sim {
        /// How many nodes (relays included).
        #[arg(long, value_name = "N", default_value_t = 20)]
        nodes: usize,
        /// How many groups (3 to 8 members each).
        #[arg(long, value_name = "G", default_value_t = 2)]
        groups: usize,
        /// How many messages to send, one-to-one and group.
        #[arg(long, value_name = "M", default_value_t = 200)]
        messages: usize,
        /// The fraction of nodes that go offline for part of the run and come back.
        #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
        offline: f64,
        /// The seed of the workload: the same seed gives the same workload (default: from the
        /// clock; the report shows it).
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Messages sent per second over the whole network.
        #[arg(long, value_name = "PER_SEC", default_value_t = kith_node::sim::DEFAULT_RATE)]
        rate: f64,
    },
    /// Group chats.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Whether a contact is online, and when it was last seen.
    Presence {
        /// A contact name or a PeerId.
        target: String,
    },
    /// Settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Set a conversation's disappearing-message timer (on both sides), or turn it off.
    Disappear {
        /// A contact name or a PeerId.
        target: String,
        /// A duration like 30s, 5m, 1h, 7d (at most one year), or `off`.
        #[arg(allow_hyphen_values = true)]
        duration: String,
    },
    /// Tell a contact (or a group) that you are typing.
    Typing {
        /// A contact name, a PeerId, a group name or id.
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum SettingsCommand {
    /// Who may learn your last seen: everyone, contacts or nobody. Who shows nobody sees
    /// nobody's.
    LastSeen {
        #[arg(value_parser = ["everyone", "contacts", "nobody"])]
        value: String,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group with these members (contact names or PeerIds).
    Create {
        /// The group's name.
        name: String,
        /// A member to add (repeatable).
        #[arg(long = "member", value_name = "TARGET", required = true)]
        members: Vec<String>,
    },
    /// Add a member (admins only).
    Add { group: String, target: String },
    /// Remove a member (admins only); the member can read nothing sent afterwards.
    Remove { group: String, target: String },
    /// Make a member an admin (admins only).
    Promote { group: String, target: String },
    /// Rename the group (admins only).
    Rename { group: String, name: String },
    /// Leave the group; its history stays, read-only.
    Leave { group: String },
    /// List groups, including those left.
    List,
}

#[derive(Debug, Subcommand)]
enum ContactCommand {
    /// Add a contact from its PeerId or contact card, or rename an existing one.
    Add {
        /// A PeerId (12D3Koo...) or a contact card (kith:...).
        #[arg(value_name = "PEER_ID_OR_CARD")]
        card: String,
        /// The name to know the contact by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts.
    List,
    /// Show the safety number to compare with a contact; --confirm marks it verified.
    Verify {
        /// A contact name or a PeerId.
        target: String,
        /// Mark the contact verified (after comparing the safety numbers).
        #[arg(long)]
        confirm: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2; --help and --version exit 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx {
        home: Home::resolve(cli.home)?,
        out: Out::new(cli.json),
    };
    match cli.command {
        Command::Init { name } => local::init(&ctx, name.as_deref()),
        Command::Up {
            listen,
            bootstrap,
            relay,
            use_relay,
            no_mdns,
            max_image_mib,
        } => {
            let request = UpRequest {
                listen,
                bootstrap,
                relay,
                use_relays: use_relay,
                no_mdns,
                max_image_mib,
            };
            runtime(true)?.block_on(local::up(&ctx, request))
        }
        Command::Id { qr } => runtime(false)?.block_on(node_info::id(&ctx, qr)),
        Command::Contact(ContactCommand::Add { card, name }) => {
            runtime(false)?.block_on(contact::add(&ctx, &card, name.as_deref()))
        }
        Command::Contact(ContactCommand::List) => runtime(false)?.block_on(contact::list(&ctx)),
        Command::Contact(ContactCommand::Verify { target, confirm }) => {
            runtime(false)?.block_on(contact::verify(&ctx, &target, confirm))
        }
        Command::Send {
            target,
            text,
            image,
            original,
            expire,
            wait,
            timeout,
        } => {
            let request = SendRequest {
                target,
                text,
                image,
                original,
                expire,
                wait,
                timeout: Duration::from_secs(timeout),
            };
            runtime(false)?.block_on(message::send(&ctx, request))
        }
        Command::History { target, limit } => {
            runtime(false)?.block_on(message::history(&ctx, &target, limit))
        }
        Command::Read { target } => runtime(false)?.block_on(message::read(&ctx, &target)),
        Command::Watch => runtime(false)?.block_on(watch::watch(&ctx)),
        Command::Peers => runtime(false)?.block_on(node_info::peers(&ctx)),
        Command::Demo => runtime(true)?.block_on(demo::run()),
        Command::Sim {
            nodes,
            groups,
            messages,
            offline,
            seed,
            rate,
        } => sim::sim(
            &ctx,
            kith_node::sim::SimConfig {
                nodes,
                groups,
                messages,
                offline,
                seed: seed.unwrap_or_else(|| kith_protocol::Timestamp::now().0),
                rate,
            },
        ),
        Command::Presence { target } => runtime(false)?.block_on(presence::presence(&ctx, &target)),
        Command::Settings(SettingsCommand::LastSeen { value }) => {
            runtime(false)?.block_on(presence::last_seen(&ctx, &value))
        }
        Command::Disappear { target, duration } => {
            runtime(false)?.block_on(message::disappear(&ctx, &target, &duration))
        }
        Command::Typing { target } => runtime(false)?.block_on(presence::typing(&ctx, &target)),
        Command::Group(g) => {
            let rt = runtime(false)?;
            match g {
                GroupCommand::Create { name, members } => {
                    rt.block_on(group::create(&ctx, &name, &members))
                }
                GroupCommand::Add { group, target } => {
                    rt.block_on(group::change(&ctx, "add", &group, &target))
                }
                GroupCommand::Remove { group, target } => {
                    rt.block_on(group::change(&ctx, "remove", &group, &target))
                }
                GroupCommand::Promote { group, target } => {
                    rt.block_on(group::change(&ctx, "promote", &group, &target))
                }
                GroupCommand::Rename { group, name } => {
                    rt.block_on(group::rename(&ctx, &group, &name))
                }
                GroupCommand::Leave { group } => rt.block_on(group::leave(&ctx, &group)),
                GroupCommand::List => rt.block_on(group::list(&ctx)),
            }
        }
    }
}

/// A multi-threaded runtime for the node, a single-threaded one for a client command.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| CliError::NotReached(format!("cannot start the async runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let before = Cli::try_parse_from(["kith", "--json", "--home", "/h", "send", "bob", "hi"]);
        let after = Cli::try_parse_from(["kith", "send", "bob", "hi", "--json", "--home", "/h"]);
        for cli in [before, after] {
            let cli = cli.map_err(|e| e.to_string());
            assert!(matches!(&cli, Ok(c) if c.json && c.home == Some(PathBuf::from("/h"))));
        }
    }

    #[test]
    fn send_flags_parse() {
        let cli = Cli::try_parse_from([
            "kith",
            "send",
            "bob",
            "hi",
            "--wait",
            "read",
            "--timeout",
            "5",
        ]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Command::Send {
                wait: Some(WaitFor::Read),
                timeout: 5,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["kith", "send", "bob"]).is_err());
        let too_long = [
            "kith",
            "send",
            "bob",
            "hi",
            "--wait",
            "sent",
            "--timeout",
            "86401",
        ];
        assert!(Cli::try_parse_from(too_long).is_err());
        assert!(Cli::try_parse_from(["kith", "send", "bob", "--image", "x.png"]).is_ok());
        assert!(Cli::try_parse_from(["kith", "send", "bob", "hi", "--expire", "soon"]).is_err());
        assert!(Cli::try_parse_from(["kith", "send", "bob", "hi", "--expire", "7d"]).is_ok());
    }
}

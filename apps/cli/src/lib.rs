//! The `vaarta` command line: a thin layer over `vaarta-node`.
//!
//! Commands other than `init`, `up` and `demo` talk to the running node through its local
//! API when one is up (`vaarta up` in another terminal) and otherwise open the node's store
//! directly, so `vaarta send` works offline too: the message is durable at once and leaves
//! with the next `vaarta up`.

/// `println!` through [`emit`]: a closed standard output ends the command quietly.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::emit(&format!($($t)*))?
    };
}

/// `println!` that ignores a closed standard output (for `vaarta up`, which keeps running).
macro_rules! say {
    ($($t:tt)*) => {
        let _ = $crate::emit(&format!($($t)*));
    };
}

pub mod bench;
pub mod bundle;
pub mod corpus;
pub mod demo;
pub mod directory;
pub mod export;
pub mod fmt;
pub mod follow;
pub mod hook;
pub mod invites;
pub mod org;

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use vaarta_node::api::OutgoingMessage;
use vaarta_node::client::Client;
use vaarta_node::{Home, Request};
use vaarta_sync::envelope::Precedence;

#[derive(Parser, Debug)]
#[command(
    name = "vaarta",
    version,
    about = "Vaarta (वार्ता): offline-first, end-to-end encrypted mesh messenger for field teams",
    long_about = "Vaarta syncs end-to-end encrypted conversations directly between devices in reach \
(same Wi-Fi/LAN), with no server. Start with `vaarta demo`, or `vaarta init --name NAME` then `vaarta up`.",
    after_help = help_footer()
)]
pub struct Cli {
    /// The node's home directory (identity, database, API token). Default: $VAARTA_HOME or ~/.vaarta
    #[arg(long, global = true, env = "VAARTA_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Machine-readable output: one pretty-printed JSON value, or JSON Lines (one object per
    /// line) for `log`; errors as {"error": "..."} on stderr
    #[arg(long, global = true)]
    pub json: bool,
    /// The home's passphrase, on this file's first line: needed by `up` and by commands run
    /// while no node is up once the home is protected; given to a plain home, it wraps the
    /// identity and storage keys (Argon2id). $VAARTA_PASSPHRASE does the same
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Colour on terminals: auto (when the stream is a terminal and $NO_COLOR is unset or
    /// empty), always, never. Never in pipes or files under auto; the node's log follows
    /// standard error
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Fewer node log lines: -q errors only, -qq none
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// More node log lines: -v info, -vv debug, -vvv trace (default: warnings; $RUST_LOG
    /// when neither -q nor -v is given)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream: `always` and `never` say so; `auto` colours a terminal
    /// unless $NO_COLOR is set to something (no-color.org) or $TERM is `dumb`.
    pub fn enabled(self, is_terminal: bool, no_color: Option<&str>, term: Option<&str>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
            }
        }
    }

    fn for_stream(self, is_terminal: bool) -> bool {
        let no_color = std::env::var("NO_COLOR").ok();
        let term = std::env::var("TERM").ok();
        self.enabled(is_terminal, no_color.as_deref(), term.as_deref())
    }
}

/// The log filter (tracing `EnvFilter` syntax): `-v`/`-q` first, then $RUST_LOG, then the
/// configured level, then `warn`.
pub fn log_filter(
    quiet: u8,
    verbose: u8,
    rust_log: Option<&str>,
    configured: Option<&str>,
) -> String {
    match (quiet, verbose) {
        (0, 0) => rust_log
            .filter(|s| !s.trim().is_empty())
            .or(configured)
            .unwrap_or("warn")
            .to_string(),
        (_, 1) => "info".into(),
        (_, 2) => "debug".into(),
        (_, v) if v > 2 => "trace".into(),
        (1, _) => "error".into(),
        _ => "off".into(),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this device's identity (refuses to overwrite one)
    Init {
        /// Your name as others will see it
        #[arg(long)]
        name: String,
    },
    /// Run the node in the foreground until Ctrl-C / SIGTERM / SIGHUP. Settings not given
    /// here come from $VAARTA_LISTEN, $VAARTA_PEERS, $VAARTA_MDNS, $VAARTA_RELAY, $VAARTA_API,
    /// then vaarta.toml in the home (`vaarta config` shows what is in force)
    Up {
        /// Address to listen on (repeatable; replaces the configured ones), e.g.
        /// /ip4/0.0.0.0/tcp/7447
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// A peer to keep connected (repeatable; replaces the configured ones), e.g.
        /// /ip4/192.168.1.20/tcp/7447
        #[arg(long = "peer", value_name = "MULTIADDR")]
        peer: Vec<String>,
        /// Do not announce or look for peers with mDNS
        #[arg(long, conflicts_with = "mdns")]
        no_mdns: bool,
        /// Announce and look for peers with mDNS (the default; over a file or variable
        /// that switched it off)
        #[arg(long)]
        mdns: bool,
        /// Where the local API listens (loopback only; default 127.0.0.1:0, a free port)
        #[arg(long, value_name = "ADDR")]
        api: Option<String>,
        /// Do not carry other conversations' envelopes for others
        #[arg(long, conflicts_with = "relay")]
        no_relay: bool,
        /// Carry other conversations' envelopes (the default; over a file or variable that
        /// switched it off)
        #[arg(long)]
        relay: bool,
        /// Also link over Bluetooth LE (L2CAP, else GATT; a build with `--features ble`)
        #[arg(long, conflicts_with = "no_ble")]
        ble: bool,
        /// No Bluetooth LE (over a file or variable that switched it on)
        #[arg(long)]
        no_ble: bool,
        /// Bluetooth: GATT only, no L2CAP channels
        #[arg(long)]
        ble_no_l2cap: bool,
        /// The Bluetooth adapter, e.g. hci1 (default: BlueZ's default)
        #[arg(long, value_name = "NAME")]
        ble_adapter: Option<String>,
        /// Run this program for each message from another member: the message as JSON on
        /// its standard input, VAARTA_CONVERSATION, VAARTA_MESSAGE, VAARTA_AUTHOR,
        /// VAARTA_AUTHOR_NAME, VAARTA_PRECEDENCE in its environment; run directly, never
        /// through a shell; killed after 60 s; failures are logged
        #[arg(long, value_name = "PROGRAM")]
        on_message: Option<PathBuf>,
        /// At most this many --on-message programs at once
        #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
        on_message_jobs: u8,
    },
    /// Run a program for each message from another member, as `up --on-message` does, on
    /// the node already running (until it stops)
    Watch {
        /// The program (run directly, never through a shell)
        #[arg(long, value_name = "PROGRAM")]
        exec: PathBuf,
        /// At most this many programs at once
        #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
        jobs: u8,
    },
    /// Show the settings `vaarta up` would use and where each comes from (flag, env,
    /// vaarta.toml in the home, default)
    Config,
    /// Show this device's id, name, safety number and listen addresses
    Id,
    /// Print a one-time link that signs a browser on this device in to the web app of the
    /// running node (single use, valid for 2 minutes; the API token is never in it)
    Open {
        /// Also try to open the link in the default browser (xdg-open)
        #[arg(long)]
        browser: bool,
    },
    /// Show connected and recently seen peers
    Peers,
    /// Create, list and manage conversations
    #[command(subcommand)]
    Conv(ConvCommand),
    /// List invitations from devices that are not contacts yet; accept or decline one
    Invites {
        #[command(subcommand)]
        action: Option<invites::InvitesCommand>,
    },
    /// Carry envelopes on a file (USB stick) between devices with no network in common
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Write a signed export of a conversation for the record (docs/export.md): an
    /// Automerge document of its messages, what their authors signed, and this device's
    /// signature over the file. It holds the messages in the clear
    Export {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The file to write (replaced atomically, owner-only)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a signed export with no store and no node: prints who wrote what and when,
    /// and exits 0 only if every message is as its author signed it and the file as its
    /// exporter signed it
    VerifyExport {
        /// The export file
        file: PathBuf,
    },
    /// Send a message; returns once it is durable on this device. With --role, to whoever
    /// holds a role now (`vaarta send --role "DM Darbhanga" TEXT`)
    Send {
        /// Conversation id (or a unique prefix of it); with --role, the message text
        #[arg(required_unless_present = "role")]
        conv: Option<String>,
        /// The message text (any language); `-` reads it from standard input
        #[arg(required_unless_present_any = ["file", "role"], conflicts_with = "file")]
        text: Option<String>,
        /// Send to the holder of this role (its title in any script, its key or unit/key,
        /// from the directory): in the role's own conversation, which follows handovers
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// Read the message text from this file (UTF-8)
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// How urgent it is: relays and links carry higher precedence first
        #[arg(long, value_enum, ignore_case = true, default_value_t = PrecedenceArg::Routine)]
        precedence: PrecedenceArg,
        /// Stop relaying after this long, e.g. 90s, 30m, "2h 30m", 1d (1s to 366d)
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Reply to this message id (as `log --json` shows it)
        #[arg(long, value_name = "MESSAGE")]
        reply_to: Option<String>,
    },
    /// Change the text of a message you wrote (the others see it marked edited)
    Edit {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
        /// The new text; `-` reads it from standard input
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// Read the new text from this file (UTF-8)
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Delete a message you wrote (its text is erased everywhere it syncs to)
    Delete {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
    },
    /// React to a message with one emoji, or take your reaction back with --remove
    React {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
        /// One emoji, e.g. 👍 (a later reaction replaces your earlier one)
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        emoji: Option<String>,
        /// Take back your reaction
        #[arg(long)]
        remove: bool,
    },
    /// Acknowledge a FLASH or IMMEDIATE message ("received, acting"); its sender's roll-call
    /// shows it
    Ack {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
    },
    /// Who acknowledged, read, holds or has not yet received a message (the roll-call)
    Rollcall {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
    },
    /// Alert again those who have not acknowledged your FLASH or IMMEDIATE message (a FLASH
    /// reply with its text)
    Realert {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message id (as `log --ids` or `log --json` shows it)
        message: String,
    },
    /// Show the messages of a conversation in order, with edits, deletions, reactions and
    /// reply links
    Log {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// Start each message with its id (for `edit`, `delete`, `react`, `send --reply-to`)
        #[arg(long, conflicts_with = "follow")]
        ids: bool,
        /// Keep printing as the conversation changes: new messages, edits, deletions and
        /// reactions, each on a line that says so (with --json: the message with a "change"
        /// field). Needs a running node; fails when the node stops
        #[arg(long)]
        follow: bool,
        /// How many of the newest messages (at start, with --follow): 1 to 100000
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
        /// Only the messages just older than this message id (as `--ids` prints it): page back
        /// with the id of the oldest message shown
        #[arg(long, value_name = "MSGID", conflicts_with = "follow")]
        before: Option<String>,
    },
    /// Organisation credentials, offline: create an organisation, certify registrars,
    /// issue and enrol credentials, show and revoke them (docs/organisations.md)
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// The signed directory of your organisation: search people by name in any script,
    /// designation, unit or role; the roles and who holds each now; take records in
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Print a shell completion script, e.g. `vaarta completions bash > /etc/bash_completion.d/vaarta`
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `vaarta man | man -l -`; with --dir, write vaarta.1
    /// and one page per command (vaarta-send.1, ...) there
    Man {
        /// Write the pages into this directory instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run three nodes on this machine and show them talking, losing one and catching up
    /// (in temporary homes: --home is not used)
    Demo {
        /// Keep the nodes' homes (printed) instead of deleting them
        #[arg(long)]
        keep: bool,
    },
    /// Measure two nodes on loopback (throughput, latency, bytes) and print a table; with
    /// --corpus, one daemon's storage instead (in temporary homes: --home is not used)
    Bench {
        /// Messages for the throughput run
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        messages: u64,
        /// Messages of history for the idle-reconnect measurement
        #[arg(long, default_value_t = 100_000)]
        history: usize,
        /// Instead: fill one daemon (`vaarta up`) with N messages through its API, one per
        /// request, and measure disk bytes per message, cold start, memory (Linux only),
        /// reads and scrolls; progress on stderr unless -q or --json
        #[arg(long, value_name = "N", conflicts_with_all = ["messages", "history"])]
        corpus: Option<u64>,
        /// With --corpus: spread the messages round-robin over this many conversations
        #[arg(long, value_name = "C", default_value_t = 100, requires = "corpus")]
        conversations: u64,
        /// With --corpus: concurrent API clients during the fill
        #[arg(long, value_name = "K", default_value_t = 8, requires = "corpus")]
        clients: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConvCommand {
    /// Create a conversation; prints its id
    Create {
        /// The conversation's title
        title: String,
        /// A member's device id (repeatable)
        #[arg(long = "member", value_name = "DEVICE_ID")]
        member: Vec<String>,
        /// Members added later read only what is written after they join
        #[arg(long)]
        history_from_join: bool,
    },
    /// List conversations
    List,
    /// Show a conversation's members (and any device found equivocating in it)
    Show {
        /// Conversation id (or a unique prefix of it)
        conv: String,
    },
    /// Give a conversation a new title (admins only)
    Rename {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The new title
        title: String,
    },
    /// Add a member by device id (their keys travel through the mesh), or change a
    /// member's role with --admin / --no-admin; an existing member keeps their role otherwise
    Add {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The member's device id (`vaarta id` on their device)
        device: String,
        /// Make them an admin
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Make them a plain member (takes back admin)
        #[arg(long)]
        no_admin: bool,
    },
    /// Remove a member (the conversation key rotates); your own device id: leave
    Remove {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The member's device id
        device: String,
    },
}

/// `--precedence`: the values of [`Precedence`] for clap (the sync crate stays free of it).
/// The short forms the API also accepts (f/z, i/o, p, r) are hidden aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecedenceArg {
    #[value(alias = "f", alias = "z")]
    Flash,
    #[value(alias = "i", alias = "o")]
    Immediate,
    #[value(alias = "p")]
    Priority,
    #[value(alias = "r")]
    Routine,
}

impl From<PrecedenceArg> for Precedence {
    fn from(p: PrecedenceArg) -> Precedence {
        match p {
            PrecedenceArg::Flash => Precedence::Flash,
            PrecedenceArg::Immediate => Precedence::Immediate,
            PrecedenceArg::Priority => Precedence::Priority,
            PrecedenceArg::Routine => Precedence::Routine,
        }
    }
}

/// Parses a duration a person types, in milliseconds: 90s, 30m, 2h 30m, 1d, 1day (humantime's
/// syntax) or plain seconds; 1 s to 366 days, with no overflow.
pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let max = vaarta_node::api::MAX_EXPIRES_MS;
    let range = || {
        anyhow!(
            "--expires {s}: must be between 1s and {}d",
            max / 86_400_000
        )
    };
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1000))
            .ok_or_else(range)?
    } else {
        match humantime::parse_duration(s) {
            Ok(d) => u64::try_from(d.as_millis()).map_err(|_| range())?,
            Err(humantime::DurationError::NumberOverflow) => return Err(range()),
            Err(_) => bail!("'{s}' is not a duration (use e.g. 90s, 30m, 2h 30m, 1d)"),
        }
    };
    if (1000..=max).contains(&ms) {
        Ok(ms)
    } else {
        Err(range())
    }
}

/// The text of `send`: the argument, standard input for `-`, or a file.
fn message_text(text: Option<String>, file: Option<PathBuf>) -> Result<String> {
    use std::io::Read;
    match (text, file) {
        (Some(t), None) if t == "-" => {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| anyhow!("cannot read the message from standard input: {e}"))?;
            Ok(buf)
        }
        (Some(t), None) => Ok(t),
        (None, Some(f)) => std::fs::read_to_string(&f)
            .map_err(|e| anyhow!("cannot read the message from {}: {e}", f.display())),
        _ => bail!("give the message text, `-` for standard input, or --file PATH"),
    }
}

/// How a command reaches the node.
#[derive(Debug)]
pub enum Conn {
    Online(Client),
    /// The home, and its engine once the first request opened it (kept for the process's
    /// other requests: see [`vaarta_node::Offline`]).
    Offline(Home, RefCell<Option<Box<vaarta_node::Offline>>>),
}

impl Conn {
    pub fn open(home: &Home) -> Result<Conn> {
        // Says "run init" only when there is no key; any other error names its path. The
        // identity key is not unwrapped here: a command a running node answers needs no
        // passphrase.
        let me = home.info().map_err(|e| anyhow!("{e}"))?;
        if let Some((info, token)) = home.running_api() {
            let c = Client::new(&info.addr, &token);
            if let Ok(status) = c.request(Request::Status) {
                home.verify_api(&me, &status).map_err(|e| anyhow!("{e}"))?;
                return Ok(Conn::Online(c));
            }
        }
        Ok(Conn::Offline(home.clone(), RefCell::new(None)))
    }

    pub fn request(&self, r: Request) -> Result<Value> {
        match self {
            Conn::Online(c) => c.request(r).map_err(|e| anyhow!(e.message)),
            Conn::Offline(h, open) => {
                let mut open = open.borrow_mut();
                let offline = match &mut *open {
                    Some(o) => o,
                    None => open.insert(Box::new(
                        vaarta_node::Offline::open(h).map_err(|e| anyhow!(e.message))?,
                    )),
                };
                offline.execute(r).map_err(|e| anyhow!(e.message))
            }
        }
    }

    pub fn online(&self) -> bool {
        matches!(self, Conn::Online(_))
    }
}

/// `vaarta open`: a one-time sign-in link from the running node, printed (and, with
/// `--browser`, handed to xdg-open; if that fails the link is still printed).
fn open(home: &Home, browser: bool, json: bool) -> Result<()> {
    let Conn::Online(client) = Conn::open(home)? else {
        bail!("the web app is served by the running node: start it with `vaarta up`");
    };
    let link = client.login_code().map_err(|e| anyhow!(e.message))?;
    let url = link["url"].as_str().unwrap_or_default().to_string();
    if url.is_empty() {
        bail!("the node answered without a sign-in link");
    }
    let opened = browser
        && match std::process::Command::new("xdg-open")
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(st) if st.success() => true,
            Ok(st) => {
                eprintln!("xdg-open failed ({st}): open the link yourself");
                false
            }
            Err(e) => {
                eprintln!("cannot run xdg-open ({e}): open the link yourself");
                false
            }
        };
    if json {
        print_json(&serde_json::json!({
            "url": url,
            "expires_in_ms": link["expires_in_ms"],
            "opened": opened,
        }))
    } else {
        let secs = link["expires_in_ms"].as_u64().unwrap_or(0) / 1000;
        out!("{url}");
        out!("Open this link in a browser on this device: it signs in once, within {secs} s.");
        Ok(())
    }
}

/// Standard output was closed by its reader (`vaarta log | head -1`): the command stops
/// and exits 0 without a message, as `cat` and `grep` do.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` and a newline to standard output. A closed pipe is [`StdoutClosed`]; any
/// other write error is an error.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match writeln!(o, "{text}").and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow!("cannot write to standard output: {e}")),
    }
}

/// [`emit`] for several lines.
pub fn emit_all(lines: &[String]) -> Result<()> {
    lines.iter().try_for_each(|l| emit(l))
}

/// A roll-call as lines: the counts, then one member a line (name or device, answer).
fn print_rollcall(r: &Value) -> Result<()> {
    let c = &r["counts"];
    out!(
        "{} acknowledged, {} read, {} delivered only, {} not yet delivered",
        c["acknowledged"],
        c["read"],
        c["delivered"],
        c["not_delivered"]
    );
    for m in r["members"].as_array().into_iter().flatten() {
        let device = m["device"].as_str().unwrap_or_default();
        let who = m["name"]
            .as_str()
            .map(fmt::clean)
            .unwrap_or_else(|| device.chars().take(12).collect());
        let state = m["state"].as_str().unwrap_or_default().replace('_', " ");
        out!("{who:<24} {state}");
    }
    Ok(())
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    emit(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Runs the CLI; returns the process exit code.
pub fn main_entry() -> ExitCode {
    // Known before parsing, so that a usage error is JSON under --json too.
    let json_errors = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            if json_errors {
                eprintln!(
                    "{}",
                    serde_json::json!({"error": usage_error_line(&e), "usage": true})
                );
            } else {
                eprintln!("{}", usage_error_line(&e));
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    use std::io::IsTerminal;
    let color_err = cli.color.for_stream(std::io::stderr().is_terminal());
    fmt::set_color(cli.color.for_stream(std::io::stdout().is_terminal()));
    // The node's log level may be set in vaarta.toml (a bad file: `up` says so below).
    let configured = match cli.command {
        Command::Up { .. } => Home::resolve(cli.home.clone())
            .ok()
            .and_then(|h| vaarta_node::config::Effective::load(&h.dir, &Default::default()).ok())
            .filter(|e| e.log_level.from == vaarta_node::config::Source::File)
            .map(|e| e.log_level.value),
        _ => None,
    };
    let filter = log_filter(
        cli.quiet,
        cli.verbose,
        std::env::var("RUST_LOG").ok().as_deref(),
        configured.as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(color_err)
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            if let Some(cause) = e.chain().nth(1) {
                msg = format!("{msg}: {cause}");
            }
            if json_errors {
                eprintln!("{}", serde_json::json!({"error": msg}));
            } else if color_err {
                eprintln!("\x1b[1;31merror:\x1b[0m {msg}");
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A usage error in one line, like every other error of the CLI: clap's message and its
/// hints (possible values, a similar argument), without the usage block.
fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(if l.starts_with('[') { " " } else { "; " });
        }
        out.push_str(l);
    }
    out
}

pub fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    if matches!(cli.command, Command::Demo { .. } | Command::Bench { .. })
        && cli.home.is_some()
        && std::env::var_os("VAARTA_HOME").is_none()
    {
        bail!("demo and bench run in temporary homes: --home is not used by them");
    }
    if json && matches!(cli.command, Command::Demo { .. } | Command::Up { .. }) {
        bail!(
            "--json: `up` and `demo` print a narrative, not data (use `vaarta id --json` or `bench --json`)"
        );
    }
    if json && matches!(cli.command, Command::Completions { .. }) {
        bail!("--json: `completions` prints a shell script, not data");
    }
    // These two need no home.
    let command = match cli.command {
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vaarta", &mut buf);
            return emit(String::from_utf8_lossy(&buf).trim_end());
        }
        Command::Man { dir } => return man(dir.as_deref(), json),
        // Works with no home at all (the root key lives on an offline laptop).
        Command::Org(c) => return org::run(cli.home.clone(), c, json),
        // Needs nothing but the file: a third party checks an export with it.
        Command::VerifyExport { file } => return export::verify(&file, json),
        other => other,
    };
    let home = Home::resolve(cli.home.clone()).map_err(|e| anyhow!("{e}"))?;
    let home = match &cli.passphrase_file {
        Some(f) => home.with_passphrase_file(f).map_err(|e| anyhow!("{e}"))?,
        None => home,
    };
    let level_flag =
        (cli.quiet > 0 || cli.verbose > 0).then(|| log_filter(cli.quiet, cli.verbose, None, None));
    match command {
        Command::Config => {
            let e = vaarta_node::config::Effective::load(
                &home.dir,
                &vaarta_node::config::Flags {
                    log_level: level_flag,
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow!("{e}"))?;
            if json {
                print_json(&e.to_json())?;
            } else {
                emit_all(&fmt::config_lines(&e.to_json()))?;
            }
            Ok(())
        }
        Command::Init { name } => {
            let id = home.init(&name).map_err(|e| anyhow!("{e}"))?;
            let d = id.device_id();
            if json {
                print_json(
                    &serde_json::json!({"device_id": d.to_string(), "name": name.trim(), "safety_number": d.safety_number(), "home": home.dir}),
                )?;
            } else {
                out!(
                    "Created identity for {} in {}",
                    fmt::clean(name.trim()),
                    home.dir.display()
                );
                out!("device id:     {d}");
                out!("safety number: {}", d.safety_number());
                out!("Next: vaarta up");
            }
            Ok(())
        }
        Command::Up {
            listen,
            peer,
            no_mdns,
            mdns,
            api,
            no_relay,
            relay,
            ble,
            no_ble,
            ble_no_l2cap,
            ble_adapter,
            on_message,
            on_message_jobs,
        } => up(
            &home,
            vaarta_node::config::Flags {
                listen,
                peers: peer,
                mdns: (mdns || no_mdns).then_some(mdns),
                relay: (relay || no_relay).then_some(relay),
                api,
                log_level: level_flag,
                ble: (ble || no_ble).then_some(ble),
                ble_l2cap: ble_no_l2cap.then_some(false),
                ble_adapter,
            },
            on_message.map(|p| (p, usize::from(on_message_jobs))),
        ),
        Command::Watch { exec, jobs } => {
            let conn = Conn::open(&home)?;
            let Conn::Online(client) = &conn else {
                bail!("watch needs a running node: start one with `vaarta up`");
            };
            let queue = hook::workers(exec, usize::from(jobs));
            hook::Watcher::default().run(client, &queue)?;
            bail!("the node stopped")
        }
        Command::Id => {
            let conn = Conn::open(&home)?;
            let s = conn.request(Request::Status)?;
            if json {
                print_json(&s)?;
            } else {
                out!(
                    "name:          {}",
                    fmt::clean(s["name"].as_str().unwrap_or(""))
                );
                out!("device id:     {}", s["device_id"].as_str().unwrap_or(""));
                out!(
                    "safety number: {}",
                    s["safety_number"].as_str().unwrap_or("")
                );
                if conn.online() {
                    for a in s["listen"].as_array().into_iter().flatten() {
                        out!("listening on:  {}", a.as_str().unwrap_or(""));
                    }
                    out!("API:           http://{}", s["api"].as_str().unwrap_or(""));
                } else {
                    out!("node:          not running (start it with `vaarta up`)");
                }
                for w in s["warnings"].as_array().into_iter().flatten() {
                    out!("warning:       {}", fmt::clean(w.as_str().unwrap_or("")));
                }
                for u in s["unreachable"].as_array().into_iter().flatten() {
                    out!("warning:       {}", fmt::static_line(u));
                }
            }
            Ok(())
        }
        Command::Open { browser } => open(&home, browser, json),
        Command::Peers => {
            let conn = Conn::open(&home)?;
            let p = conn.request(Request::Peers)?;
            if json {
                print_json(&p)?;
            } else {
                emit_all(&fmt::peers_lines(&p, conn.online(), fmt::now_ms()))?;
            }
            Ok(())
        }
        Command::Conv(c) => conv(&home, c, json),
        Command::Invites { action } => invites::run(&home, action, json),
        Command::Directory(c) => directory::run(&home, c, json),
        Command::Bundle(c) => bundle::run(&home, c, json),
        Command::Export { conv, out } => export::export(&home, conv, &out, json),
        Command::Send {
            conv,
            text,
            role,
            file,
            precedence,
            expires,
            reply_to,
        } => {
            let expires_in_ms = expires.as_deref().map(parse_duration).transpose()?;
            if let Some(role) = role {
                // `send --role ROLE TEXT`: the first positional is the text.
                let text = match (conv, text) {
                    (Some(_), Some(_)) => bail!(
                        "with --role, give only the message text (the role picks the conversation)"
                    ),
                    (t, None) | (None, t) => t,
                };
                if reply_to.is_some() {
                    bail!("--reply-to needs a conversation: send the reply there");
                }
                let body = message_text(text, file)?;
                let conn = Conn::open(&home)?;
                let r = conn.request(Request::SendToRole {
                    role,
                    messages: vec![OutgoingMessage {
                        body,
                        precedence: Some(Precedence::from(precedence).as_str().to_string()),
                        expires_in_ms,
                        removed_expires_in_s: None,
                        reply_to: None,
                    }],
                })?;
                if json {
                    print_json(&r)?;
                } else {
                    let id = r["ids"][0].as_str().unwrap_or("");
                    let to = r["to"].as_array().map_or(0, Vec::len);
                    let conv = r["conversation"].as_str().unwrap_or("");
                    if conn.online() {
                        out!(
                            "sent {id} to {} ({to} device(s)) in {conv} (saved; delivering to peers in reach)",
                            r["role"].as_str().unwrap_or("")
                        );
                    } else {
                        out!(
                            "saved {id} for {} ({to} device(s)) in {conv} (no node running: it leaves with the next `vaarta up`)",
                            r["role"].as_str().unwrap_or("")
                        );
                    }
                }
                return Ok(());
            }
            let conv = conv.ok_or_else(|| anyhow!("give the conversation id (or --role)"))?;
            let body = message_text(text, file)?;
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Send {
                conversation: conv,
                messages: vec![OutgoingMessage {
                    body,
                    // The API's wire form; it parses the string (one parser, in the API).
                    precedence: Some(Precedence::from(precedence).as_str().to_string()),
                    expires_in_ms,
                    removed_expires_in_s: None,
                    reply_to,
                }],
            })?;
            if json {
                print_json(&r)?;
            } else {
                let id = r["ids"][0].as_str().unwrap_or("");
                if conn.online() {
                    out!("sent {id} (saved; delivering to peers in reach)");
                } else {
                    out!("saved {id} (no node running: it leaves with the next `vaarta up`)");
                }
            }
            Ok(())
        }
        Command::Edit {
            conv,
            message,
            text,
            file,
        } => {
            let body = message_text(text, file)?;
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Edit {
                conversation: conv,
                message: message.clone(),
                body,
            })?;
            if json {
                print_json(&r)?;
            } else {
                out!("edited {}", fmt::clean(&message));
            }
            Ok(())
        }
        Command::Delete { conv, message } => {
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Delete {
                conversation: conv,
                message: message.clone(),
            })?;
            if json {
                print_json(&r)?;
            } else {
                out!("deleted {}", fmt::clean(&message));
            }
            Ok(())
        }
        Command::React {
            conv,
            message,
            emoji,
            remove,
        } => {
            let conn = Conn::open(&home)?;
            let emoji = if remove { None } else { emoji };
            let r = conn.request(Request::React {
                conversation: conv,
                message: message.clone(),
                emoji: emoji.clone(),
            })?;
            if json {
                print_json(&r)?;
            } else if let Some(e) = emoji {
                out!("reacted {} to {}", fmt::clean(&e), fmt::clean(&message));
            } else {
                out!("took back your reaction to {}", fmt::clean(&message));
            }
            Ok(())
        }
        Command::Ack { conv, message } => {
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Ack {
                conversation: conv,
                message: message.clone(),
            })?;
            if json {
                print_json(&r)?;
            } else {
                out!("acknowledged {}", fmt::clean(&message));
            }
            Ok(())
        }
        Command::Rollcall { conv, message } => {
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Rollcall {
                conversation: conv,
                message,
            })?;
            if json {
                print_json(&r)?;
            } else {
                print_rollcall(&r)?;
            }
            Ok(())
        }
        Command::Realert { conv, message } => {
            let conn = Conn::open(&home)?;
            let r = conn.request(Request::Realert {
                conversation: conv,
                message: message.clone(),
            })?;
            if json {
                print_json(&r)?;
            } else {
                let n = r["pending"].as_array().map_or(0, Vec::len);
                match r["id"].as_str() {
                    Some(id) => {
                        out!("re-alerted {n} member(s) who had not acknowledged (message {id})")
                    }
                    None => out!(
                        "everyone acknowledged {}: nothing sent",
                        fmt::clean(&message)
                    ),
                }
            }
            Ok(())
        }
        Command::Log {
            conv,
            ids,
            follow,
            limit,
            before,
        } => log(&home, conv, follow, ids, limit as usize, before, json),
        Command::Demo { keep } => demo::run(keep),
        Command::Bench {
            corpus: Some(corpus),
            conversations,
            clients,
            ..
        } => corpus::run(corpus::Args {
            messages: corpus,
            conversations,
            clients,
            quiet: json || cli.quiet > 0,
            json,
        }),
        Command::Bench {
            messages, history, ..
        } => bench::run(messages as usize, history, json),
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Org(_)
        | Command::VerifyExport { .. } => Ok(()),
    }
}

/// The clap definition of the command line (for completions, the man page and tests).
pub fn clap_command() -> clap::Command {
    Cli::command()
}

/// The exit statuses (code, in short, in full): `--help` and the man page are made from it.
pub const EXIT_STATUS: [(&str, &str, &str); 3] = [
    (
        "0",
        "success",
        "success; also when standard output is closed by its reader (`vaarta log C | head -1`)",
    ),
    (
        "1",
        "error",
        "error: one line on standard error (with --json a {\"error\": ...} object)",
    ),
    (
        "2",
        "usage error",
        "usage error: an unknown command or flag, a missing or invalid argument",
    ),
];

/// The environment variables the command reads: `--help` and the man page are made from it.
pub const ENVIRONMENT: [(&str, &str); 10] = [
    ("VAARTA_HOME", "the home directory when --home is not given"),
    (
        "VAARTA_PASSPHRASE",
        "the home's passphrase, as --passphrase-file gives it",
    ),
    (
        "VAARTA_LISTEN",
        "up: listen addresses (comma- or space-separated multiaddrs), over vaarta.toml",
    ),
    (
        "VAARTA_PEERS",
        "up: static peers (comma- or space-separated multiaddrs), over vaarta.toml",
    ),
    (
        "VAARTA_MDNS",
        "up: mDNS on or off (true/false, 1/0, yes/no, on/off)",
    ),
    (
        "VAARTA_RELAY",
        "up: carry others' envelopes or not (as VAARTA_MDNS)",
    ),
    (
        "VAARTA_API",
        "up: the local API's loopback address, e.g. 127.0.0.1:7450",
    ),
    (
        "RUST_LOG",
        "the log filter (tracing syntax, e.g. vaarta=debug) when neither -q nor -v is given",
    ),
    (
        "NO_COLOR",
        "set to anything: no colour under --color auto (no-color.org)",
    ),
    ("TZ", "the zone times are shown in (e.g. Asia/Kolkata)"),
];

/// The files of a home: `--help` and the man page are made from it.
pub const FILES: [(&str, &str); 2] = [
    (
        "~/.vaarta",
        "the default home ($HOME/.vaarta; without HOME, give --home or VAARTA_HOME): identity, database, API token (api-token) and address (api.json)",
    ),
    (
        "~/.vaarta/vaarta.toml",
        "settings of `vaarta up`: listen, peers, mdns, relay, api, log_level, ble, ble_l2cap, ble_adapter (`vaarta config` shows them)",
    ),
];

/// The text after `vaarta --help`'s options, from [`EXIT_STATUS`], [`ENVIRONMENT`] and
/// [`FILES`].
pub fn help_footer() -> String {
    let codes: Vec<String> = EXIT_STATUS
        .iter()
        .map(|(c, short, _)| format!("{c} {short}"))
        .collect();
    let vars: Vec<&str> = ENVIRONMENT.iter().map(|(v, _)| *v).collect();
    let files: Vec<&str> = FILES.iter().map(|(f, _)| *f).collect();
    format!(
        "Exit status: {}. A closed standard output (e.g. `vaarta log C | head -1`) ends a command with 0.\n\
         Environment: {}.\nFiles: {}. `vaarta man` explains each.",
        codes.join(", "),
        vars.join(", "),
        files.join(", ")
    )
}

/// The man page of `vaarta` (roff): clap_mangen's sections, with EXIT STATUS, ENVIRONMENT
/// and FILES in place of the free-form help text.
pub fn man_page() -> Result<String> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut buf = Vec::new();
    let err = |e: std::io::Error| anyhow!("cannot render the man page: {e}");
    man.render_title(&mut buf).map_err(err)?;
    man.render_name_section(&mut buf).map_err(err)?;
    man.render_synopsis_section(&mut buf).map_err(err)?;
    man.render_description_section(&mut buf).map_err(err)?;
    man.render_options_section(&mut buf).map_err(err)?;
    man.render_subcommands_section(&mut buf).map_err(err)?;
    let esc = |s: &str| s.replace('\\', "\\e").replace('-', "\\-");
    let mut extra = String::from(".SH \"EXIT STATUS\"\n");
    for (code, _, what) in EXIT_STATUS {
        extra.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", esc(what)));
    }
    extra.push_str(".SH ENVIRONMENT\n");
    for (var, what) in ENVIRONMENT {
        extra.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", esc(var), esc(what)));
    }
    extra.push_str(".SH FILES\n");
    for (file, what) in FILES {
        extra.push_str(&format!(".TP\n\\fI{}\\fR\n{}\n", esc(file), esc(what)));
    }
    buf.extend_from_slice(extra.as_bytes());
    man.render_version_section(&mut buf).map_err(err)?;
    String::from_utf8(buf).map_err(|e| anyhow!("cannot render the man page: {e}"))
}

/// `vaarta man`: the page of `vaarta` on standard output, or every page into `dir`.
fn man(dir: Option<&std::path::Path>, json: bool) -> Result<()> {
    match dir {
        None if json => {
            bail!("--json: `man` prints a man page, not data (with --dir it lists the files)")
        }
        None => emit(man_page()?.trim_end()),
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| anyhow!("{}: {e}", d.display()))?;
            clap_mangen::generate_to(Cli::command(), d)
                .map_err(|e| anyhow!("cannot write the man pages to {}: {e}", d.display()))?;
            let mut files: Vec<String> = std::fs::read_dir(d)
                .map_err(|e| anyhow!("{}: {e}", d.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .filter(|p| p.ends_with(".1"))
                .collect();
            files.sort();
            if json {
                print_json(&serde_json::json!({ "files": files }))
            } else {
                emit_all(&files)
            }
        }
    }
}

fn conv(home: &Home, c: ConvCommand, json: bool) -> Result<()> {
    let conn = Conn::open(home)?;
    match c {
        ConvCommand::Create {
            title,
            member,
            history_from_join,
        } => {
            let r = conn.request(Request::CreateConversation {
                title,
                members: member,
                history_from_join,
            })?;
            if json {
                print_json(&r)?;
            } else {
                out!("{}", r["id"].as_str().unwrap_or(""));
            }
        }
        ConvCommand::List => {
            let r = conn.request(Request::Conversations)?;
            if json {
                print_json(&r)?;
            } else {
                emit_all(&fmt::conversations_lines(&r))?;
            }
        }
        ConvCommand::Show { conv } => {
            let r = conn.request(Request::Conversation { conversation: conv })?;
            if json {
                print_json(&r)?;
            } else {
                emit_all(&fmt::conversation_lines(&r))?;
            }
        }
        ConvCommand::Rename { conv, title } => {
            let r = conn.request(Request::Rename {
                conversation: conv,
                title,
            })?;
            if json {
                print_json(&r)?;
            } else {
                out!(
                    "renamed to {}",
                    fmt::name(r["title"].as_str().unwrap_or(""))
                );
            }
        }
        ConvCommand::Add {
            conv,
            device,
            admin,
            no_admin,
        } => {
            let role = match (admin, no_admin) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let r = conn.request(Request::AddMember {
                conversation: conv,
                device: device.clone(),
                admin: role,
            })?;
            if json {
                print_json(&r)?;
            } else {
                let role = if r["admin"] == true {
                    "an admin"
                } else {
                    "a member"
                };
                if r["changed"] == false {
                    out!("{device} is already {role}; nothing changed");
                } else {
                    out!("{device} is now {role}; their keys travel to them through the mesh");
                }
            }
        }
        ConvCommand::Remove { conv, device } => {
            let r = conn.request(Request::RemoveMember {
                conversation: conv,
                device: device.clone(),
            })?;
            if json {
                print_json(&r)?;
            } else if r["left"] == true {
                out!("you left the conversation; the others' next key is not sealed to you");
            } else {
                out!("removed {device}; the conversation key was rotated");
            }
        }
    }
    Ok(())
}

fn log(
    home: &Home,
    conv: String,
    follow: bool,
    ids: bool,
    limit: usize,
    before: Option<String>,
    json: bool,
) -> Result<()> {
    let conn = Conn::open(home)?;
    if follow {
        let Conn::Online(client) = &conn else {
            bail!("--follow needs a running node: start one with `vaarta up`");
        };
        let info = conn.request(Request::Conversation { conversation: conv })?;
        let id = info["id"].as_str().unwrap_or("").to_string();
        return follow::run(&conn, client, &id, limit, json);
    }
    let info = conn.request(Request::Conversation { conversation: conv })?;
    let id = info["id"].as_str().unwrap_or("").to_string();
    let authors = fmt::Authors::of(&info);
    let msgs = conn.request(Request::Messages {
        conversation: id,
        limit,
        from_page: None,
        before,
    })?;
    let ctx = fmt::Context::of(&msgs, ids);
    for m in msgs.as_array().into_iter().flatten() {
        if json {
            emit(&serde_json::to_string(m).unwrap_or_default())?;
        } else {
            emit(&fmt::message_lines(m, &authors, &ctx))?;
        }
    }
    Ok(())
}

fn up(
    home: &Home,
    flags: vaarta_node::config::Flags,
    on_message: Option<(PathBuf, usize)>,
) -> Result<()> {
    use vaarta_node::Node;
    let settings =
        vaarta_node::config::Effective::load(&home.dir, &flags).map_err(|e| anyhow!("{e}"))?;
    let opts = settings.options();
    if let Some((info, token)) = home.running_api()
        && Client::new(&info.addr, &token)
            .request(Request::Status)
            .is_ok()
    {
        bail!(
            "a node is already running for {} (pid {}, API {})",
            home.dir.display(),
            info.pid,
            info.addr
        );
    }
    let (_, info) = home.load().map_err(|e| anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    rt.block_on(async move {
        let node = Node::start(home, opts).await.map_err(|e| anyhow!("{e}"))?;
        tracing::info!(device = %node.device_id, api = %node.api_addr, "node up");
        say!("Vaarta node '{}' is up.", info.name);
        say!("device id: {}", node.device_id);
        for a in &node.listen {
            say!("listening: {a}");
        }
        say!(
            "API:       http://{} (token in {})",
            node.api_addr,
            home.token_path().display()
        );
        say!("web app:   run `vaarta open` for a sign-in link");
        if let Some((program, jobs)) = on_message {
            say!(
                "on each message: {} (at most {jobs} at once)",
                program.display()
            );
            let client = Client::new(&node.api_addr.to_string(), &node.token);
            std::thread::spawn(move || {
                let queue = hook::workers(program, jobs);
                if let Err(e) = hook::Watcher::default().run(&client, &queue) {
                    tracing::warn!("on-message stopped: {e:#}");
                }
            });
        }
        if settings.file_found {
            say!(
                "settings:  {} (`vaarta config` shows what is in force)",
                settings.file.display()
            );
        }
        say!("Press Ctrl-C to stop.");
        invites::announce(&node).await;
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        // A closed terminal (SIGHUP) stops the node as cleanly as Ctrl-C.
        let mut hup = signal(SignalKind::hangup())?;
        let mut events = node.events.subscribe();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let v: Value = serde_json::from_str(&ev).unwrap_or_default();
                        match fmt::up_event_line(&v) {
                            Some(l) if l.starts_with("warning:") => eprintln!("{l}"),
                            Some(l) => { say!("{l}"); }
                            None => {}
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        say!("Stopping...");
        node.shutdown().await.map_err(|e| anyhow!("{e}"))?;
        say!("Stopped cleanly.");
        Ok::<(), anyhow::Error>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_precedence(args: &[&str]) -> std::result::Result<Precedence, clap::Error> {
        let mut argv = vec!["vaarta", "send", "CONV", "text"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Send { precedence, .. } => Ok(precedence.into()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn durations_as_people_type_them() {
        assert_eq!(parse_duration("90s").unwrap(), 90_000);
        assert_eq!(parse_duration("90").unwrap(), 90_000);
        assert_eq!(parse_duration("2h 30m").unwrap(), 9_000_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000);
        assert_eq!(parse_duration("366d").unwrap(), 366 * 86_400_000);
        for bad in [
            "0",
            "0s",
            "500ms",
            "367d",
            "soon",
            "",
            "99999999999999999999",
            "-1s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_level_from_flags_then_rust_log_then_config() {
        assert_eq!(log_filter(0, 0, None, None), "warn");
        assert_eq!(log_filter(0, 0, None, Some("info")), "info");
        assert_eq!(
            log_filter(0, 0, Some("vaarta=debug"), Some("info")),
            "vaarta=debug"
        );
        assert_eq!(log_filter(0, 0, Some(" "), None), "warn");
        assert_eq!(log_filter(0, 1, Some("error"), Some("error")), "info");
        assert_eq!(log_filter(0, 2, None, None), "debug");
        assert_eq!(log_filter(0, 7, None, None), "trace");
        assert_eq!(log_filter(1, 0, Some("trace"), None), "error");
        assert_eq!(log_filter(2, 0, None, None), "off");
        let cli = Cli::try_parse_from(["vaarta", "-vv", "id"]).unwrap();
        assert_eq!((cli.quiet, cli.verbose), (0, 2));
        assert!(Cli::try_parse_from(["vaarta", "-q", "-v", "id"]).is_err());
    }

    #[test]
    fn colour_only_on_terminals_unless_told() {
        use ColorChoice::*;
        assert!(Auto.enabled(true, None, Some("xterm")));
        assert!(
            !Auto.enabled(false, None, Some("xterm")),
            "a pipe or a file"
        );
        assert!(!Auto.enabled(true, Some("1"), None), "NO_COLOR");
        assert!(
            Auto.enabled(true, Some(""), None),
            "an empty NO_COLOR is unset"
        );
        assert!(!Auto.enabled(true, None, Some("dumb")));
        assert!(Always.enabled(false, Some("1"), Some("dumb")));
        assert!(!Never.enabled(true, None, None));
    }

    /// Every argument and command has a help line, positionals included (they show in
    /// `--help`, the man page and the completions).
    #[test]
    fn every_argument_is_documented() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                if a.get_help().is_none() && !matches!(a.get_id().as_str(), "help" | "version") {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for s in c.get_subcommands() {
                if s.get_about().is_none() {
                    missing.push(format!("{path} {}", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&clap_command(), "vaarta", &mut missing);
        assert!(missing.is_empty(), "undocumented: {missing:?}");
        let help = clap_command().render_long_help().to_string();
        assert!(help.contains(&help_footer()), "{help}");
        let man = man_page().unwrap();
        for (code, short, _) in EXIT_STATUS {
            assert!(
                help.contains(&format!("{code} {short}")),
                "--help lacks {code}"
            );
            assert!(man.contains(&format!("\\fB{code}\\fR")), "man lacks {code}");
        }
        for (var, _) in ENVIRONMENT {
            assert!(help.contains(var), "--help lacks {var}");
            assert!(man.contains(&format!("\\fB{var}\\fR")), "man lacks {var}");
        }
        assert!(
            man.contains("\\fI~/.vaarta/vaarta.toml\\fR"),
            "man lacks vaarta.toml"
        );
    }

    #[test]
    fn precedence_is_a_value_enum_with_the_api_short_forms() {
        assert_eq!(send_precedence(&[]).unwrap(), Precedence::Routine);
        for p in Precedence::ALL {
            assert_eq!(send_precedence(&["--precedence", p.as_str()]).unwrap(), p);
        }
        assert_eq!(
            send_precedence(&["--precedence", "FLASH"]).unwrap(),
            Precedence::Flash
        );
        assert_eq!(
            send_precedence(&["--precedence", "o"]).unwrap(),
            Precedence::Immediate
        );
        let e = send_precedence(&["--precedence", "urgent"]).unwrap_err();
        let line = usage_error_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("error: invalid value 'urgent'"), "{line}");
        assert!(
            line.contains("[possible values: flash, immediate, priority, routine]"),
            "{line}"
        );
    }
}

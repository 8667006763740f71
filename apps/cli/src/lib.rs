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
pub mod demo;
pub mod fmt;
pub mod follow;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::error::ErrorKind;
use clap::{Parser, Subcommand, ValueEnum};
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
(same Wi-Fi/LAN), with no server. Start with `vaarta demo`, or `vaarta init --name NAME` then `vaarta up`."
)]
pub struct Cli {
    /// The node's home directory (identity, database, API token). Default: $VAARTA_HOME or ~/.vaarta
    #[arg(long, global = true, env = "VAARTA_HOME")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this device's identity (refuses to overwrite one)
    Init {
        /// Your name as others will see it
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run the node in the foreground until Ctrl-C / SIGTERM
    Up {
        /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/7447
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// A peer to keep connected (repeatable), e.g. /ip4/192.168.1.20/tcp/7447
        #[arg(long = "peer", value_name = "MULTIADDR")]
        peer: Vec<String>,
        /// Do not announce or look for peers with mDNS
        #[arg(long)]
        no_mdns: bool,
        /// Where the local API listens (loopback only)
        #[arg(long, default_value = "127.0.0.1:0")]
        api: String,
        /// Do not carry other conversations' envelopes for others
        #[arg(long)]
        no_relay: bool,
    },
    /// Show this device's id, name, safety number and listen addresses
    Id {
        #[arg(long)]
        json: bool,
    },
    /// Show connected and recently seen peers
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Create, list and manage conversations
    #[command(subcommand)]
    Conv(ConvCommand),
    /// Send a message; returns once it is durable on this device
    Send {
        /// Conversation id (or a unique prefix of it)
        conv: String,
        /// The message text (any language)
        text: String,
        /// How urgent it is: relays and links carry higher precedence first
        #[arg(long, value_enum, ignore_case = true, default_value_t = PrecedenceArg::Routine)]
        precedence: PrecedenceArg,
        /// Stop relaying after this long, e.g. 30m, 2h, 1d
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Reply to this message id
        #[arg(long, value_name = "MESSAGE")]
        reply_to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the messages of a conversation in order
    Log {
        conv: String,
        /// Keep printing as the conversation changes: new messages, edits, deletions and
        /// reactions, each on a line that says so (with --json: the message with a "change"
        /// field). Needs a running node; fails when the node stops
        #[arg(long)]
        follow: bool,
        /// How many of the newest messages (at start, with --follow)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run three nodes on this machine and show them talking, losing one and catching up
    Demo {
        /// Keep the nodes' homes (printed) instead of deleting them
        #[arg(long)]
        keep: bool,
    },
    /// Measure two nodes on loopback (throughput, latency, bytes) and print a table
    Bench {
        /// Messages for the throughput run
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Messages of history for the idle-reconnect measurement
        #[arg(long, default_value_t = 100_000)]
        history: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConvCommand {
    /// Create a conversation; prints its id
    Create {
        title: String,
        /// A member's device id (repeatable)
        #[arg(long = "member", value_name = "DEVICE_ID")]
        member: Vec<String>,
        /// Members added later read only what is written after they join
        #[arg(long)]
        history_from_join: bool,
        #[arg(long)]
        json: bool,
    },
    /// List conversations
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a conversation's members
    Show {
        conv: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a member by device id (their keys travel through the mesh)
    Add {
        conv: String,
        device: String,
        /// Make them an admin
        #[arg(long)]
        admin: bool,
    },
    /// Remove a member (the conversation key rotates)
    Remove { conv: String, device: String },
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

/// Parses 90s, 30m, 2h, 1d (or plain seconds).
pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("'{s}' is not a duration (use e.g. 90s, 30m, 2h, 1d)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("'{s}' is not a duration (use e.g. 90s, 30m, 2h, 1d)"),
    };
    Ok(n * mult)
}

/// How a command reaches the node.
#[derive(Debug)]
pub enum Conn {
    Online(Client),
    Offline(Home),
}

impl Conn {
    pub fn open(home: &Home) -> Result<Conn> {
        if !home.is_initialised() {
            bail!(
                "no identity in {}: run `vaarta init --name NAME` first",
                home.dir.display()
            );
        }
        if let Some((info, token)) = home.running_api() {
            let c = Client::new(&info.addr, &token);
            if let Ok(status) = c.request(Request::Status) {
                home.verify_api(&status).map_err(|e| anyhow!("{e}"))?;
                return Ok(Conn::Online(c));
            }
        }
        Ok(Conn::Offline(home.clone()))
    }

    pub fn request(&self, r: Request) -> Result<Value> {
        match self {
            Conn::Online(c) => c.request(r).map_err(|e| anyhow!(e.message)),
            Conn::Offline(h) => vaarta_node::execute_offline(h, r).map_err(|e| anyhow!(e.message)),
        }
    }

    pub fn online(&self) -> bool {
        matches!(self, Conn::Online(_))
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

fn print_json(v: &Value) -> Result<()> {
    emit(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Runs the CLI; returns the process exit code.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
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
            eprintln!("error: {msg}");
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
    let home = Home::resolve(cli.home.clone());
    match cli.command {
        Command::Init { name, json } => {
            let id = home.init(&name).map_err(|e| anyhow!("{e}"))?;
            let d = id.device_id();
            if json {
                print_json(
                    &serde_json::json!({"device_id": d.to_string(), "name": name.trim(), "safety_number": d.safety_number(), "home": home.dir}),
                )?;
            } else {
                out!(
                    "Created identity for {} in {}",
                    name.trim(),
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
            api,
            no_relay,
        } => up(&home, listen, peer, !no_mdns, &api, !no_relay),
        Command::Id { json } => {
            let conn = Conn::open(&home)?;
            let s = conn.request(Request::Status)?;
            if json {
                print_json(&s)?;
            } else {
                out!("name:          {}", s["name"].as_str().unwrap_or(""));
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
                    out!("warning:       {}", w.as_str().unwrap_or(""));
                }
            }
            Ok(())
        }
        Command::Peers { json } => {
            let conn = Conn::open(&home)?;
            let p = conn.request(Request::Peers)?;
            if json {
                print_json(&p)?;
            } else {
                emit_all(&fmt::peers_lines(&p, conn.online()))?;
            }
            Ok(())
        }
        Command::Conv(c) => conv(&home, c),
        Command::Send {
            conv,
            text,
            precedence,
            expires,
            reply_to,
            json,
        } => {
            let conn = Conn::open(&home)?;
            let expires_in_s = expires.as_deref().map(parse_duration).transpose()?;
            let r = conn.request(Request::Send {
                conversation: conv,
                messages: vec![OutgoingMessage {
                    body: text,
                    // The API's wire form; it parses the string (one parser, in the API).
                    precedence: Some(Precedence::from(precedence).as_str().to_string()),
                    expires_in_s,
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
        Command::Log {
            conv,
            follow,
            limit,
            json,
        } => log(&home, conv, follow, limit, json),
        Command::Demo { keep } => demo::run(keep),
        Command::Bench {
            messages,
            history,
            json,
        } => bench::run(messages, history, json),
    }
}

fn conv(home: &Home, c: ConvCommand) -> Result<()> {
    let conn = Conn::open(home)?;
    match c {
        ConvCommand::Create {
            title,
            member,
            history_from_join,
            json,
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
        ConvCommand::List { json } => {
            let r = conn.request(Request::Conversations)?;
            if json {
                print_json(&r)?;
            } else {
                emit_all(&fmt::conversations_lines(&r))?;
            }
        }
        ConvCommand::Show { conv, json } => {
            let r = conn.request(Request::Conversation { conversation: conv })?;
            if json {
                print_json(&r)?;
            } else {
                emit_all(&fmt::conversation_lines(&r))?;
            }
        }
        ConvCommand::Add {
            conv,
            device,
            admin,
        } => {
            conn.request(Request::AddMember {
                conversation: conv,
                device: device.clone(),
                admin,
            })?;
            out!(
                "added {device}{}; their keys travel to them through the mesh",
                if admin { " as admin" } else { "" }
            );
        }
        ConvCommand::Remove { conv, device } => {
            conn.request(Request::RemoveMember {
                conversation: conv,
                device: device.clone(),
            })?;
            out!("removed {device}; the conversation key was rotated");
        }
    }
    Ok(())
}

fn log(home: &Home, conv: String, follow: bool, limit: usize, json: bool) -> Result<()> {
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
    })?;
    for m in msgs.as_array().into_iter().flatten() {
        if json {
            emit(&serde_json::to_string(m).unwrap_or_default())?;
        } else {
            emit(&fmt::message_line(m, &authors))?;
        }
    }
    Ok(())
}

fn up(
    home: &Home,
    listen: Vec<String>,
    peers: Vec<String>,
    mdns: bool,
    api: &str,
    relay: bool,
) -> Result<()> {
    use vaarta_node::{Node, Options};
    let mut opts = Options {
        mdns,
        relay,
        ..Options::default()
    };
    if !listen.is_empty() {
        opts.listen = listen
            .iter()
            .map(|l| l.parse().map_err(|e| anyhow!("--listen {l}: {e}")))
            .collect::<Result<_>>()?;
    }
    opts.peers = peers
        .iter()
        .map(|p| p.parse().map_err(|e| anyhow!("--peer {p}: {e}")))
        .collect::<Result<_>>()?;
    opts.api = api.parse().map_err(|e| anyhow!("--api {api}: {e}"))?;
    if !opts.api.ip().is_loopback() {
        bail!("--api must be a loopback address (the API is for apps on this device)");
    }
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
        say!("Press Ctrl-C to stop.");
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        // A closed terminal (SIGHUP) stops the node as cleanly as Ctrl-C.
        let mut hup = signal(SignalKind::hangup())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
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

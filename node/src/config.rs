//! `vaarta.toml`: the node's settings kept in its home, so `--peer` and the rest need not be
//! retyped at every `vaarta up`.
//!
//! ```toml
//! listen = ["/ip4/0.0.0.0/tcp/7447"]
//! peers = ["/ip4/192.168.1.20/tcp/7447"]
//! mdns = true
//! relay = true
//! api = "127.0.0.1:7450"
//! log_level = "info"
//! ble = false           # Bluetooth LE links (a build with `--features ble`)
//! ble_l2cap = true      # false: GATT only
//! ble_adapter = "hci0"  # default: BlueZ's default adapter
//! ```
//!
//! Every setting is optional. Precedence, highest first: a command-line flag, an environment
//! variable (`VAARTA_LISTEN`, `VAARTA_PEERS` (comma- or space-separated), `VAARTA_MDNS`,
//! `VAARTA_RELAY`, `VAARTA_BLE`, `VAARTA_BLE_L2CAP` (true/false, 1/0, yes/no, on/off), `VAARTA_API`, `VAARTA_BLE_ADAPTER`, and `RUST_LOG` for the log
//! level), the file, the default. A flag or variable replaces a list, it does not add to it.
//! An unknown key, a value of the wrong type or a bad address is an error that names the
//! file, the line and the column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;
use vaarta_mesh::libp2p::Multiaddr;

use crate::Options;

/// The file's name in the home.
pub const FILE_NAME: &str = "vaarta.toml";

/// The log levels a file may name (a finer filter goes in `RUST_LOG`).
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The file as written (every key optional, unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Vec<Spanned<String>>>,
    peers: Option<Vec<Spanned<String>>>,
    mdns: Option<bool>,
    relay: Option<bool>,
    api: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    ble: Option<bool>,
    ble_l2cap: Option<bool>,
    ble_adapter: Option<Spanned<String>>,
}

/// A bad configuration: one line naming the file (and line and column) or the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::File => f.write_str("file"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub from: Source,
}

/// What `vaarta up` was told on its command line (empty / `None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    /// `--mdns` (`Some(true)`) or `--no-mdns` (`Some(false)`).
    pub mdns: Option<bool>,
    /// `--relay` or `--no-relay`.
    pub relay: Option<bool>,
    pub api: Option<String>,
    /// The level `-q`/`-v` asked for.
    pub log_level: Option<String>,
    /// `--ble` / `--no-ble`.
    pub ble: Option<bool>,
    /// `--ble-no-l2cap` (`Some(false)`).
    pub ble_l2cap: Option<bool>,
    /// `--ble-adapter`.
    pub ble_adapter: Option<String>,
}

/// The settings in force, each with its source.
#[derive(Debug, Clone)]
pub struct Effective {
    pub file: PathBuf,
    pub file_found: bool,
    pub listen: Setting<Vec<Multiaddr>>,
    pub peers: Setting<Vec<Multiaddr>>,
    pub mdns: Setting<bool>,
    pub relay: Setting<bool>,
    pub api: Setting<SocketAddr>,
    pub log_level: Setting<String>,
    pub ble: Setting<bool>,
    pub ble_l2cap: Setting<bool>,
    /// Empty: BlueZ's default adapter.
    pub ble_adapter: Setting<String>,
}

/// Line and column (from 1) of byte `at` of `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_addr(s: &str) -> Result<Multiaddr, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("'{s}' is not a multiaddr ({e}), e.g. /ip4/192.168.1.20/tcp/7447"))
}

fn parse_api(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s
        .trim()
        .parse()
        .map_err(|e| format!("'{s}' is not an address ({e}), e.g. 127.0.0.1:7450"))?;
    if !a.ip().is_loopback() {
        return Err(format!(
            "'{s}' is not a loopback address (the API is for apps on this device)"
        ));
    }
    Ok(a)
}

fn parse_level(s: &str) -> Result<String, String> {
    let l = s.trim().to_ascii_lowercase();
    if LOG_LEVELS.contains(&l.as_str()) {
        Ok(l)
    } else {
        Err(format!(
            "'{s}' is not a log level (one of {}; a finer filter goes in RUST_LOG)",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// Splits a list variable on commas and white space.
fn list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

impl Effective {
    /// The settings for a home's directory, the flags given and an environment (`env`
    /// returns a variable's value; [`Effective::load`] uses the process's).
    pub fn resolve(
        home_dir: &Path,
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Effective, ConfigError> {
        let path = home_dir.join(FILE_NAME);
        let (text, found) = match std::fs::read_to_string(&path) {
            Ok(t) => (t, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), false),
            Err(e) => return Err(ConfigError(format!("{}: {e}", path.display()))),
        };
        let shown = path.display().to_string();
        let at = |span: std::ops::Range<usize>, msg: &str| {
            let (l, c) = line_col(&text, span.start);
            ConfigError(format!("{shown}:{l}:{c}: {msg}"))
        };
        let file: File = toml::from_str(&text).map_err(|e| match e.span() {
            Some(span) => at(span, e.message().trim()),
            None => ConfigError(format!("{shown}: {}", e.message().trim())),
        })?;
        let env_of = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
        let bad_env = |name: &str, msg: String| ConfigError(format!("${name}: {msg}"));

        // A list: the flag's, the variable's, the file's or the default.
        let addrs = |flag: &[String],
                     var: &'static str,
                     file: &Option<Vec<Spanned<String>>>,
                     what: &str,
                     default: Vec<Multiaddr>|
         -> Result<Setting<Vec<Multiaddr>>, ConfigError> {
            if !flag.is_empty() {
                let value = flag
                    .iter()
                    .map(|s| parse_addr(s).map_err(|m| ConfigError(format!("--{what}: {m}"))))
                    .collect::<Result<_, _>>()?;
                return Ok(Setting {
                    value,
                    from: Source::Flag,
                });
            }
            if let Some(v) = env_of(var) {
                let value = list(&v)
                    .iter()
                    .map(|s| parse_addr(s).map_err(|m| bad_env(var, m)))
                    .collect::<Result<_, _>>()?;
                return Ok(Setting {
                    value,
                    from: Source::Env(var),
                });
            }
            if let Some(items) = file {
                let value = items
                    .iter()
                    .map(|s| parse_addr(s.get_ref()).map_err(|m| at(s.span(), &m)))
                    .collect::<Result<_, _>>()?;
                return Ok(Setting {
                    value,
                    from: Source::File,
                });
            }
            Ok(Setting {
                value: default,
                from: Source::Default,
            })
        };
        let defaults = Options::default();
        let listen = addrs(
            &flags.listen,
            "VAARTA_LISTEN",
            &file.listen,
            "listen",
            defaults.listen.clone(),
        )?;
        let peers = addrs(
            &flags.peers,
            "VAARTA_PEERS",
            &file.peers,
            "peer",
            Vec::new(),
        )?;
        let switch = |flag: Option<bool>,
                      var: &'static str,
                      file: Option<bool>,
                      default: bool|
         -> Result<Setting<bool>, ConfigError> {
            if let Some(value) = flag {
                return Ok(Setting {
                    value,
                    from: Source::Flag,
                });
            }
            if let Some(v) = env_of(var) {
                let value = parse_bool(&v).ok_or_else(|| {
                    bad_env(
                        var,
                        format!("'{v}' is not true or false (1/0, yes/no, on/off)"),
                    )
                })?;
                return Ok(Setting {
                    value,
                    from: Source::Env(var),
                });
            }
            Ok(match file {
                Some(value) => Setting {
                    value,
                    from: Source::File,
                },
                None => Setting {
                    value: default,
                    from: Source::Default,
                },
            })
        };
        let mdns = switch(flags.mdns, "VAARTA_MDNS", file.mdns, defaults.mdns)?;
        let relay = switch(flags.relay, "VAARTA_RELAY", file.relay, defaults.relay)?;
        let ble = switch(flags.ble, "VAARTA_BLE", file.ble, false)?;
        let ble_l2cap = switch(flags.ble_l2cap, "VAARTA_BLE_L2CAP", file.ble_l2cap, true)?;
        let ble_adapter = if let Some(a) = &flags.ble_adapter {
            Setting {
                value: a.trim().to_string(),
                from: Source::Flag,
            }
        } else if let Some(v) = env_of("VAARTA_BLE_ADAPTER") {
            Setting {
                value: v.trim().to_string(),
                from: Source::Env("VAARTA_BLE_ADAPTER"),
            }
        } else if let Some(s) = &file.ble_adapter {
            Setting {
                value: s.get_ref().trim().to_string(),
                from: Source::File,
            }
        } else {
            Setting {
                value: String::new(),
                from: Source::Default,
            }
        };
        let api = if let Some(a) = &flags.api {
            Setting {
                value: parse_api(a).map_err(|m| ConfigError(format!("--api: {m}")))?,
                from: Source::Flag,
            }
        } else if let Some(v) = env_of("VAARTA_API") {
            Setting {
                value: parse_api(&v).map_err(|m| bad_env("VAARTA_API", m))?,
                from: Source::Env("VAARTA_API"),
            }
        } else if let Some(s) = &file.api {
            Setting {
                value: parse_api(s.get_ref()).map_err(|m| at(s.span(), &m))?,
                from: Source::File,
            }
        } else {
            Setting {
                value: defaults.api,
                from: Source::Default,
            }
        };
        let log_level = if let Some(l) = &flags.log_level {
            Setting {
                value: l.clone(),
                from: Source::Flag,
            }
        } else if let Some(v) = env_of("RUST_LOG") {
            Setting {
                value: v,
                from: Source::Env("RUST_LOG"),
            }
        } else if let Some(s) = &file.log_level {
            Setting {
                value: parse_level(s.get_ref()).map_err(|m| at(s.span(), &m))?,
                from: Source::File,
            }
        } else {
            Setting {
                value: "warn".into(),
                from: Source::Default,
            }
        };
        Ok(Effective {
            file: path,
            file_found: found,
            listen,
            peers,
            mdns,
            relay,
            api,
            log_level,
            ble,
            ble_l2cap,
            ble_adapter,
        })
    }

    /// [`Effective::resolve`] with the process's environment.
    pub fn load(home_dir: &Path, flags: &Flags) -> Result<Effective, ConfigError> {
        Self::resolve(home_dir, flags, &|k| std::env::var(k).ok())
    }

    /// The node's options from these settings.
    pub fn options(&self) -> Options {
        Options {
            listen: self.listen.value.clone(),
            peers: self.peers.value.clone(),
            mdns: self.mdns.value,
            relay: self.relay.value,
            api: self.api.value,
            ble: self.ble.value.then(|| crate::BleOptions {
                adapter: Some(self.ble_adapter.value.clone()).filter(|a| !a.is_empty()),
                l2cap: self.ble_l2cap.value,
            }),
            ..Options::default()
        }
    }

    /// As `vaarta config --json` prints it.
    pub fn to_json(&self) -> Value {
        let s = |v: Value, from: Source| json!({"value": v, "from": from.to_string()});
        let strs =
            |v: &[Multiaddr]| Value::from(v.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        json!({
            "file": self.file,
            "file_found": self.file_found,
            "settings": {
                "listen": s(strs(&self.listen.value), self.listen.from),
                "peers": s(strs(&self.peers.value), self.peers.from),
                "mdns": s(self.mdns.value.into(), self.mdns.from),
                "relay": s(self.relay.value.into(), self.relay.from),
                "api": s(self.api.value.to_string().into(), self.api.from),
                "log_level": s(self.log_level.value.clone().into(), self.log_level.from),
                "ble": s(self.ble.value.into(), self.ble.from),
                "ble_l2cap": s(self.ble_l2cap.value.into(), self.ble_l2cap.from),
                "ble_adapter": s(self.ble_adapter.value.clone().into(), self.ble_adapter.from),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str, flags: &Flags, env: &[(&str, &str)]) -> Result<Effective, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Effective::resolve(dir.path(), flags, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    const FILE: &str = "listen = [\"/ip4/0.0.0.0/tcp/7447\"]\npeers = [\"/ip4/10.0.0.2/tcp/7447\", \"/ip4/10.0.0.3/tcp/7447\"]\nmdns = false\napi = \"127.0.0.1:7450\"\nlog_level = \"info\"\n";

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let e = with(FILE, &Flags::default(), &[]).unwrap();
        assert!(e.file_found);
        assert_eq!(e.peers.from, Source::File);
        assert_eq!(e.peers.value.len(), 2);
        assert_eq!((e.mdns.value, e.mdns.from), (false, Source::File));
        assert_eq!((e.relay.value, e.relay.from), (true, Source::Default));
        assert_eq!(e.api.value.to_string(), "127.0.0.1:7450");
        assert_eq!(e.log_level.value, "info");
        let env = [
            (
                "VAARTA_PEERS",
                "/ip4/10.0.0.9/tcp/1, /ip4/10.0.0.8/tcp/1 /ip4/10.0.0.7/tcp/1",
            ),
            ("VAARTA_MDNS", "yes"),
            ("RUST_LOG", "vaarta=debug"),
            ("VAARTA_API", ""),
        ];
        let e = with(FILE, &Flags::default(), &env).unwrap();
        assert_eq!(e.peers.value.len(), 3);
        assert_eq!(e.peers.from, Source::Env("VAARTA_PEERS"));
        assert_eq!(
            (e.mdns.value, e.mdns.from),
            (true, Source::Env("VAARTA_MDNS"))
        );
        assert_eq!(e.log_level.value, "vaarta=debug");
        assert_eq!(e.api.from, Source::File, "an empty variable is unset");
        let flags = Flags {
            peers: vec!["/ip4/10.0.0.1/tcp/2".into()],
            mdns: Some(false),
            api: Some("[::1]:9".into()),
            log_level: Some("trace".into()),
            ..Flags::default()
        };
        let e = with(FILE, &flags, &env).unwrap();
        assert_eq!(
            e.peers.value,
            vec!["/ip4/10.0.0.1/tcp/2".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!((e.mdns.value, e.mdns.from), (false, Source::Flag));
        assert_eq!(e.api.value.to_string(), "[::1]:9");
        assert_eq!(e.log_level.from, Source::Flag);
        // --relay switches on what the file switched off.
        let on = with(
            "relay = false\n",
            &Flags {
                relay: Some(true),
                ..Flags::default()
            },
            &[("VAARTA_RELAY", "0")],
        )
        .unwrap();
        assert_eq!((on.relay.value, on.relay.from), (true, Source::Flag));
        let o = e.options();
        assert_eq!(o.peers.len(), 1);
        assert!(!o.mdns && o.relay && o.publish_api);
        let dir = tempfile::tempdir().unwrap();
        let e = Effective::resolve(dir.path(), &Flags::default(), &|_| None).unwrap();
        assert!(!e.file_found);
        assert_eq!(e.listen.value, Options::default().listen);
        assert_eq!(
            e.to_json()["settings"]["mdns"],
            json!({"value": true, "from": "default"})
        );
    }

    #[test]
    fn a_bad_file_names_the_file_line_and_column() {
        let cases = [
            (
                "mdns = true\npeers = [\"/ip4/1.2.3.4/tcp/1\", \"nonsense\"]\n",
                ":2:32: 'nonsense' is not a multiaddr",
            ),
            ("mdns = \"maybe\"\n", ":1:8: invalid type"),
            ("peer = []\n", ":1:1: unknown field `peer`"),
            (
                "api = \"0.0.0.0:1\"\n",
                ":1:7: '0.0.0.0:1' is not a loopback address",
            ),
            (
                "\n\nlog_level = \"loud\"\n",
                ":3:13: 'loud' is not a log level",
            ),
            ("listen = [\n", ":1:11: unclosed array"),
        ];
        for (text, want) in cases {
            let e = with(text, &Flags::default(), &[]).unwrap_err().0;
            assert!(e.contains(FILE_NAME), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = with("", &Flags::default(), &[("VAARTA_RELAY", "sometimes")])
            .unwrap_err()
            .0;
        assert!(e.starts_with("$VAARTA_RELAY: 'sometimes'"), "{e}");
        let flags = Flags {
            listen: vec!["tcp:7447".into()],
            ..Flags::default()
        };
        let e = with("", &flags, &[]).unwrap_err().0;
        assert!(
            e.starts_with("--listen: 'tcp:7447' is not a multiaddr"),
            "{e}"
        );
    }

    #[test]
    fn bluetooth_settings_come_from_flags_env_and_file() {
        let e = with("", &Flags::default(), &[]).unwrap();
        assert_eq!(e.options().ble, None, "off by default");
        let text = "ble = true\nble_l2cap = false\nble_adapter = \"hci1\"\n";
        let e = with(text, &Flags::default(), &[]).unwrap();
        assert_eq!(
            e.options().ble,
            Some(crate::BleOptions {
                adapter: Some("hci1".into()),
                l2cap: false
            })
        );
        assert_eq!(
            e.to_json()["settings"]["ble_l2cap"],
            json!({"value": false, "from": "file"})
        );
        let env = [("VAARTA_BLE_ADAPTER", "hci0"), ("VAARTA_BLE_L2CAP", "on")];
        let e = with(text, &Flags::default(), &env).unwrap();
        assert_eq!(
            e.options().ble,
            Some(crate::BleOptions {
                adapter: Some("hci0".into()),
                l2cap: true
            })
        );
        let flags = Flags {
            ble: Some(false),
            ..Flags::default()
        };
        assert_eq!(with(text, &flags, &env).unwrap().options().ble, None);
        let flags = Flags {
            ble_l2cap: Some(false),
            ..Flags::default()
        };
        let e = with("", &flags, &[("VAARTA_BLE", "1")]).unwrap();
        assert_eq!(
            e.options().ble,
            Some(crate::BleOptions {
                adapter: None,
                l2cap: false
            })
        );
        let e = with("ble = \"yes\"\n", &Flags::default(), &[])
            .unwrap_err()
            .0;
        assert!(e.contains(":1:7: invalid type"), "{e}");
    }
}

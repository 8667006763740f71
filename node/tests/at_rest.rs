//! The home as another local user or a thief would see it (issue 9 item 18): write messages
//! with a known marker, then scan every file under the home for the marker bytes, the title,
//! the conversation secret and the epoch keys.

use std::path::{Path, PathBuf};

use vaarta_node::at_rest::Passphrase;
use vaarta_node::{Home, Offline, Request, api::OutgoingMessage, open_engine};
use vaarta_sync::store::Store;

const BODY: &str = "BODYMARKER-7f3a";
const TITLE: &str = "TITLEMARKER-91c2";

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn found_in(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Creates a conversation and writes 300 messages (more than one page, so a page is saved
/// whole as well as journalled). Returns the secrets the store holds: the conversation
/// secret and every epoch key.
fn write_marked(home: &Home) -> Vec<Vec<u8>> {
    home.init("device-one").unwrap();
    // One engine for every request: a home opened again in the same process may find
    // sled's lock still held (see `vaarta_node::Offline`).
    let mut offline = Offline::open(home).unwrap();
    let created = offline
        .execute(Request::CreateConversation {
            title: TITLE.into(),
            members: vec![],
            history_from_join: false,
        })
        .unwrap();
    let conv = created["id"].as_str().unwrap().to_string();
    for batch in 0..6 {
        let messages = (0..50)
            .map(|i| OutgoingMessage {
                body: format!("{BODY} {batch} {i}"),
                precedence: None,
                expires_in_ms: None,
                removed_expires_in_s: None,
                reply_to: None,
            })
            .collect();
        offline
            .execute(Request::Send {
                conversation: conv.clone(),
                messages,
            })
            .unwrap();
    }
    // The secrets, read back through the store (which unseals them).
    let store = offline.engine().replica().store();
    let mut secrets = Vec::new();
    for prefix in [&b"c/"[..], &b"k/"[..]] {
        store
            .scan_prefix(prefix, &mut |_, v| {
                secrets.push(v[..32].to_vec());
                true
            })
            .unwrap();
    }
    assert!(secrets.len() >= 2, "a conversation secret and an epoch key");
    // And the messages are all there.
    let shown = offline
        .execute(Request::Messages {
            conversation: conv,
            limit: 1000,
            from_page: None,
            before: None,
        })
        .unwrap();
    assert_eq!(shown.as_array().map(|a| a.len()), Some(300), "{shown}");
    secrets
}

#[test]
fn the_database_files_reveal_no_message_title_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    let secrets = write_marked(&home);
    let db = home.db_path();
    assert!(!files(&db).is_empty());
    assert_eq!(found_in(&db, BODY.as_bytes()), Vec::<PathBuf>::new());
    assert_eq!(found_in(&db, TITLE.as_bytes()), Vec::<PathBuf>::new());
    for s in &secrets {
        assert_eq!(found_in(&db, s), Vec::<PathBuf>::new());
    }
    // The check itself can fail: the marker is found where it is in the clear.
    std::fs::write(db.join("probe"), BODY).unwrap();
    assert_eq!(found_in(&db, BODY.as_bytes()).len(), 1);
}

#[test]
fn with_a_passphrase_the_whole_home_reveals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home")).with_passphrase(Passphrase::new("tiger lily"));
    let secrets = write_marked(&home);
    let seed_hex_len = 64;
    let key = std::fs::read_to_string(home.key_path()).unwrap();
    assert!(key.len() > seed_hex_len, "the identity key is wrapped");
    for needle in [BODY.as_bytes(), TITLE.as_bytes()] {
        assert_eq!(found_in(&home.dir, needle), Vec::<PathBuf>::new());
    }
    for s in &secrets {
        assert_eq!(found_in(&home.dir, s), Vec::<PathBuf>::new());
    }
    // Without the passphrase, or with another, nothing opens; with it, everything does.
    let bare = Home::new(home.dir.clone());
    let e = bare.load().unwrap_err().to_string();
    assert!(e.contains("passphrase"), "{e}");
    let wrong = Home::new(home.dir.clone()).with_passphrase(Passphrase::new("tiger lilly"));
    let e = wrong.load().unwrap_err().to_string();
    assert!(e.contains("wrong passphrase"), "{e}");
    assert!(home.load().is_ok());
}

#[cfg(unix)]
#[test]
fn the_home_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    write_marked(&home);
    // Opened once more: the database's files are fixed at every open (once the first
    // open's sled has let go of its lock, see `vaarta_node::Offline`).
    std::fs::File::open(home.db_path().join("db"))
        .unwrap()
        .lock()
        .unwrap();
    drop(open_engine(&home, |_| {}).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.dir), 0o700);
    for f in files(&home.dir) {
        assert_eq!(mode(&f) & 0o077, 0, "{} is {:o}", f.display(), mode(&f));
    }
    // A home made 0755 by hand (or by an older version) is made private again.
    std::fs::set_permissions(&home.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(home.info_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    home.load().unwrap();
    assert_eq!(mode(&home.dir), 0o700);
    assert_eq!(mode(&home.info_path()), 0o600);
}

//! The organisation credentials a home holds, read when the engine opens
//! (docs/organisations.md): `<home>/credentials/root` (the pinned root, written by
//! `vaarta org enrol`), `<home>/credentials/chain` (this device's chain) and every file in
//! `<home>/credentials/revocations/` (revocations and wipe orders the user took in or the
//! node learnt from peers, text or raw).
//!
//! A file that cannot be read or does not verify is reported and left out; the node starts
//! anyway (with fewer credentials, never with a forged one).

use std::path::{Path, PathBuf};

use vaarta_engine::Credentials;
use vaarta_sync::org::{
    Chain, Judge, OrgRoot, Record, Revocation, WipeOrder, armor, dearmor, kind_of,
};

/// `<home>/credentials`.
pub fn dir(home: &Path) -> PathBuf {
    home.join("credentials")
}

/// A record file's bytes: its text form (`VORG1:`…) or the raw record.
pub fn read_record_bytes(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match std::str::from_utf8(&bytes) {
        Ok(t) if t.trim_start().to_ascii_uppercase().starts_with("VORG1:") => dearmor(t)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        _ => Ok(Some(bytes)),
    }
}

/// The home's pinned root, if any.
pub fn pinned_root(home: &Path) -> Result<Option<OrgRoot>, String> {
    let p = dir(home).join("root");
    read_record_bytes(&p)?
        .map(|b| OrgRoot::decode(&b).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()
}

/// A chain (bundle) file.
pub fn read_chain(path: &Path) -> Result<Option<Chain>, String> {
    read_record_bytes(path)?
        .map(|b| {
            Chain::decode(&b)
                .map_err(|e| format!("{}: not a credential bundle: {e}", path.display()))
        })
        .transpose()
}

/// Saves revocations learnt from peers in `<dir>/revocations/`, one text file each named by
/// its hash (so the same revocation is one file, however often it arrives), written to a
/// temporary name, synced and renamed into place. They are held by the engine already; the
/// files make them survive a restart.
pub fn save_revocations(dir: &Path, records: &[Vec<u8>]) -> Result<(), String> {
    save_records(&dir.join("revocations"), "revocation", records)
}

/// Saves directory records (chains, role assignments) learnt from peers or taken in by the
/// user in `<dir>/directory/`, like [`save_revocations`]; read again at start and verified
/// again then.
pub fn save_directory(dir: &Path, records: &[Vec<u8>]) -> Result<(), String> {
    save_records(&dir.join("directory"), "record", records)
}

fn save_records(rdir: &Path, ext: &str, records: &[Vec<u8>]) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(rdir).map_err(|e| format!("cannot create {}: {e}", rdir.display()))?;
    for r in records {
        let name = blake3::hash(r).to_hex();
        let path = rdir.join(format!("{}.{ext}", &name[..32]));
        if path.exists() {
            continue;
        }
        let tmp = rdir.join(format!(".{}.tmp", &name[..32]));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{}\n", armor(r)).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(rdir)?.sync_all()
        };
        write().map_err(|e| format!("cannot save {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The files of `rdir` but temporary ones, sorted (none if it does not exist).
fn files_in(rdir: &Path, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(rdir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warnings.push(format!("cannot read {}: {e}", rdir.display()));
            Vec::new()
        }
    };
    files.sort();
    files
}

/// Everything the home holds, and a warning for each file left out.
pub fn load(home: &Path) -> (Credentials, Vec<String>) {
    let mut warnings = Vec::new();
    let mut c = Credentials::default();
    match pinned_root(home) {
        Ok(Some(root)) => c.pinned.push(root.org),
        Ok(None) => {}
        Err(e) => warnings.push(format!("organisation root left out: {e}")),
    }
    match read_chain(&dir(home).join("chain")) {
        Ok(own) => c.own = own,
        Err(e) => warnings.push(format!("this device's credentials left out: {e}")),
    }
    let files = files_in(&dir(home).join("revocations"), &mut warnings);
    for f in files {
        let r = read_record_bytes(&f).and_then(|b| {
            let b = b.ok_or_else(|| format!("{} is gone", f.display()))?;
            if kind_of(&b) == Some(WipeOrder::KIND) {
                // A wipe order: the engine judges it (and takes in the revocation it
                // implies) when the credentials are set.
                let o = WipeOrder::decode(&b).map_err(|e| format!("{}: {e}", f.display()))?;
                c.wipes.entry(o.device()).or_insert(o);
                return Ok(true);
            }
            let r = Revocation::decode(&b).map_err(|e| format!("{}: {e}", f.display()))?;
            c.revocations
                .insert(r)
                .map_err(|e| format!("{}: {e}", f.display()))
        });
        if let Err(e) = r {
            warnings.push(format!("revocation left out: {e}"));
        }
    }
    // The directory, verified again against the roots and revocations just read (the
    // engine judges every query again as time passes); this device's own chain first.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let own = c.own.as_ref().map(|ch| ch.encode());
    let mut records: Vec<(Option<PathBuf>, Vec<u8>)> = own.into_iter().map(|o| (None, o)).collect();
    for f in files_in(&dir(home).join("directory"), &mut warnings) {
        match read_record_bytes(&f) {
            Ok(Some(b)) => records.push((Some(f), b)),
            Ok(None) => {}
            Err(e) => warnings.push(format!("directory record left out: {e}")),
        }
    }
    for (f, b) in records {
        let j = Judge {
            pinned: &c.pinned,
            revocations: &c.revocations,
            now,
            skew: Credentials::SKEW_MS,
        };
        if let (Err(e), Some(f)) = (c.directory.insert(&b, &j), f) {
            warnings.push(format!("directory record left out: {}: {e}", f.display()));
        }
    }
    (c, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaarta_engine::testing::{T0, TestOrg};

    #[test]
    fn a_home_with_credentials_loads_them_and_bad_files_are_left_out_with_a_warning() {
        let home = tempfile::tempdir().unwrap();
        let d = dir(home.path());
        std::fs::create_dir_all(d.join("revocations")).unwrap();
        let org = TestOrg::new(100, "DEOC Puri");
        let chain = org.enrol(0, "Anita Das", "Tehsildar", "puri");
        std::fs::write(d.join("root"), armor(&chain.root.encode())).unwrap();
        std::fs::write(d.join("chain"), format!("{}\n", armor(&chain.encode()))).unwrap();
        // One revocation as text, one raw, one garbage.
        let r1 = org.revoke_node(5, T0);
        let r2 = org.revoke_node(6, T0);
        std::fs::write(d.join("revocations/a"), armor(&r1.encode())).unwrap();
        std::fs::write(d.join("revocations/b"), r2.encode()).unwrap();
        std::fs::write(d.join("revocations/c"), b"not a revocation").unwrap();
        let (c, warnings) = load(home.path());
        assert_eq!(c.pinned, vec![org.id()]);
        assert_eq!(c.own, Some(chain));
        assert_eq!(c.revocations.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("revocations/c"), "{warnings:?}");
        // A corrupt chain is left out, the rest kept.
        std::fs::write(d.join("chain"), "VORG1:AAAA").unwrap();
        let (c, warnings) = load(home.path());
        assert_eq!(c.own, None);
        assert_eq!(c.pinned, vec![org.id()]);
        assert!(warnings.iter().any(|w| w.contains("credentials left out")));
    }

    #[test]
    fn revocations_learnt_are_saved_once_and_load_again() {
        let home = tempfile::tempdir().unwrap();
        let org = TestOrg::new(100, "DEOC Puri");
        let rs: Vec<Vec<u8>> = (5..8).map(|n| org.revoke_node(n, T0).encode()).collect();
        save_revocations(&dir(home.path()), &rs).unwrap();
        save_revocations(&dir(home.path()), &rs[..1]).unwrap();
        let files = std::fs::read_dir(dir(home.path()).join("revocations"))
            .unwrap()
            .count();
        assert_eq!(files, 3, "one file per revocation, no temporary left");
        let (c, warnings) = load(home.path());
        assert_eq!(c.revocations.len(), 3);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_wipe_order_learnt_is_saved_and_loads_as_a_wipe_order() {
        let home = tempfile::tempdir().unwrap();
        let org = TestOrg::new(100, "DEOC Puri");
        let order = org.wipe_node(5, T0);
        save_revocations(&dir(home.path()), &[order.encode()]).unwrap();
        let (c, warnings) = load(home.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.wipes.get(&order.device()), Some(&order));
    }

    #[test]
    fn directory_records_are_saved_once_load_again_verified_and_bad_ones_are_reported() {
        let home = tempfile::tempdir().unwrap();
        let d = dir(home.path());
        std::fs::create_dir_all(&d).unwrap();
        let org = TestOrg::new(100, "DEOC Puri");
        let chain = org.enrol(0, "Anita Das", "Tehsildar", "puri");
        std::fs::write(d.join("root"), armor(&chain.root.encode())).unwrap();
        std::fs::write(d.join("chain"), armor(&chain.encode())).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let role = org.assign(0, "puri", "tehsildar", "Tehsildar Puri", now - 1);
        let other = org.enrol(1, "Bhavesh Rao", "SI", "puri").encode();
        let records = vec![role.encode(), other.clone()];
        save_directory(&d, &records).unwrap();
        save_directory(&d, &records[..1]).unwrap();
        assert_eq!(std::fs::read_dir(d.join("directory")).unwrap().count(), 2);
        // Another organisation's assignment (not verifiable here) is left out with a warning.
        let stranger = TestOrg::new(120, "Elsewhere").assign(3, "x", "lead", "Lead", now - 1);
        save_directory(&d, &[stranger.encode()]).unwrap();
        let (c, warnings) = load(home.path());
        assert_eq!(c.directory.len(), 3, "own chain, the other chain, the role");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("directory record left out"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_home_without_credentials_has_none_and_no_warning() {
        let home = tempfile::tempdir().unwrap();
        let (c, warnings) = load(home.path());
        assert!(c.own.is_none() && c.pinned.is_empty() && c.revocations.is_empty());
        assert!(warnings.is_empty());
    }
}

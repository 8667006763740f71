//! `vaarta org` as an organisation uses it, with real processes: create the organisation,
//! certify a registrar, issue two devices for one person, enrol each in its own home, show,
//! revoke one. Everything checked through `--json`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use vaarta_tests::{Node, bin};

/// Runs `vaarta --home HOME ARGS`.
fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("VAARTA_PASSPHRASE")
        .output()
        .expect("run vaarta")
}

fn ok_json(home: &Path, args: &[&str]) -> Value {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "`vaarta {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn fails(home: &Path, args: &[&str], says: &str) -> Output {
    let out = run(home, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "`vaarta {}` should fail",
        args.join(" ")
    );
    assert!(err.contains(says), "`vaarta {}`: {err}", args.join(" "));
    assert!(!err.contains("panicked"), "{err}");
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn organisation_walkthrough_create_registrar_issue_enrol_show_revoke_cross() {
    let office = tempfile::tempdir().unwrap();
    let o = office.path();
    let nohome = o.join("no-home");
    let path = |n: &str| o.join(n).to_string_lossy().to_string();
    let (root_key, reg_key) = (path("root.key"), path("reg.key"));
    let phone = Node::init("Anita-phone");
    let laptop = Node::init("Anita-laptop");

    // The root key, on the office laptop (no device home involved).
    let org = ok_json(
        &nohome,
        &[
            "org",
            "create",
            "--name",
            "बिहार पुलिस",
            "--out",
            &root_key,
            "--json",
        ],
    );
    let org_id = org["org"].as_str().unwrap().to_string();
    assert_eq!(org_id.len(), 52);
    #[cfg(unix)]
    assert_eq!(mode(Path::new(&root_key)), 0o600);
    fails(
        &nohome,
        &["org", "create", "--name", "again", "--out", &root_key],
        "refusing to overwrite",
    );
    // Not into a device's home unless asked.
    let in_home = phone.home.join("root.key");
    fails(
        &phone.home,
        &[
            "org",
            "create",
            "--name",
            "x",
            "--out",
            in_home.to_str().unwrap(),
        ],
        "inside this device's home",
    );
    assert!(!in_home.exists());

    let reg = ok_json(
        &nohome,
        &[
            "org",
            "registrar",
            "--root",
            &root_key,
            "--scope",
            "bihar/darbhanga",
            "--expires",
            "365d",
            "--out",
            &reg_key,
            "--json",
        ],
    );
    assert_eq!(reg["org"], org_id.as_str());
    assert_eq!(reg["scope"], "bihar/darbhanga");
    #[cfg(unix)]
    assert_eq!(mode(Path::new(&reg_key)), 0o600);

    // One person, two devices.
    let phone_bundle = path("phone.bundle");
    let laptop_bundle = path("laptop.bundle");
    let issued = ok_json(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &reg_key,
            "--name",
            "en=Anita Kumari",
            "--name",
            "hi=अनीता कुमारी",
            "--designation",
            "District Magistrate",
            "--unit",
            "bihar/darbhanga",
            "--language",
            "hi",
            "--language",
            "en",
            "--device",
            &phone.device_id(),
            "--label",
            "phone",
            "--out",
            &phone_bundle,
            "--json",
        ],
    );
    let person = issued["person"].as_str().unwrap().to_string();
    assert!(issued["text"].as_str().unwrap().starts_with("VORG1:"));
    let second = ok_json(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &reg_key,
            "--person",
            &person,
            "--device",
            &laptop.device_id(),
            "--label",
            "laptop",
            "--out",
            &laptop_bundle,
            "--json",
        ],
    );
    assert_eq!(second["person"], person.as_str());
    assert_eq!(second["names"]["hi"], "अनीता कुमारी");
    // Outside the registrar's scope (the prefix trap included), refused with a sentence.
    for unit in ["bihar/patna", "bihar/darbhangax"] {
        fails(
            &nohome,
            &[
                "org",
                "issue",
                "--registrar",
                &reg_key,
                "--name",
                "en=X",
                "--unit",
                unit,
                "--device",
                &phone.device_id(),
                "--out",
                &path("x.bundle"),
            ],
            "outside the registrar's scope",
        );
    }

    // Each device enrols its own bundle, and refuses the other's.
    fails(
        &phone.home,
        &["org", "enrol", &laptop_bundle],
        "not this device",
    );
    let e = ok_json(&phone.home, &["org", "enrol", &phone_bundle, "--json"]);
    assert_eq!(e["org"], org_id.as_str());
    assert!(phone.home.join("credentials/root").is_file());
    ok_json(&laptop.home, &["org", "enrol", &laptop_bundle, "--json"]);

    for (node, label) in [(&phone, "phone"), (&laptop, "laptop")] {
        let s = ok_json(&node.home, &["org", "show", "--json"]);
        assert_eq!(s["verified"], true, "{s}");
        assert_eq!(s["pinned"], true);
        assert_eq!(s["person"], person.as_str());
        assert_eq!(s["device"], node.device_id().as_str());
        assert_eq!(s["label"], label);
        assert_eq!(s["unit"], "bihar/darbhanga");
        assert_eq!(s["designation"], "District Magistrate");
    }
    // The human form says who it is, in every script.
    let human = run(&phone.home, &["org", "show"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("अनीता कुमारी") && text.contains("verified"),
        "{text}"
    );

    // The laptop is lost: the registrar revokes it alone.
    let rev = path("laptop.revocation");
    let r = ok_json(
        &nohome,
        &[
            "org",
            "revoke",
            "--registrar",
            &reg_key,
            "--device",
            &laptop.device_id(),
            "--out",
            &rev,
            "--json",
        ],
    );
    assert_eq!(r["target"]["device"], laptop.device_id().as_str());
    let out = run(
        &laptop.home,
        &["org", "show", "--revocation", &rev, "--json"],
    );
    assert!(!out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["verified"], false);
    assert!(
        s["problem"]
            .as_str()
            .unwrap()
            .contains("device was revoked"),
        "{s}"
    );
    let s = ok_json(
        &phone.home,
        &["org", "show", "--revocation", &rev, "--json"],
    );
    assert_eq!(s["verified"], true, "the phone stays: {s}");

    // A joint operation: the disaster force's root cross-certifies the police registrar for
    // Darbhanga; a rescuer's device, enrolled only in the disaster force, then accepts the
    // officer's credential (and not before).
    let (ndrf_root, ndrf_reg) = (path("ndrf-root.key"), path("ndrf-reg.key"));
    let ndrf = ok_json(
        &nohome,
        &[
            "org", "create", "--name", "NDRF", "--out", &ndrf_root, "--json",
        ],
    );
    ok_json(
        &nohome,
        &[
            "org",
            "registrar",
            "--root",
            &ndrf_root,
            "--scope",
            "/",
            "--out",
            &ndrf_reg,
            "--json",
        ],
    );
    let rescuer = Node::init("Rescuer");
    let rescuer_bundle = path("rescuer.bundle");
    ok_json(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &ndrf_reg,
            "--name",
            "en=Ravi",
            "--unit",
            "bn7",
            "--device",
            &rescuer.device_id(),
            "--out",
            &rescuer_bundle,
            "--json",
        ],
    );
    ok_json(&rescuer.home, &["org", "enrol", &rescuer_bundle, "--json"]);
    fails(
        &rescuer.home,
        &["org", "show", &phone_bundle],
        "not one this device trusts",
    );
    let cross = path("joint.cross");
    let x = ok_json(
        &nohome,
        &[
            "org",
            "cross",
            "--root",
            &ndrf_root,
            "--registrar-id",
            reg["registrar"].as_str().unwrap(),
            "--scope",
            "bihar/darbhanga",
            "--expires",
            "30d",
            "--out",
            &cross,
            "--json",
        ],
    );
    assert_eq!(x["org"], ndrf["org"]);
    let joint = path("phone-joint.bundle");
    ok_json(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &reg_key,
            "--person",
            &person,
            "--device",
            &phone.device_id(),
            "--cross",
            &cross,
            "--out",
            &joint,
            "--json",
        ],
    );
    let s = ok_json(&rescuer.home, &["org", "show", &joint, "--json"]);
    assert_eq!(s["verified"], true, "{s}");
    assert_eq!(s["org"], org_id.as_str());
    assert_eq!(s["via"], ndrf["org"]);
    // The rescuer's device keeps the root it pinned: a police bundle for it is refused.
    let police_for_rescuer = path("police-rescuer.bundle");
    ok_json(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &reg_key,
            "--name",
            "en=Ravi",
            "--unit",
            "bihar/darbhanga",
            "--device",
            &rescuer.device_id(),
            "--out",
            &police_for_rescuer,
            "--json",
        ],
    );
    fails(
        &rescuer.home,
        &["org", "enrol", &police_for_rescuer],
        "enrolled in another organisation",
    );
    assert_eq!(
        ok_json(&rescuer.home, &["org", "show", "--json"])["org"],
        ndrf["org"]
    );
    // A cross-certification for another unit does not cover the officer.
    let patna = path("patna.cross");
    ok_json(
        &nohome,
        &[
            "org",
            "cross",
            "--root",
            &ndrf_root,
            "--registrar-id",
            reg["registrar"].as_str().unwrap(),
            "--scope",
            "bihar/patna",
            "--out",
            &patna,
            "--json",
        ],
    );
    fails(
        &nohome,
        &[
            "org",
            "issue",
            "--registrar",
            &reg_key,
            "--person",
            &person,
            "--device",
            &phone.device_id(),
            "--cross",
            &patna,
            "--out",
            &path("y.bundle"),
        ],
        "does not cover",
    );

    // A bundle altered by one character is refused with a sentence, not a panic.
    let mut t = std::fs::read_to_string(&phone_bundle).unwrap().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    let bad = path("bad.bundle");
    std::fs::write(&bad, t).unwrap();
    fails(&phone.home, &["org", "show", &bad], "checksum");
}

/// Issues a bundle for `node` (person `name`) with the registrar key file `reg` and enrols it.
fn enrol(nohome: &Path, reg: &str, node: &Node, name: &str, designation: &str, out: &str) {
    let n = format!("en={name}");
    ok_json(
        nohome,
        &[
            "org",
            "issue",
            "--registrar",
            reg,
            "--name",
            &n,
            "--designation",
            designation,
            "--unit",
            "odisha/puri",
            "--device",
            &node.device_id(),
            "--out",
            out,
            "--json",
        ],
    );
    ok_json(&node.home, &["org", "enrol", out, "--json"]);
}

/// Two running nodes of one organisation: the one dialled sees who dialled it, verified
/// against its pinned root, in `vaarta peers`; once it holds a revocation of that device it
/// cuts it off.
#[test]
fn running_nodes_show_verified_peers_and_refuse_a_revoked_one() {
    let office = tempfile::tempdir().unwrap();
    let o = office.path();
    let nohome = o.join("no-home");
    let path = |n: &str| o.join(n).to_string_lossy().to_string();
    let (root_key, reg_key) = (path("root.key"), path("reg.key"));
    ok_json(
        &nohome,
        &[
            "org", "create", "--name", "OSDMA", "--out", &root_key, "--json",
        ],
    );
    ok_json(
        &nohome,
        &[
            "org",
            "registrar",
            "--root",
            &root_key,
            "--scope",
            "odisha",
            "--out",
            &reg_key,
            "--json",
        ],
    );
    let mut eoc = Node::init("EOC");
    let mut field = Node::init("Field");
    enrol(
        &nohome,
        &reg_key,
        &eoc,
        "Anita Das",
        "Tehsildar",
        &path("eoc.bundle"),
    );
    enrol(
        &nohome,
        &reg_key,
        &field,
        "Bhavesh Rao",
        "Sub-Inspector",
        &path("f.bundle"),
    );

    eoc.up_loopback(&[]);
    let addr = eoc.addr("/tcp/");
    field.up_loopback(&[&addr]);
    let field_id = field.device_id();
    let cred = vaarta_tests::wait_for("the field device to show", Duration::from_secs(30), || {
        let p = eoc.json(&["peers"]);
        p["connected"]
            .as_array()?
            .iter()
            .find(|c| c["device"] == field_id.as_str())
            .map(|c| c["credential"].clone())
    });
    assert_eq!(cred["verified"], true, "{cred}");
    assert_eq!(cred["names"][0]["name"], "Bhavesh Rao");
    assert_eq!(cred["designation"], "Sub-Inspector");
    assert_eq!(cred["unit"], "odisha/puri");
    assert_eq!(cred["org_name"], "OSDMA");
    let human = eoc.ok(&["peers"]);
    assert!(
        human.contains("verified: Bhavesh Rao, Sub-Inspector, odisha/puri (OSDMA)"),
        "{human}"
    );

    // The field phone is lost: the EOC takes the revocation in and restarts.
    let rev = path("field.revocation");
    ok_json(
        &nohome,
        &[
            "org",
            "revoke",
            "--registrar",
            &reg_key,
            "--device",
            &field_id,
            "--out",
            &rev,
            "--json",
        ],
    );
    eoc.stop();
    let rdir = eoc.home.join("credentials/revocations");
    std::fs::create_dir_all(&rdir).unwrap();
    std::fs::copy(&rev, rdir.join("field")).unwrap();
    // A file that is no revocation is reported and left out; the node still starts.
    std::fs::write(rdir.join("junk"), "not a revocation").unwrap();
    eoc.up(&["--listen", &addr, "--no-mdns"]);
    vaarta_tests::wait_for(
        "the EOC to refuse the revoked device",
        Duration::from_secs(30),
        || eoc.log().contains("revoked").then_some(()),
    );
    let p = eoc.json(&["peers"]);
    assert!(
        !p["connected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["device"] == field_id.as_str()),
        "{p}"
    );
    let id = eoc.json(&["id"]);
    assert!(
        id["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("revocation left out")),
        "{id}"
    );
    field.stop();
    eoc.stop();
}

/// Issue 12, remote wipe, with real processes. A forged wipe order (signed by another
/// organisation's root, which the field device did not pin) is refused: the node keeps
/// running with its keys and messages. The registrar's wipe order, handed to the EOC, reaches
/// the field device when it links; the field device erases its keys, database and
/// credentials and stops with a clear message and exit status 3.
#[test]
fn a_wipe_order_erases_the_named_device_and_a_forged_one_is_refused() {
    let office = tempfile::tempdir().unwrap();
    let o = office.path();
    let nohome = o.join("no-home");
    let path = |n: &str| o.join(n).to_string_lossy().to_string();
    let (root_key, reg_key, fake_key) = (path("root.key"), path("reg.key"), path("fake.key"));
    ok_json(
        &nohome,
        &[
            "org", "create", "--name", "OSDMA", "--out", &root_key, "--json",
        ],
    );
    ok_json(
        &nohome,
        &[
            "org",
            "create",
            "--name",
            "Impostors",
            "--out",
            &fake_key,
            "--json",
        ],
    );
    ok_json(
        &nohome,
        &[
            "org",
            "registrar",
            "--root",
            &root_key,
            "--scope",
            "odisha",
            "--out",
            &reg_key,
            "--json",
        ],
    );
    let mut eoc = Node::init("EOC");
    let mut field = Node::init("Field");
    enrol(
        &nohome,
        &reg_key,
        &eoc,
        "Anita Das",
        "Tehsildar",
        &path("eoc.bundle"),
    );
    enrol(
        &nohome,
        &reg_key,
        &field,
        "Bhavesh Rao",
        "Sub-Inspector",
        &path("f.bundle"),
    );
    let field_id = field.device_id();
    eoc.up_loopback(&[]);
    let addr = eoc.addr("/tcp/");
    field.up_loopback(&[&addr]);
    let t = Duration::from_secs(60);
    vaarta_tests::wait_for("a link", t, || (eoc.linked() >= 1).then_some(()));
    field.accept(&eoc);
    let conv = eoc
        .ok(&["conv", "create", "Flood cell", "--member", &field_id])
        .trim()
        .to_string();
    vaarta_tests::wait_for("the field device to join", t, || {
        field.is_member_of(&conv, 2).then_some(())
    });
    eoc.ok(&["send", &conv, "convoy at 6"]);
    vaarta_tests::wait_for("the message on the field device", t, || {
        field
            .bodies(&conv)
            .contains(&"convoy at 6".to_string())
            .then_some(())
    });

    // A forged order: another organisation's root signs a wipe of the field device.
    let forged = path("forged.wipe");
    let j = ok_json(
        &nohome,
        &[
            "org", "wipe", "--device", &field_id, "--key", &fake_key, "--out", &forged, "--json",
        ],
    );
    assert_eq!(j["device"], field_id.as_str(), "{j}");
    field.stop();
    let frdir = field.home.join("credentials/revocations");
    std::fs::create_dir_all(&frdir).unwrap();
    std::fs::copy(&forged, frdir.join("forged")).unwrap();
    field.up_loopback(&[&addr]);
    let id = vaarta_tests::wait_for("the refusal", t, || {
        let id = field.json(&["id"]);
        id["warnings"]
            .as_array()?
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("refused a wipe order"))
            .then_some(id)
    });
    assert!(id["warnings"].to_string().contains("no authority"), "{id}");
    assert!(field.home.join("identity.key").exists());
    assert_eq!(field.bodies(&conv), vec!["convoy at 6"], "nothing lost");

    // The registrar's order, handed to the EOC.
    let order = path("field.wipe");
    ok_json(
        &nohome,
        &[
            "org", "wipe", "--device", &field_id, "--key", &reg_key, "--out", &order, "--json",
        ],
    );
    eoc.stop();
    let rdir = eoc.home.join("credentials/revocations");
    std::fs::create_dir_all(&rdir).unwrap();
    std::fs::copy(&order, rdir.join("field.wipe")).unwrap();
    eoc.up(&["--listen", &addr, "--no-mdns"]);
    let mut child = field.take_child().expect("the field node runs");
    let status = vaarta_tests::wait_for("the field device to obey", t, || {
        child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(3), "{}", field.log());
    assert!(field.log().contains("wiped by order of"), "{}", field.log());
    for gone in ["identity.key", "storage.key", "db", "credentials"] {
        assert!(!field.home.join(gone).exists(), "{gone} is still there");
    }
    assert!(field.home.join("WIPED").exists());
    // The EOC holds on, and took the implied revocation: the device is cut off.
    assert!(eoc.home.join("identity.key").exists());
    eoc.stop();
}

/// The README's organisation walkthrough, second half, with real processes: three enrolled
/// devices learn each other's chains into their directories over the links; the control
/// room finds the DM by name in Devanagari and by role; a message to the role reaches the
/// holder; after a handover (a new assignment taken in at the control room) the next
/// message reaches the new holder and not the old, in the same conversation.
#[test]
fn directory_search_and_role_messages_follow_a_handover_between_running_nodes() {
    let office = tempfile::tempdir().unwrap();
    let o = office.path();
    let nohome = o.join("no-home");
    let path = |n: &str| o.join(n).to_string_lossy().to_string();
    let (root_key, reg_key) = (path("root.key"), path("reg.key"));
    ok_json(
        &nohome,
        &[
            "org",
            "create",
            "--name",
            "बिहार सरकार",
            "--out",
            &root_key,
            "--json",
        ],
    );
    ok_json(
        &nohome,
        &[
            "org",
            "registrar",
            "--root",
            &root_key,
            "--scope",
            "bihar",
            "--out",
            &reg_key,
            "--json",
        ],
    );
    let mut control = Node::init("Control");
    let mut anita = Node::init("Anita-phone");
    let mut ravi = Node::init("Ravi-phone");
    let mut people = Vec::new();
    for (node, names, designation, file) in [
        (
            &control,
            vec!["en=Control Room"],
            "Duty Officer",
            "control.bundle",
        ),
        (
            &anita,
            vec!["en=Anita Kumari", "hi=अनीता कुमारी"],
            "District Magistrate",
            "anita.bundle",
        ),
        (
            &ravi,
            vec!["en=Ravi Shankar"],
            "Additional DM",
            "ravi.bundle",
        ),
    ] {
        let bundle = path(file);
        let mut args = vec!["org", "issue", "--registrar", &reg_key];
        for n in &names {
            args.extend(["--name", n]);
        }
        let device = node.device_id();
        args.extend([
            "--designation",
            designation,
            "--unit",
            "bihar/darbhanga",
            "--device",
            &device,
            "--out",
            &bundle,
            "--json",
        ]);
        let issued = ok_json(&nohome, &args);
        people.push(issued["person"].as_str().unwrap().to_string());
        ok_json(&node.home, &["org", "enrol", &bundle, "--json"]);
    }
    // The DM role, signed by the registrar, taken in at the control room (no node yet).
    let dm1 = path("dm1.role");
    let a = ok_json(
        &nohome,
        &[
            "org",
            "assign",
            "--key",
            &reg_key,
            "--person",
            &people[1],
            "--unit",
            "bihar/darbhanga",
            "--role",
            "dm",
            "--title",
            "en=DM Darbhanga",
            "--title",
            "hi=डीएम दरभंगा",
            "--out",
            &dm1,
            "--json",
        ],
    );
    assert_eq!(a["holder"], people[1].as_str());
    // A role key that is a title is refused with a sentence.
    fails(
        &nohome,
        &[
            "org",
            "assign",
            "--key",
            &reg_key,
            "--person",
            &people[1],
            "--unit",
            "bihar/darbhanga",
            "--role",
            "DM Darbhanga",
            "--title",
            "en=x",
            "--out",
            &path("bad.role"),
        ],
        "role key",
    );
    // Outside the registrar's scope: refused.
    fails(
        &nohome,
        &[
            "org",
            "assign",
            "--key",
            &reg_key,
            "--person",
            &people[1],
            "--unit",
            "odisha/puri",
            "--role",
            "dm",
            "--title",
            "en=DM Puri",
            "--out",
            &path("puri.role"),
        ],
        "outside",
    );
    assert_eq!(
        ok_json(&control.home, &["directory", "add", &dm1, "--json"])["new"],
        1
    );

    control.up_loopback(&[]);
    let addr = control.addr("/tcp/");
    anita.up_loopback(&[&addr]);
    ravi.up_loopback(&[&addr]);
    anita.accept(&control);
    ravi.accept(&control);
    // The control room learns both officers' chains from the links.
    let found = vaarta_tests::wait_for("the DM in the directory", Duration::from_secs(30), || {
        let r = control.json(&["directory", "search", "कुमारी"]);
        (r["people"].as_array()?.len() == 1).then_some(r)
    });
    let p = &found["people"][0];
    assert_eq!(p["names"][0]["name"], "Anita Kumari");
    assert_eq!(p["roles"][0]["role"], "dm");
    assert_eq!(
        control.json(&["directory", "search", "dm darbhanga"])["people"][0]["person"],
        people[1].as_str()
    );
    vaarta_tests::wait_for("Ravi in the directory", Duration::from_secs(30), || {
        let r = control.json(&["directory", "search", "ravi"]);
        (r["people"].as_array()?.len() == 1).then_some(())
    });
    let shown = control.ok(&["directory", "show"]);
    assert!(shown.contains("DM Darbhanga"), "{shown}");
    // The role reached the DM's phone through the directory too.
    vaarta_tests::wait_for("the role at Anita's phone", Duration::from_secs(30), || {
        let r = anita.json(&["directory", "show"]);
        (r["roles"].as_array()?.len() == 1).then_some(())
    });

    let sent = control.json(&["send", "--role", "DM Darbhanga", "flood at Kusheshwar"]);
    let conv = sent["conversation"].as_str().unwrap().to_string();
    assert_eq!(sent["to"], serde_json::json!([anita.device_id()]));
    vaarta_tests::wait_for("the DM to get it", Duration::from_secs(60), || {
        anita
            .bodies(&conv)
            .contains(&"flood at Kusheshwar".to_string())
            .then_some(())
    });

    // The handover: Ravi is DM from now.
    let dm2 = path("dm2.role");
    ok_json(
        &nohome,
        &[
            "org",
            "assign",
            "--key",
            &reg_key,
            "--person",
            &people[2],
            "--unit",
            "bihar/darbhanga",
            "--role",
            "dm",
            "--title",
            "en=DM Darbhanga",
            "--title",
            "hi=डीएम दरभंगा",
            "--out",
            &dm2,
            "--json",
        ],
    );
    control.json(&["directory", "add", &dm2]);
    let sent = control.json(&["send", "--role", "डीएम दरभंगा", "after the handover"]);
    assert_eq!(sent["conversation"], conv.as_str(), "no group re-created");
    assert_eq!(sent["to"], serde_json::json!([ravi.device_id()]));
    vaarta_tests::wait_for("the new DM to get it", Duration::from_secs(60), || {
        (ravi.bodies(&conv) == vec!["after the handover".to_string()]).then_some(())
    });
    // Give the old holder's node time to receive anything it could.
    std::thread::sleep(Duration::from_secs(2));
    let old = anita.bodies(&conv);
    assert!(
        !old.contains(&"after the handover".to_string()),
        "the old DM reads nothing sent after the handover: {old:?}"
    );
    // The directory survives a restart (saved files).
    control.stop();
    let r = control.json(&["directory", "search", "anita"]);
    assert_eq!(r["people"].as_array().unwrap().len(), 1, "{r}");
}

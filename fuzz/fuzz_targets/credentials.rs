//! Organisation credential decoders (sync/src/org): chains (enrolment bundles), each record
//! kind, and the `VORG1:` text form. None may panic or allocate from an unchecked length;
//! whatever decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vaarta_sync::org::{
    Chain, DeviceCred, OrgRoot, PersonCred, Record, RegistrarCert, Revocation, dearmor,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Chain::decode(data) {
        assert_eq!(c.encode(), data);
    }
    let _ = OrgRoot::decode(data);
    let _ = RegistrarCert::decode(data);
    let _ = PersonCred::decode(data);
    let _ = DeviceCred::decode(data);
    if let Ok(r) = Revocation::decode(data) {
        assert_eq!(r.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dearmor(text);
    }
});

//! What a registrar hands a device: the enrolment bundle (a [`Chain`]: root record,
//! registrar certificate, person and device credentials), its compact text form for a QR
//! code, and the registrar's issuing helper, which refuses what verification would refuse.

use std::sync::LazyLock;

use crate::identity::Identity;
use crate::ids::{DeviceId, PersonId};

use super::CredError;
use super::record::{
    DeviceCred, OrgRoot, PersonCred, RegistrarCert, Revocation, RoleAssignment, Target, Unit,
    WipeOrder,
};
use super::verify::{Chain, Revocations, Verified, verify_device};

/// The start of every credential text (QR alphanumeric mode holds `A–Z 0–9 :`).
pub const TEXT_PREFIX: &str = "VORG1:";
const CHECKSUM_CONTEXT: &str = "vaarta 2026 org text checksum v1";
const CHECKSUM: usize = 4;

/// RFC 4648 base32 in upper case without padding (QR alphanumeric mode); decoding accepts
/// lower case and refuses non-zero trailing bits.
static UPPER32: LazyLock<data_encoding::Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.check_trailing_bits = true;
    spec.encoding().expect("a valid base32 specification")
});

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM] {
    let h = blake3::derive_key(CHECKSUM_CONTEXT, bytes);
    let mut c = [0u8; CHECKSUM];
    c.copy_from_slice(&h[..CHECKSUM]);
    c
}

/// `VORG1:` and base32 of the bytes and a 32-bit checksum: one line, upper case, fit for a
/// QR code's alphanumeric mode, and a typo is caught before any signature is looked at.
pub fn armor(bytes: &[u8]) -> String {
    let mut b = bytes.to_vec();
    b.extend_from_slice(&checksum(bytes));
    format!("{TEXT_PREFIX}{}", UPPER32.encode(&b))
}

/// The bytes of an [`armor`]ed text (white space anywhere, e.g. line breaks, is ignored).
pub fn dearmor(text: &str) -> Result<Vec<u8>, CredError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let body = compact
        .get(..TEXT_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(TEXT_PREFIX))
        .map(|_| &compact[TEXT_PREFIX.len()..])
        .ok_or(CredError::BadText("it does not start with VORG1:"))?;
    let mut b = UPPER32
        .decode(body.as_bytes())
        .map_err(|_| CredError::BadText("not base32"))?;
    if b.len() < CHECKSUM {
        return Err(CredError::BadText("too short"));
    }
    let sum = b.split_off(b.len() - CHECKSUM);
    if sum != checksum(&b) {
        return Err(CredError::BadText(
            "the checksum does not match (a typo or a damaged code)",
        ));
    }
    Ok(b)
}

/// Checks a bundle at enrolment: it verifies with its own root pinned (the device pins that
/// root now) and is for this device's key.
pub fn enrol(bundle: &Chain, me: DeviceId, now: u64, skew: u64) -> Result<Verified, CredError> {
    if bundle.device.device != me {
        return Err(CredError::NotMyDevice {
            bundle_for: bundle.device.device,
            me,
        });
    }
    verify_device(bundle, &[bundle.root.org], &Revocations::new(), now, skew)
}

/// A registrar's key with its certificate and its organisation's root record.
#[derive(Debug, Clone)]
pub struct Registrar {
    pub key: Identity,
    pub cert: RegistrarCert,
    pub root: OrgRoot,
}

impl Registrar {
    /// Refuses a certificate that is not for this key or not from this root.
    pub fn new(key: Identity, cert: RegistrarCert, root: OrgRoot) -> Result<Self, CredError> {
        if cert.registrar != key.device_id() {
            return Err(CredError::WrongSigner);
        }
        if cert.issuer != root.org {
            return Err(CredError::NotIssuedByRoot);
        }
        Ok(Registrar { key, cert, root })
    }

    /// Expiry of something issued at `now` for `valid_for`: never past the certificate's.
    fn until(&self, now: u64, valid_for: u64) -> Result<u64, CredError> {
        if now > self.cert.expires {
            return Err(CredError::RegistrarExpiredAtIssue {
                record: "new credential",
                issued_at: now,
                expires: self.cert.expires,
            });
        }
        Ok(now.saturating_add(valid_for).min(self.cert.expires))
    }

    /// A person credential, refused when the unit is outside this registrar's scope.
    #[allow(clippy::too_many_arguments)]
    pub fn issue_person(
        &self,
        person: PersonId,
        names: Vec<(String, String)>,
        designation: &str,
        unit: Unit,
        languages: Vec<String>,
        now: u64,
        valid_for: u64,
    ) -> Result<PersonCred, CredError> {
        if !self.cert.scope.covers(&unit) {
            return Err(CredError::OutsideScope {
                unit: unit.as_str().into(),
                scope: self.cert.scope.as_str().into(),
            });
        }
        let expires = self.until(now, valid_for)?;
        PersonCred::new(
            &self.key,
            person,
            names,
            designation,
            unit,
            languages,
            now,
            expires,
        )
    }

    /// A device credential for a person this registrar certified.
    pub fn issue_device(
        &self,
        person: &PersonCred,
        device: DeviceId,
        label: &str,
        now: u64,
        valid_for: u64,
    ) -> Result<DeviceCred, CredError> {
        if person.issuer != self.key.device_id() {
            return Err(CredError::NotARegistrar {
                issuer: person.issuer,
            });
        }
        let expires = self.until(now, valid_for)?.min(person.expires);
        DeviceCred::new(&self.key, person.person, device, label, now, expires)
    }

    /// The enrolment bundle for one of the person's devices.
    pub fn bundle(&self, person: PersonCred, device: DeviceCred) -> Chain {
        Chain {
            root: self.root.clone(),
            registrar: self.cert.clone(),
            cross: None,
            person,
            device,
        }
    }

    /// A role assignment signed by this registrar (its certificate attached), refused
    /// when the unit is outside its scope or the key is not a role key.
    #[allow(clippy::too_many_arguments)]
    pub fn assign(
        &self,
        unit: Unit,
        role: &str,
        titles: Vec<(String, String)>,
        holder: PersonId,
        from: u64,
        now: u64,
        valid_for: u64,
    ) -> Result<RoleAssignment, CredError> {
        if !self.cert.scope.covers(&unit) {
            return Err(CredError::OutsideScope {
                unit: unit.as_str().into(),
                scope: self.cert.scope.as_str().into(),
            });
        }
        let expires = self.until(now, valid_for)?;
        RoleAssignment::new(
            &self.key,
            self.root.org,
            Some(self.cert.clone()),
            unit,
            role,
            titles,
            holder,
            from,
            now,
            expires,
        )
    }

    /// A wipe order of `device` signed by this registrar (with the revocation it implies,
    /// effective now, and its certificate attached).
    pub fn wipe(&self, device: DeviceId, now: u64) -> Result<WipeOrder, CredError> {
        WipeOrder::new(
            &self.key,
            device,
            Some(self.cert.clone()),
            now,
            self.root.expires.max(now),
        )
    }

    /// A revocation signed by this registrar, with its certificate attached. It may be
    /// forgotten once the root expires (nothing it can kill outlives the root).
    pub fn revoke(
        &self,
        target: Target,
        effective_at: u64,
        now: u64,
    ) -> Result<Revocation, CredError> {
        Revocation::new(
            &self.key,
            target,
            effective_at,
            Some(self.cert.clone()),
            now,
            self.root.expires.max(now),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_catches_typos() {
        let bytes: Vec<u8> = (0..=255).collect();
        let t = armor(&bytes);
        assert!(t.starts_with(TEXT_PREFIX));
        assert!(
            t[TEXT_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(dearmor(&t).unwrap(), bytes);
        assert_eq!(dearmor(&t.to_lowercase()).unwrap(), bytes);
        let wrapped: String = t
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                (i % 60 == 59)
                    .then_some('\n')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect();
        assert_eq!(dearmor(&wrapped).unwrap(), bytes);
        // One character changed.
        let mut typo = t.clone().into_bytes();
        let i = TEXT_PREFIX.len() + 10;
        typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            dearmor(std::str::from_utf8(&typo).unwrap()),
            Err(CredError::BadText(_))
        ));
        assert!(dearmor("hello").is_err());
    }
}

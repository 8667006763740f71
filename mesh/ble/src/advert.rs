//! Advert privacy and the one-dialer rule.
//!
//! An advert carries Vaarta's service UUID (the same for every device) and
//! [`ADVERT_BYTES`] of service data that change every window ([`WINDOW_MS`], 15 min):
//!
//! ```text
//! data = tag (8) ‖ salt (4)
//! tag  = BLAKE3-keyed(secret, "vaarta-ble/1 advert" ‖ window)[..8]
//! salt = BLAKE3-keyed(boot, window)[..4]
//! ```
//!
//! `secret` is derived from the device's identity seed and never leaves the device; `boot`
//! is fresh randomness drawn at every start. Both fields are pseudo-random functions of the
//! window, so an observer sees 12 bytes that share nothing from one window to the next: no
//! constant field, no counter, no key, no name (`an_observer_sees_nothing_linkable_across_windows`).
//! What remains linkable is what Bluetooth itself shows: the adapter must use a resolvable
//! or non-resolvable private address rotated with the window (BlueZ `Privacy = device`),
//! and a device that is continuously in view can be followed across a rotation by timing.
//!
//! **Who can recognise a device.** Only a holder of `secret` can compute a window's tag;
//! today nobody else holds it, so nobody can. If it were shared (with one's own other
//! devices, or contacts, for fast reconnection), a holder could recognise the device in
//! every window from the tag alone, but not tell one boot from another (the salt needs
//! `boot`). Identity is revealed only inside the Noise channel, to a connected peer.
//!
//! **One dialer per pair** (Berty's rule, not bitchat's two links per pair): of two devices
//! that see each other's adverts, the one whose current advert data is lower dials
//! ([`should_dial`]). If both dialled anyway (they compared adverts from different windows)
//! the link whose dialer has the lower advert is kept ([`keep_link_dialled_by`]).

/// How long one advert stays the same (the rotation period).
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
pub const TAG_BYTES: usize = 8;
pub const SALT_BYTES: usize = 4;
/// Service data bytes: fits a legacy 31-byte advert beside flags and a 128-bit UUID.
pub const ADVERT_BYTES: usize = TAG_BYTES + SALT_BYTES;

pub type AdvertData = [u8; ADVERT_BYTES];

/// The window `now_ms` falls in.
pub fn window(now_ms: u64) -> u64 {
    now_ms / WINDOW_MS
}

/// What a device advertises with.
#[derive(Clone)]
pub struct Advertiser {
    secret: [u8; 32],
    boot: [u8; 32],
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Advertiser(..)")
    }
}

impl Advertiser {
    /// `identity_seed`: the device's identity seed (the secret is derived from it);
    /// `boot`: fresh randomness from the caller, once per start.
    pub fn new(identity_seed: &[u8; 32], boot: [u8; 32]) -> Self {
        Self {
            secret: derive_secret(identity_seed),
            boot,
        }
    }

    /// The advert's service data for the window `now_ms` falls in.
    pub fn service_data(&self, now_ms: u64) -> AdvertData {
        let w = window(now_ms);
        let mut out = [0u8; ADVERT_BYTES];
        out[..TAG_BYTES].copy_from_slice(&tag(&self.secret, w));
        let salt = blake3::keyed_hash(&self.boot, &w.to_be_bytes());
        out[TAG_BYTES..].copy_from_slice(&salt.as_bytes()[..SALT_BYTES]);
        out
    }

    /// When the advert changes next: the driver re-registers its advert then (and rotates
    /// the private address with it).
    pub fn next_rotation(now_ms: u64) -> u64 {
        (window(now_ms) + 1) * WINDOW_MS
    }
}

/// The advert secret for an identity seed.
pub fn derive_secret(identity_seed: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("vaarta-ble/1 advert secret", identity_seed)
}

fn tag(secret: &[u8; 32], window: u64) -> [u8; TAG_BYTES] {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(b"vaarta-ble/1 advert");
    h.update(&window.to_be_bytes());
    let mut t = [0u8; TAG_BYTES];
    t.copy_from_slice(&h.finalize().as_bytes()[..TAG_BYTES]);
    t
}

/// A holder of `secret` recognises the device's advert for the window of `now_ms` (or the
/// previous one, for clocks a little apart).
pub fn recognises(secret: &[u8; 32], data: &AdvertData, now_ms: u64) -> bool {
    let w = window(now_ms);
    [w, w.saturating_sub(1)]
        .iter()
        .any(|&w| tag(secret, w) == data[..TAG_BYTES])
}

/// Whether we dial a device whose advert we saw: the lower advert dials. Equal adverts
/// (a 2^-96 accident) dial nobody; both re-draw their boot randomness at the next window.
pub fn should_dial(ours: &AdvertData, theirs: &AdvertData) -> bool {
    ours < theirs
}

/// When two links to the same peer came up (both dialled), keep the one whose dialer's
/// advert is lower; `dialer` and `other` are the two devices' adverts as both saw them.
pub fn keep_link_dialled_by(dialer: &AdvertData, other: &AdvertData) -> bool {
    dialer < other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> Advertiser {
        Advertiser::new(&[n; 32], [n.wrapping_add(100); 32])
    }

    #[test]
    fn an_observer_sees_nothing_linkable_across_windows() {
        let a = dev(1);
        let t0 = 1_790_000_000_000;
        // Same window: the same bytes (scanners deduplicate), even at its two ends.
        let w0 = window(t0) * WINDOW_MS;
        assert_eq!(a.service_data(w0), a.service_data(w0 + WINDOW_MS - 1));
        let views: Vec<AdvertData> = (0..96)
            .map(|i| a.service_data(t0 + i * WINDOW_MS))
            .collect(); // a day
        for pair in views.windows(2) {
            assert_ne!(pair[0], pair[1]);
            // No shared field: adjacent windows agree on about 12/256 byte positions by
            // chance; a constant field would make it at least its width.
            let same = pair[0].iter().zip(&pair[1]).filter(|(x, y)| x == y).count();
            assert!(same <= 2, "{same} equal bytes");
            // No shared run of three bytes anywhere (a moved field).
            for x in pair[0].windows(3) {
                assert!(!pair[1].windows(3).any(|y| y == x));
            }
        }
        // No byte position is constant over the day.
        for pos in 0..ADVERT_BYTES {
            assert!(
                views.iter().any(|v| v[pos] != views[0][pos]),
                "position {pos}"
            );
        }
        // A device's advert is no closer to its own earlier advert than another device's.
        let b = dev(2);
        let dist = |x: &AdvertData, y: &AdvertData| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p ^ q).count_ones())
                .sum::<u32>()
        };
        let (mut own, mut other) = (0, 0);
        for i in 1..96 {
            own += dist(&views[0], &views[i]);
            other += dist(&views[0], &b.service_data(t0 + i as u64 * WINDOW_MS));
        }
        let (own, other) = (own as f64 / 95.0, other as f64 / 95.0);
        assert!(
            (own - 48.0).abs() < 4.0 && (other - 48.0).abs() < 4.0,
            "{own} {other}"
        );
    }

    #[test]
    fn only_a_holder_of_the_secret_recognises_the_device_and_boots_differ() {
        let seed = [7u8; 32];
        let a = Advertiser::new(&seed, [1; 32]);
        let rebooted = Advertiser::new(&seed, [2; 32]);
        let t = 5 * WINDOW_MS + 10;
        let secret = derive_secret(&seed);
        assert!(recognises(&secret, &a.service_data(t), t));
        assert!(
            recognises(&secret, &a.service_data(t), t + WINDOW_MS),
            "one window late"
        );
        assert!(!recognises(&secret, &a.service_data(t), t + 2 * WINDOW_MS));
        assert!(!recognises(&derive_secret(&[8; 32]), &a.service_data(t), t));
        // Same tag, different salt: a holder links the boots, an observer does not.
        let (x, y) = (a.service_data(t), rebooted.service_data(t));
        assert_eq!(x[..TAG_BYTES], y[..TAG_BYTES]);
        assert_ne!(x[TAG_BYTES..], y[TAG_BYTES..]);
        assert_eq!(Advertiser::next_rotation(t), 6 * WINDOW_MS);
    }

    #[test]
    fn exactly_one_of_a_pair_dials() {
        for i in 0..50u8 {
            let (a, b) = (dev(i).service_data(0), dev(i + 1).service_data(0));
            assert!(should_dial(&a, &b) ^ should_dial(&b, &a));
            // Both dialled: exactly one of the two links is kept.
            assert!(keep_link_dialled_by(&a, &b) ^ keep_link_dialled_by(&b, &a));
        }
        let a = dev(3).service_data(0);
        assert!(!should_dial(&a, &a));
    }
}

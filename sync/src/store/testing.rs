//! Stores for tests (behind the `testing` feature, as `vaarta_engine::testing`): [`Faulty`],
//! a [`MemoryStore`] whose writes fail on demand (a full disk, EIO, a power cut after N
//! writes), and [`FindEnvelope`], a lookup by id alone for tests that do not track tags.

use std::cell::{Ref, RefCell, RefMut};
use std::rc::Rc;

use super::{MemoryStore, Store, StoreError, Summary};
use crate::ids::{EnvelopeId, Tag};

/// The failures a [`Faulty`] store is set up with.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Every write and flush fails with this while it is set.
    fail: Option<StoreError>,
    /// Envelope writes succeed this many more times, then fail with `Io` (other writes
    /// still succeed).
    envelope_puts_left: Option<usize>,
    /// A power cut after this many more writes of any kind: every later write fails with
    /// `Io`, so the store holds a prefix of them, in order (as sled recovers them).
    writes_left: Option<usize>,
    /// A power cut happened (a write was refused by `writes_left`).
    cut: bool,
    /// Metadata deletes fail with `Io`.
    fail_deletes: bool,
}

/// A [`MemoryStore`] whose writes fail on demand. Clones share the store and its faults, so
/// a test keeps a handle on what a replica (or a failed open) left behind.
#[derive(Debug, Clone, Default)]
pub struct Faulty {
    inner: Rc<RefCell<MemoryStore>>,
    faults: Rc<RefCell<Faults>>,
}

impl Faulty {
    /// A copy of `st`, with no faults set.
    pub fn new(st: &MemoryStore) -> Self {
        Self {
            inner: Rc::new(RefCell::new(st.clone())),
            faults: Rc::default(),
        }
    }

    /// Every write and flush fails with `e` (`None`: they succeed again).
    pub fn fail_with(&self, e: Option<StoreError>) {
        self.faults.borrow_mut().fail = e;
    }

    /// Envelope writes succeed `n` more times, then fail (`None`: always succeed).
    pub fn fail_envelope_puts_after(&self, n: Option<usize>) {
        self.faults.borrow_mut().envelope_puts_left = n;
    }

    /// The power goes after `n` more writes of any kind (`None`: it stays on, and the
    /// record of a cut is cleared).
    pub fn cut_power_after(&self, n: Option<usize>) {
        let mut f = self.faults.borrow_mut();
        f.writes_left = n;
        if n.is_none() {
            f.cut = false;
        }
    }

    /// True if the power went (a write was refused by [`Faulty::cut_power_after`]).
    pub fn was_cut(&self) -> bool {
        self.faults.borrow().cut
    }

    /// Metadata deletes fail while `on`.
    pub fn fail_deletes(&self, on: bool) {
        self.faults.borrow_mut().fail_deletes = on;
    }

    /// What reached the disk: every write before the cut, made durable.
    pub fn left(&self) -> MemoryStore {
        let mut st = self.inner.borrow().clone();
        st.flush().unwrap_or_default();
        st
    }

    /// The store underneath, as it is (unflushed writes included).
    pub fn inner(&self) -> Ref<'_, MemoryStore> {
        self.inner.borrow()
    }

    fn inner_mut(&self) -> RefMut<'_, MemoryStore> {
        self.inner.borrow_mut()
    }

    fn write(&self) -> Result<(), StoreError> {
        let mut f = self.faults.borrow_mut();
        if let Some(e) = &f.fail {
            return Err(e.clone());
        }
        match &mut f.writes_left {
            Some(0) => {
                f.cut = true;
                Err(StoreError::Io("power cut".into()))
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Store for Faulty {
    fn put_envelope(
        &mut self,
        tag: &Tag,
        id: &EnvelopeId,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        self.write()?;
        match &mut self.faults.borrow_mut().envelope_puts_left {
            Some(0) => return Err(StoreError::Io("envelope write refused".into())),
            Some(n) => *n -= 1,
            None => {}
        }
        self.inner_mut().put_envelope(tag, id, bytes)
    }
    fn envelope(&self, tag: &Tag, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner().envelope(tag, id)
    }
    fn contains(&self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        self.inner().contains(tag, id)
    }
    fn remove_envelope(&mut self, tag: &Tag, id: &EnvelopeId) -> Result<bool, StoreError> {
        self.write()?;
        self.inner_mut().remove_envelope(tag, id)
    }
    fn summary(&self, tag: &Tag) -> Summary {
        self.inner().summary(tag)
    }
    fn tags(&self) -> Vec<(Tag, Summary)> {
        self.inner().tags()
    }
    fn for_each_id(
        &self,
        tag: &Tag,
        from: &[u8; 32],
        f: &mut dyn FnMut(&EnvelopeId) -> bool,
    ) -> Result<(), StoreError> {
        self.inner().for_each_id(tag, from, f)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner().get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write()?;
        self.inner_mut().put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.write()?;
        if self.faults.borrow().fail_deletes {
            return Err(StoreError::Io("delete refused".into()));
        }
        self.inner_mut().delete(key)
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner().scan_prefix(prefix, f)
    }
    fn scan_keys(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), StoreError> {
        self.inner().scan_keys(prefix, f)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(e) = &self.faults.borrow().fail {
            return Err(e.clone());
        }
        self.inner_mut().flush()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        if let Some(e) = &self.faults.borrow().fail {
            return Err(e.clone());
        }
        self.inner_mut().close()
    }
    fn bytes_used(&self) -> u64 {
        self.inner().bytes_used()
    }
}

/// Lookups by id alone, for tests that do not track which tag an envelope went to: every
/// tag is tried (the store keeps no id → tag index). Not for the protocol's path, which
/// always knows the tag.
pub trait FindEnvelope {
    /// The tag `id` is stored under, if any (the first, in tag order).
    fn find_tag(&self, id: &EnvelopeId) -> Result<Option<Tag>, StoreError>;
    /// The envelope `id` under whichever tag holds it.
    fn find_envelope(&self, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError>;
    /// True if any tag holds `id`.
    fn holds(&self, id: &EnvelopeId) -> Result<bool, StoreError> {
        Ok(self.find_tag(id)?.is_some())
    }
}

impl<S: Store + ?Sized> FindEnvelope for S {
    fn find_tag(&self, id: &EnvelopeId) -> Result<Option<Tag>, StoreError> {
        for (tag, _) in self.tags() {
            if self.contains(&tag, id)? {
                return Ok(Some(tag));
            }
        }
        Ok(None)
    }

    fn find_envelope(&self, id: &EnvelopeId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.find_tag(id)? {
            Some(tag) => self.envelope(&tag, id),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_cut_keeps_the_writes_before_it_and_clones_share_the_store() {
        let st = Faulty::new(&MemoryStore::new());
        let mut w = st.clone();
        st.cut_power_after(Some(2));
        let tag = Tag([1; 16]);
        w.put(b"a", b"1").unwrap();
        w.put_envelope(&tag, &EnvelopeId([1; 32]), b"x").unwrap();
        assert!(w.put(b"b", b"2").is_err());
        assert!(st.was_cut());
        let left = st.left();
        assert_eq!(left.get(b"a").unwrap().unwrap(), b"1");
        assert_eq!(left.get(b"b").unwrap(), None);
        assert_eq!(left.find_tag(&EnvelopeId([1; 32])).unwrap(), Some(tag));
        assert!(!left.holds(&EnvelopeId([2; 32])).unwrap());
        st.cut_power_after(None);
        assert!(!st.was_cut());
        st.fail_envelope_puts_after(Some(0));
        assert!(w.put_envelope(&tag, &EnvelopeId([2; 32]), b"y").is_err());
        w.put(b"c", b"3").unwrap();
        st.fail_deletes(true);
        assert!(w.delete(b"c").is_err());
        st.fail_with(Some(StoreError::Full));
        assert_eq!(w.flush(), Err(StoreError::Full));
    }
}

//! Loaded pages, their eviction and their journal.
//!
//! A page document is loaded on demand ([`Replica::ensure_page`]: the saved page, `p/`, plus
//! its journal, `j/`, replayed) and at most [`MAX_LOADED_PAGES`] stay loaded per
//! conversation, least recently used first out. Every envelope applied to a page is written
//! to the page's journal (its id, under a sequence number that is the order of application
//! across the replica); after [`JOURNAL_MAX`] entries, at eviction and at
//! [`Replica::checkpoint`] the page is saved whole and its journal deleted.

use super::*;

/// Journal entries per page before the page is saved whole.
pub(super) const JOURNAL_MAX: u32 = 256;

/// The loaded pages of every conversation, and the journal bookkeeping.
#[derive(Debug, Default)]
pub(super) struct PageCache {
    /// The next journal sequence number (one counter for every page of every conversation).
    journal_seq: u64,
    convs: BTreeMap<ConversationId, Loaded>,
}

/// One conversation's loaded pages.
#[derive(Debug, Default)]
struct Loaded {
    pages: BTreeMap<u32, Page>,
    /// Loaded pages, least recently used first.
    lru: VecDeque<u32>,
    /// Journal entries per page since it was last saved.
    journal: BTreeMap<u32, u32>,
}

impl Loaded {
    /// Saves page `n` whole and deletes its journal, if it is loaded, has journal entries and
    /// nothing staged.
    fn checkpoint<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        n: u32,
    ) -> Result<(), StoreError> {
        if self.journal.get(&n).copied().unwrap_or(0) == 0 {
            return Ok(());
        }
        let Some(page) = self.pages.get_mut(&n) else {
            return Ok(());
        };
        if page.has_staged() {
            // Saving closes Automerge's open transaction: the staged ops would become a
            // change no envelope carries. The page is saved after they are sealed.
            return Ok(());
        }
        let bytes = page.save();
        store.put(&keys::page(id, n), &bytes)?;
        let mut old = Vec::new();
        store.scan_prefix(&keys::journal_prefix(id, n), &mut |k, _| {
            old.push(k.to_vec());
            true
        })?;
        for k in old {
            store.delete(&k)?;
        }
        self.journal.insert(n, 0);
        Ok(())
    }
}

impl PageCache {
    pub(super) fn get(&self, id: &ConversationId, n: u32) -> Option<&Page> {
        self.convs.get(id)?.pages.get(&n)
    }

    pub(super) fn get_mut(&mut self, id: &ConversationId, n: u32) -> Option<&mut Page> {
        self.convs.get_mut(id)?.pages.get_mut(&n)
    }

    /// Pages of `id` loaded now.
    pub(super) fn loaded(&self, id: &ConversationId) -> Vec<u32> {
        self.convs
            .get(id)
            .map(|l| l.pages.keys().copied().collect())
            .unwrap_or_default()
    }

    /// If page `n` is loaded, marks it most recently used and returns true.
    pub(super) fn touch(&mut self, id: &ConversationId, n: u32) -> bool {
        let Some(l) = self.convs.get_mut(id) else {
            return false;
        };
        if !l.pages.contains_key(&n) {
            return false;
        }
        l.lru.retain(|p| *p != n);
        l.lru.push_back(n);
        true
    }

    /// Adds a loaded page as the most recently used (call [`PageCache::evict`] after).
    pub(super) fn insert(&mut self, id: &ConversationId, n: u32, page: Page) {
        let l = self.convs.entry(*id).or_default();
        l.pages.insert(n, page);
        l.lru.push_back(n);
    }

    /// Drops a loaded page without saving it (its document may be half-updated); it reloads
    /// from the store when next needed.
    pub(super) fn discard(&mut self, id: &ConversationId, n: u32) {
        if let Some(l) = self.convs.get_mut(id) {
            l.pages.remove(&n);
            l.lru.retain(|p| *p != n);
        }
    }

    /// Unloads least recently used pages of `id` (saving those with journal entries) until at
    /// most [`MAX_LOADED_PAGES`] are loaded. Pages with staged ops (`staged`) stay.
    pub(super) fn evict<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        staged: &BTreeMap<u32, Staged>,
    ) -> Result<(), StoreError> {
        let Some(l) = self.convs.get_mut(id) else {
            return Ok(());
        };
        loop {
            if l.pages.len() <= MAX_LOADED_PAGES {
                return Ok(());
            }
            let Some(victim) = l.lru.iter().copied().find(|p| !staged.contains_key(p)) else {
                return Ok(());
            };
            l.lru.retain(|p| *p != victim);
            l.checkpoint(store, id, victim)?;
            l.pages.remove(&victim);
        }
    }

    /// Saves page `n` of `id` if it is loaded and has journal entries.
    pub(super) fn checkpoint<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        n: u32,
    ) -> Result<(), StoreError> {
        match self.convs.get_mut(id) {
            Some(l) => l.checkpoint(store, id, n),
            None => Ok(()),
        }
    }

    /// Saves every loaded page that has journal entries, conversation by conversation.
    pub(super) fn checkpoint_all<S: Store>(&mut self, store: &mut S) -> Result<(), StoreError> {
        for (id, l) in &mut self.convs {
            let loaded: Vec<u32> = l.pages.keys().copied().collect();
            for p in loaded {
                l.checkpoint(store, id, p)?;
            }
        }
        Ok(())
    }

    /// The sequence number for the next journal entry.
    pub(super) fn next_journal_seq(&mut self) -> u64 {
        let seq = self.journal_seq;
        self.journal_seq += 1;
        seq
    }

    /// At open: journal entries up to `next - 1` exist, so numbering resumes at `next` or later.
    pub(super) fn resume_journal_seq(&mut self, next: u64) {
        self.journal_seq = self.journal_seq.max(next);
    }

    /// Counts one journal entry of page `n`; true once the page has [`JOURNAL_MAX`] of them
    /// (time to save it whole).
    pub(super) fn note_journal_entry(&mut self, id: &ConversationId, n: u32) -> bool {
        let j = self
            .convs
            .entry(*id)
            .or_default()
            .journal
            .entry(n)
            .or_default();
        *j += 1;
        *j >= JOURNAL_MAX
    }
}

impl<S: Store> Replica<S> {
    pub(super) fn evict_pages(&mut self, id: &ConversationId) -> Result<(), StoreError> {
        let Some(c) = self.convs.get(id) else {
            return Ok(());
        };
        self.pages.evict(&mut self.store, id, &c.staged)
    }

    pub(super) fn checkpoint_page(
        &mut self,
        id: &ConversationId,
        n: u32,
    ) -> Result<(), StoreError> {
        if !self.convs.contains_key(id) {
            return Ok(());
        }
        self.pages.checkpoint(&mut self.store, id, n)
    }

    /// Saves every loaded page that has journal entries (call before shutdown).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.pages.checkpoint_all(&mut self.store)
    }

    pub(super) fn note_page_epoch(
        &mut self,
        id: &ConversationId,
        page: u32,
        epoch: EpochId,
    ) -> Result<(), StoreError> {
        let Some(c) = self.convs.get_mut(id) else {
            return Ok(());
        };
        if c.page_epochs.entry(page).or_default().insert(epoch) {
            self.store.put(&keys::page_epoch(id, page, &epoch), &[])?;
        }
        Ok(())
    }

    /// Writes the journal entry of an envelope applied to a page, and saves the page whole
    /// when its journal is full (unless ops are staged in it).
    pub(super) fn journal(
        &mut self,
        id: &ConversationId,
        page: u32,
        env: &EnvelopeId,
    ) -> Result<(), StoreError> {
        let seq = self.pages.next_journal_seq();
        self.store.put(&keys::journal(id, page, seq), &env.0)?;
        let Some(c) = self.convs.get_mut(id) else {
            return Ok(());
        };
        c.known_pages.insert(page);
        let full = self.pages.note_journal_entry(id, page) && !c.staged.contains_key(&page);
        if full {
            self.checkpoint_page(id, page)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const ID: ConversationId = ConversationId([3; 16]);

    fn actor() -> ActorId {
        DeviceId([1; 32]).actor()
    }

    /// A page with one committed message, `body`.
    fn page_with(n: u32, body: &str) -> Page {
        let mut p = Page::new(n, actor());
        let draft = Draft {
            body: body.into(),
            ..Draft::default()
        };
        p.add_message(
            Hlc {
                ms: 1_790_000_000_000 + u64::from(n),
                counter: 0,
            },
            &draft,
        )
        .unwrap();
        p.commit().unwrap();
        p
    }

    fn journal_keys(st: &MemoryStore, n: u32) -> usize {
        let mut k = 0;
        st.scan_prefix(&keys::journal_prefix(&ID, n), &mut |_, _| {
            k += 1;
            true
        })
        .unwrap();
        k
    }

    /// Loads `n` pages (0..n) with a journal entry each, as the replica would.
    fn filled(st: &mut MemoryStore, n: u32) -> PageCache {
        let mut c = PageCache::default();
        for p in 0..n {
            let seq = c.next_journal_seq();
            st.put(&keys::journal(&ID, p, seq), &[p as u8; 32]).unwrap();
            c.note_journal_entry(&ID, p);
            c.insert(&ID, p, page_with(p, &format!("m{p}")));
        }
        c
    }

    #[test]
    fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
        let mut st = MemoryStore::new();
        let n = MAX_LOADED_PAGES as u32 + 2;
        let mut c = filled(&mut st, n);
        assert_eq!(c.loaded(&ID).len(), n as usize);
        // Page 0 is used again; page 1 has staged ops: both stay.
        assert!(c.touch(&ID, 0));
        let staged = BTreeMap::from([(
            1,
            Staged {
                precedence: Precedence::Routine,
                expiry: None,
                bytes: 0,
            },
        )]);
        c.evict(&mut st, &ID, &staged).unwrap();
        let loaded = c.loaded(&ID);
        assert_eq!(loaded.len(), MAX_LOADED_PAGES);
        assert!(loaded.contains(&0) && loaded.contains(&1));
        assert!(!loaded.contains(&2) && !loaded.contains(&3));
        // The evicted pages were saved and their journals deleted; the others not.
        for p in [2, 3] {
            assert!(st.get(&keys::page(&ID, p)).unwrap().is_some());
            assert_eq!(journal_keys(&st, p), 0);
        }
        for p in [0, 1, 4, 5] {
            assert!(st.get(&keys::page(&ID, p)).unwrap().is_none());
            assert_eq!(journal_keys(&st, p), 1);
        }
        // At the bound, nothing more goes.
        c.evict(&mut st, &ID, &BTreeMap::new()).unwrap();
        assert_eq!(c.loaded(&ID).len(), MAX_LOADED_PAGES);
    }

    #[test]
    fn a_page_reloaded_after_eviction_is_the_same() {
        let mut st = MemoryStore::new();
        let n = MAX_LOADED_PAGES as u32 + 1;
        let mut c = filled(&mut st, n);
        let before = c.get(&ID, 0).unwrap().messages();
        let heads = c.get_mut(&ID, 0).unwrap().heads();
        c.evict(&mut st, &ID, &BTreeMap::new()).unwrap();
        assert!(
            c.get(&ID, 0).is_none(),
            "page 0 was the least recently used"
        );
        assert!(!c.touch(&ID, 0));
        let bytes = st.get(&keys::page(&ID, 0)).unwrap().unwrap();
        let mut again = Page::load(0, &bytes, actor()).unwrap();
        assert_eq!(again.messages(), before);
        assert_eq!(again.heads(), heads);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].body, "m0");
    }

    #[test]
    fn journal_is_checkpointed_when_full_and_numbering_resumes() {
        let mut st = MemoryStore::new();
        let mut c = PageCache::default();
        c.insert(&ID, 7, page_with(7, "x"));
        for i in 1..=JOURNAL_MAX {
            let seq = c.next_journal_seq();
            assert_eq!(seq, u64::from(i) - 1);
            st.put(&keys::journal(&ID, 7, seq), &[1; 32]).unwrap();
            assert_eq!(c.note_journal_entry(&ID, 7), i == JOURNAL_MAX, "entry {i}");
        }
        assert_eq!(journal_keys(&st, 7), JOURNAL_MAX as usize);
        c.checkpoint(&mut st, &ID, 7).unwrap();
        assert_eq!(journal_keys(&st, 7), 0);
        let saved = st.get(&keys::page(&ID, 7)).unwrap().unwrap();
        // Nothing new since: a second checkpoint writes nothing.
        let writes = st.unflushed();
        c.checkpoint(&mut st, &ID, 7).unwrap();
        c.checkpoint_all(&mut st).unwrap();
        assert_eq!(st.unflushed(), writes);
        assert_eq!(st.get(&keys::page(&ID, 7)).unwrap().unwrap(), saved);
        // The count starts again from zero.
        assert!(!c.note_journal_entry(&ID, 7));
        // Numbering never goes back.
        c.resume_journal_seq(3);
        assert_eq!(c.next_journal_seq(), u64::from(JOURNAL_MAX));
        c.resume_journal_seq(1000);
        assert_eq!(c.next_journal_seq(), 1000);
    }
}

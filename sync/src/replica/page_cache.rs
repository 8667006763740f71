//! Loaded pages, their eviction, their journal and their own messages.
//!
//! A page document is loaded on demand ([`Replica::ensure_page`]: the saved page, `p/`, plus
//! its journal replayed) and stays loaded until it is the least recently used page of its
//! conversation past [`MAX_LOADED_PAGES`], or of the whole replica past
//! [`Config::max_loaded_pages`] ([`MAX_LOADED_PAGES_TOTAL`] by default). Pages only read
//! since they were loaded (no envelope applied to them) have a smaller bound of their own,
//! [`Config::max_read_pages`] ([`MAX_READ_PAGES_TOTAL`]): dropping one costs a reload, never
//! a save, so reading every conversation does not keep a page of each in memory, while the
//! pages being written stay loaded (saving and reloading one per message would be the cost
//! otherwise). Pages with staged ops stay (saving them would commit the ops outside any
//! envelope).
//!
//! **Journal.** Every envelope applied to a page is written to the journal: `l/` ‖ seq →
//! conversation ‖ page ‖ envelope id, seq being one counter for the whole replica, so every
//! entry is appended at the end of one key range (sled's cheap case: docs/performance.md,
//! "Where the bytes go"). The seqs of each page's entries are kept in memory (bounded by the
//! pages with entries: loaded pages, and those a crash left); after [`JOURNAL_MAX`] entries,
//! at eviction and at [`Replica::checkpoint`] the page is saved whole and exactly its entries
//! are deleted.
//!
//! **Own messages.** The envelope that carried each message written on this device
//! (`MessageInfo::envelope`) is kept with the loaded page, filled when the envelope is
//! sealed, recovered by the journal replay (the replayed envelope's changes create the
//! message keys), and saved with the page (the saved value's prefix, see [`encode_saved`]):
//! no record per message. Stores written before (issue 11) hold `m/` records instead: they
//! are read when a page without the saved list loads, and deleted once the page is saved.

use super::*;

/// Journal entries per page before the page is saved whole.
pub(super) const JOURNAL_MAX: u32 = 256;

/// The prefix of a saved page that carries its own messages' envelope ids (`p/` values
/// written before issue 11 are the bare [`Page::save`] bytes, which start otherwise).
const SAVED_MAGIC: &[u8; 4] = b"vpo1";

/// A saved page: `vpo1` ‖ groups (varint) ‖ per group: envelope id (32) ‖ messages (varint)
/// ‖ per message: 0 ‖ packed HLC u64 BE (a key [`page::message_key`] of this device's
/// actor) or 1 ‖ the key (length-prefixed UTF-8); then the [`Page::save`] bytes.
pub(super) fn encode_saved(
    own: &BTreeMap<String, EnvelopeId>,
    actor: &[u8],
    page_bytes: &[u8],
) -> Vec<u8> {
    let mut by_env: BTreeMap<EnvelopeId, Vec<&str>> = BTreeMap::new();
    for (k, e) in own {
        by_env.entry(*e).or_default().push(k);
    }
    let mut w = Writer::with_capacity(page_bytes.len() + own.len() * 42 + 8);
    w.raw(SAVED_MAGIC);
    w.varint(by_env.len() as u64);
    for (e, ks) in &by_env {
        w.raw(&e.0);
        w.varint(ks.len() as u64);
        for k in ks {
            match page::parse_key(k) {
                Some((hlc, _)) if page::message_key(hlc, actor) == *k => {
                    w.u8(0);
                    w.raw(&hlc.pack().to_be_bytes());
                }
                _ => {
                    w.u8(1);
                    w.str(k);
                }
            }
        }
    }
    w.raw(page_bytes);
    w.into_vec()
}

/// Own messages of a page: message key → the envelope that carried it.
pub(super) type OwnMessages = BTreeMap<String, EnvelopeId>;

/// Reads a saved page: its own messages (`None` for a page saved before issue 11) and the
/// [`Page::save`] bytes.
pub(super) fn decode_saved<'a>(
    bytes: &'a [u8],
    actor: &[u8],
) -> Result<(Option<OwnMessages>, &'a [u8]), DecodeError> {
    let Some(rest) = bytes.strip_prefix(SAVED_MAGIC.as_slice()) else {
        return Ok((None, bytes));
    };
    let mut r = Reader::new(rest);
    let mut own = BTreeMap::new();
    let groups = r.count("own envelopes", PAGE_CAPACITY as usize * 4, 33)?;
    for _ in 0..groups {
        let e = EnvelopeId(r.array::<32>("envelope id")?);
        let n = r.count("own messages", PAGE_CAPACITY as usize * 4, 2)?;
        for _ in 0..n {
            let k = match r.u8("own message form")? {
                0 => {
                    page::message_key(Hlc::unpack(u64::from_be_bytes(r.array::<8>("hlc")?)), actor)
                }
                1 => r.str("message key", 256)?.to_string(),
                _ => return Err(DecodeError::Invalid("own message form")),
            };
            own.insert(k, e);
        }
    }
    Ok((Some(own), r.rest()))
}

/// The loaded pages of every conversation, and the journal bookkeeping.
#[derive(Debug)]
pub(super) struct PageCache {
    /// The next journal sequence number (one counter for every page of every conversation).
    journal_seq: u64,
    convs: BTreeMap<ConversationId, Loaded>,
    /// Loaded pages of every conversation by last use (a counter), least recent first.
    lru: BTreeMap<u64, (ConversationId, u32)>,
    /// The use counter.
    clock: u64,
    /// Pages loaded, every conversation together.
    loaded: usize,
    /// At most this many pages loaded, every conversation together (pages with staged ops
    /// may exceed it until they are sealed).
    max_total: usize,
    /// Loaded pages no envelope was applied to since they were loaded.
    read_only: usize,
    /// At most this many of them (the least recently used go first).
    max_read: usize,
    /// The store may hold `m/` records (written before issue 11): checked once at open.
    pub(super) legacy_own: bool,
}

impl Default for PageCache {
    fn default() -> Self {
        Self::new(MAX_LOADED_PAGES_TOTAL, MAX_READ_PAGES_TOTAL)
    }
}

/// One loaded page.
#[derive(Debug)]
struct Slot {
    page: Page,
    /// Its place in [`PageCache::lru`].
    used: u64,
    /// An envelope was applied to it since it was loaded (it counts in
    /// [`PageCache::read_only`] until then).
    written: bool,
    /// Messages written on this device → the envelope that carried each.
    own: BTreeMap<String, EnvelopeId>,
    /// `m/` records of this page were read at load: the page is saved at the next
    /// checkpoint (with them in its own list) and they are deleted.
    legacy: bool,
}

/// One conversation's loaded pages and journals.
#[derive(Debug, Default)]
struct Loaded {
    /// Boxed: a page document is a few KB inline, and a map's node holds eleven entries and
    /// stays allocated when emptied, so unboxed slots kept ~49 KB per conversation ever
    /// read (heaptrack, issue 11: 49 MB for 1,000 conversations with no page loaded).
    pages: BTreeMap<u32, Box<Slot>>,
    /// Journal seqs per page since it was last saved (loaded or not), in application order.
    journal: BTreeMap<u32, Vec<u64>>,
}

impl Loaded {
    /// Saves page `n` whole, deletes its journal entries and (for a page loaded from `m/`
    /// records) those records, if it is loaded, has something to save and nothing staged.
    fn checkpoint<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        n: u32,
        actor: &[u8],
    ) -> Result<(), StoreError> {
        let seqs = self.journal.get(&n).map_or(0, Vec::len);
        let Some(slot) = self.pages.get_mut(&n) else {
            return Ok(());
        };
        if seqs == 0 && !slot.legacy {
            return Ok(());
        }
        if slot.page.has_staged() {
            // Saving closes Automerge's open transaction: the staged ops would become a
            // change no envelope carries. The page is saved after they are sealed.
            return Ok(());
        }
        let bytes = encode_saved(&slot.own, actor, &slot.page.save());
        // The saved page first: a crash after any of the writes below leaves entries that
        // replay onto it (changes it holds are skipped) and records it holds already.
        store.put(&keys::page(id, n), &bytes)?;
        if let Some(seqs) = self.journal.get(&n) {
            for s in seqs {
                store.delete(&keys::journal(*s))?;
            }
        }
        self.journal.remove(&n);
        if slot.legacy {
            let mut old = Vec::new();
            store.scan_keys(&keys::own_messages_prefix(id, n), &mut |k| {
                old.push(k.to_vec());
                true
            })?;
            for k in old {
                store.delete(&k)?;
            }
            slot.legacy = false;
        }
        Ok(())
    }
}

impl PageCache {
    /// A cache of at most `max_total` loaded pages (every conversation together), of which
    /// at most `max_read` only read since they were loaded.
    pub(super) fn new(max_total: usize, max_read: usize) -> Self {
        Self {
            journal_seq: 0,
            convs: BTreeMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            loaded: 0,
            max_total: max_total.max(1),
            read_only: 0,
            max_read: max_read.max(1),
            legacy_own: false,
        }
    }

    pub(super) fn get(&self, id: &ConversationId, n: u32) -> Option<&Page> {
        Some(&self.convs.get(id)?.pages.get(&n)?.page)
    }

    pub(super) fn get_mut(&mut self, id: &ConversationId, n: u32) -> Option<&mut Page> {
        Some(&mut self.convs.get_mut(id)?.pages.get_mut(&n)?.page)
    }

    /// Pages of `id` loaded now.
    pub(super) fn loaded(&self, id: &ConversationId) -> Vec<u32> {
        self.convs
            .get(id)
            .map(|l| l.pages.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Pages loaded now, every conversation together.
    pub(super) fn loaded_total(&self) -> usize {
        self.loaded
    }

    /// Loaded pages no envelope was applied to since they were loaded.
    #[cfg(test)]
    pub(super) fn read_only_total(&self) -> usize {
        self.read_only
    }

    /// More pages are loaded than a bound allows (some stayed because they were staged).
    pub(super) fn over_bound(&self, id: &ConversationId) -> bool {
        self.loaded > self.max_total
            || self.read_only > self.max_read
            || self
                .convs
                .get(id)
                .is_some_and(|l| l.pages.len() > MAX_LOADED_PAGES)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// If page `n` is loaded, marks it most recently used and returns true.
    pub(super) fn touch(&mut self, id: &ConversationId, n: u32) -> bool {
        let t = self.clock + 1;
        let Some(slot) = self.convs.get_mut(id).and_then(|l| l.pages.get_mut(&n)) else {
            return false;
        };
        self.lru.remove(&slot.used);
        slot.used = t;
        self.clock = t;
        self.lru.insert(t, (*id, n));
        true
    }

    /// Adds a loaded page as the most recently used, with its own messages (call
    /// [`PageCache::evict`] after). `legacy`: they were read from `m/` records.
    pub(super) fn insert(
        &mut self,
        id: &ConversationId,
        n: u32,
        page: Page,
        own: BTreeMap<String, EnvelopeId>,
        legacy: bool,
    ) {
        self.discard(id, n);
        let used = self.tick();
        self.lru.insert(used, (*id, n));
        self.loaded += 1;
        self.read_only += 1;
        self.convs.entry(*id).or_default().pages.insert(
            n,
            Box::new(Slot {
                page,
                used,
                written: false,
                own,
                legacy,
            }),
        );
    }

    /// Drops a loaded page without saving it (its document may be half-updated); it reloads
    /// from the store when next needed (its own messages with it: saved, or replayed).
    pub(super) fn discard(&mut self, id: &ConversationId, n: u32) {
        if let Some(slot) = self.convs.get_mut(id).and_then(|l| l.pages.remove(&n)) {
            self.lru.remove(&slot.used);
            self.loaded -= 1;
            if !slot.written {
                self.read_only -= 1;
            }
        }
    }

    /// The envelope that carried own message `key` of page `n`, if the page is loaded.
    pub(super) fn own_envelope(
        &self,
        id: &ConversationId,
        n: u32,
        key: &str,
    ) -> Option<EnvelopeId> {
        self.convs.get(id)?.pages.get(&n)?.own.get(key).copied()
    }

    /// Records the envelope that carried own messages `msgs` of page `n` (loaded).
    pub(super) fn note_own(
        &mut self,
        id: &ConversationId,
        n: u32,
        msgs: &[MessageId],
        e: EnvelopeId,
    ) {
        if let Some(slot) = self.convs.get_mut(id).and_then(|l| l.pages.get_mut(&n)) {
            for m in msgs {
                slot.own.insert(m.key.clone(), e);
            }
        }
    }

    /// Unloads least recently used pages (saving those with something to save) until `id`
    /// has at most [`MAX_LOADED_PAGES`] loaded and the replica at most its total. Pages
    /// `staged(conversation, page)` says have staged ops stay, and so does `keep` (the page
    /// just loaded).
    pub(super) fn evict<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        keep: u32,
        actor: &[u8],
        staged: &dyn Fn(&ConversationId, u32) -> bool,
    ) -> Result<(), StoreError> {
        let stays = |c: &ConversationId, n: u32, s: &Slot| {
            (*c == *id && n == keep) || staged(c, n) || s.page.has_staged()
        };
        // The conversation's own bound.
        while let Some(l) = self.convs.get(id) {
            if l.pages.len() <= MAX_LOADED_PAGES {
                break;
            }
            let Some(victim) = l
                .pages
                .iter()
                .filter(|(n, s)| !stays(id, **n, s))
                .min_by_key(|(_, s)| s.used)
                .map(|(n, _)| *n)
            else {
                break;
            };
            self.unload(store, id, victim, actor)?;
        }
        // The bound of every conversation together, then that of the pages only read.
        for read_only in [false, true] {
            while if read_only {
                self.read_only > self.max_read
            } else {
                self.loaded > self.max_total
            } {
                let Some((c, n)) = self.lru.values().copied().find(|(c, n)| {
                    self.convs
                        .get(c)
                        .and_then(|l| l.pages.get(n))
                        .is_some_and(|s| !(stays(c, *n, s) || read_only && s.written))
                }) else {
                    break;
                };
                self.unload(store, &c, n, actor)?;
            }
        }
        Ok(())
    }

    /// Saves page `n` of `id` (if it has something to save) and drops it.
    fn unload<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        n: u32,
        actor: &[u8],
    ) -> Result<(), StoreError> {
        if let Some(l) = self.convs.get_mut(id) {
            l.checkpoint(store, id, n, actor)?;
        }
        self.discard(id, n);
        Ok(())
    }

    /// Saves page `n` of `id` if it is loaded and has something to save.
    pub(super) fn checkpoint<S: Store>(
        &mut self,
        store: &mut S,
        id: &ConversationId,
        n: u32,
        actor: &[u8],
    ) -> Result<(), StoreError> {
        match self.convs.get_mut(id) {
            Some(l) => l.checkpoint(store, id, n, actor),
            None => Ok(()),
        }
    }

    /// Saves every loaded page that has something to save, conversation by conversation.
    pub(super) fn checkpoint_all<S: Store>(
        &mut self,
        store: &mut S,
        actor: &[u8],
    ) -> Result<(), StoreError> {
        for (id, l) in &mut self.convs {
            let loaded: Vec<u32> = l.pages.keys().copied().collect();
            for p in loaded {
                l.checkpoint(store, id, p, actor)?;
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

    /// Counts journal entry `seq` of page `n`; true once the page has [`JOURNAL_MAX`] of
    /// them (time to save it whole).
    pub(super) fn note_journal_entry(&mut self, id: &ConversationId, n: u32, seq: u64) -> bool {
        let l = self.convs.entry(*id).or_default();
        if let Some(slot) = l.pages.get_mut(&n)
            && !slot.written
        {
            slot.written = true;
            self.read_only -= 1;
        }
        let j = l.journal.entry(n).or_default();
        j.push(seq);
        j.len() >= JOURNAL_MAX as usize
    }

    /// The seqs of page `n`'s journal entries, in application order.
    pub(super) fn journal_seqs(&self, id: &ConversationId, n: u32) -> Vec<u64> {
        self.convs
            .get(id)
            .and_then(|l| l.journal.get(&n))
            .cloned()
            .unwrap_or_default()
    }

    /// Journal entries held, every page together (for tests and reports).
    pub(super) fn journal_len(&self) -> usize {
        self.convs
            .values()
            .flat_map(|l| l.journal.values())
            .map(Vec::len)
            .sum()
    }
}

impl<S: Store> Replica<S> {
    pub(super) fn evict_pages(&mut self, id: &ConversationId, keep: u32) -> Result<(), StoreError> {
        let actor = self.me.device_id().actor().to_bytes().to_vec();
        let convs = &self.convs;
        let staged =
            |c: &ConversationId, n: u32| convs.get(c).is_some_and(|c| c.staged.contains_key(&n));
        self.pages.evict(&mut self.store, id, keep, &actor, &staged)
    }

    pub(super) fn checkpoint_page(
        &mut self,
        id: &ConversationId,
        n: u32,
    ) -> Result<(), StoreError> {
        if !self.convs.contains_key(id) {
            return Ok(());
        }
        let actor = self.me.device_id().actor();
        self.pages
            .checkpoint(&mut self.store, id, n, actor.to_bytes())
    }

    /// Saves every loaded page that has journal entries (call before shutdown).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let actor = self.me.device_id().actor();
        self.pages.checkpoint_all(&mut self.store, actor.to_bytes())
    }

    /// Pages loaded now, every conversation together (for tests and reports).
    pub fn loaded_pages(&self) -> usize {
        self.pages.loaded_total()
    }

    /// Journal entries not yet folded into a saved page (for tests and reports).
    pub fn journal_len(&self) -> usize {
        self.pages.journal_len()
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
        self.store
            .put(&keys::journal(seq), &keys::journal_value(id, page, env))?;
        let Some(c) = self.convs.get_mut(id) else {
            return Ok(());
        };
        c.known_pages.insert(page);
        let full = self.pages.note_journal_entry(id, page, seq) && !c.staged.contains_key(&page);
        if full {
            self.checkpoint_page(id, page)?;
        }
        Ok(())
    }

    /// Records the envelope that carried the messages `changes` created, if this device
    /// signed it (an own envelope that came back from elsewhere reads as one sealed here).
    pub(super) fn note_own_changes<'c>(
        &mut self,
        id: &ConversationId,
        page: u32,
        env: EnvelopeId,
        signer: DeviceId,
        changes: impl IntoIterator<Item = &'c Change>,
    ) {
        if signer != self.me.device_id() {
            return;
        }
        let created: Vec<MessageId> = changes
            .into_iter()
            .flat_map(|c| own_created(c, page))
            .collect();
        self.pages.note_own(id, page, &created, env);
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

    /// Journal entries of page `n` of [`ID`] in the store.
    fn journal_keys(st: &MemoryStore, n: u32) -> usize {
        let mut k = 0;
        st.scan_prefix(keys::JOURNAL, &mut |k2, v| {
            if keys::parse_journal(k2, v).is_some_and(|(_, c, p, _)| c == ID && p == n) {
                k += 1;
            }
            true
        })
        .unwrap();
        k
    }

    fn put_entry(st: &mut MemoryStore, c: &mut PageCache, p: u32) -> bool {
        let seq = c.next_journal_seq();
        st.put(
            &keys::journal(seq),
            &keys::journal_value(&ID, p, &EnvelopeId([p as u8; 32])),
        )
        .unwrap();
        c.note_journal_entry(&ID, p, seq)
    }

    /// Loads `n` pages (0..n) with a journal entry each, as the replica would.
    fn filled(st: &mut MemoryStore, n: u32, max_total: usize) -> PageCache {
        let mut c = PageCache::new(max_total, max_total);
        for p in 0..n {
            put_entry(st, &mut c, p);
            c.insert(
                &ID,
                p,
                page_with(p, &format!("m{p}")),
                BTreeMap::new(),
                false,
            );
        }
        c
    }

    fn a() -> Vec<u8> {
        actor().to_bytes().to_vec()
    }

    #[test]
    fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
        let mut st = MemoryStore::new();
        let n = MAX_LOADED_PAGES as u32 + 2;
        let mut c = filled(&mut st, n, MAX_LOADED_PAGES_TOTAL);
        assert_eq!(c.loaded(&ID).len(), n as usize);
        // Page 0 is used again; page 1 has staged ops: both stay.
        assert!(c.touch(&ID, 0));
        let staged = |_: &ConversationId, p: u32| p == 1;
        c.evict(&mut st, &ID, 5, &a(), &staged).unwrap();
        let loaded = c.loaded(&ID);
        assert_eq!(loaded.len(), MAX_LOADED_PAGES);
        assert_eq!(c.loaded_total(), MAX_LOADED_PAGES);
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
        c.evict(&mut st, &ID, 5, &a(), &|_, _| false).unwrap();
        assert_eq!(c.loaded(&ID).len(), MAX_LOADED_PAGES);
    }

    #[test]
    fn the_page_just_loaded_stays_even_when_every_other_is_staged() {
        let mut st = MemoryStore::new();
        let n = MAX_LOADED_PAGES as u32 + 1;
        let mut c = filled(&mut st, n, MAX_LOADED_PAGES_TOTAL);
        let keep = n - 1;
        c.evict(&mut st, &ID, keep, &a(), &|_, p| p != keep)
            .unwrap();
        assert_eq!(
            c.loaded(&ID).len(),
            n as usize,
            "over the bound, nothing to evict"
        );
        assert!(c.get(&ID, keep).is_some());
    }

    #[test]
    fn a_page_reloaded_after_eviction_is_the_same() {
        let mut st = MemoryStore::new();
        let n = MAX_LOADED_PAGES as u32 + 1;
        let mut c = filled(&mut st, n, MAX_LOADED_PAGES_TOTAL);
        let before = c.get(&ID, 0).unwrap().messages();
        let heads = c.get_mut(&ID, 0).unwrap().heads();
        c.evict(&mut st, &ID, n - 1, &a(), &|_, _| false).unwrap();
        assert!(
            c.get(&ID, 0).is_none(),
            "page 0 was the least recently used"
        );
        assert!(!c.touch(&ID, 0));
        let bytes = st.get(&keys::page(&ID, 0)).unwrap().unwrap();
        let (own, doc) = decode_saved(&bytes, &a()).unwrap();
        assert_eq!(own, Some(BTreeMap::new()));
        let mut again = Page::load(0, doc, actor()).unwrap();
        assert_eq!(again.messages(), before);
        assert_eq!(again.heads(), heads);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].body, "m0");
    }

    #[test]
    fn journal_is_checkpointed_when_full_and_numbering_resumes() {
        let mut st = MemoryStore::new();
        let mut c = PageCache::default();
        c.insert(&ID, 7, page_with(7, "x"), BTreeMap::new(), false);
        // Another page's entries, interleaved: the checkpoint of page 7 leaves them.
        put_entry(&mut st, &mut c, 8);
        for i in 1..=JOURNAL_MAX {
            assert_eq!(put_entry(&mut st, &mut c, 7), i == JOURNAL_MAX, "entry {i}");
        }
        put_entry(&mut st, &mut c, 8);
        assert_eq!(journal_keys(&st, 7), JOURNAL_MAX as usize);
        assert_eq!(c.journal_seqs(&ID, 7).len(), JOURNAL_MAX as usize);
        c.checkpoint(&mut st, &ID, 7, &a()).unwrap();
        assert_eq!(journal_keys(&st, 7), 0);
        assert_eq!(journal_keys(&st, 8), 2, "exactly page 7's entries went");
        assert_eq!(c.journal_seqs(&ID, 8), vec![0, u64::from(JOURNAL_MAX) + 1]);
        assert!(c.journal_seqs(&ID, 7).is_empty());
        let saved = st.get(&keys::page(&ID, 7)).unwrap().unwrap();
        // Nothing new since: a second checkpoint writes nothing.
        let writes = st.unflushed();
        c.checkpoint(&mut st, &ID, 7, &a()).unwrap();
        c.checkpoint_all(&mut st, &a()).unwrap();
        assert_eq!(st.unflushed(), writes);
        assert_eq!(st.get(&keys::page(&ID, 7)).unwrap().unwrap(), saved);
        // The count starts again from zero.
        assert!(!put_entry(&mut st, &mut c, 7));
        // Numbering never goes back.
        let next = c.next_journal_seq();
        assert_eq!(next, u64::from(JOURNAL_MAX) + 3);
        c.resume_journal_seq(3);
        assert_eq!(c.next_journal_seq(), next + 1);
        c.resume_journal_seq(1000);
        assert_eq!(c.next_journal_seq(), 1000);
    }

    #[test]
    fn the_global_bound_evicts_the_least_recently_used_of_any_conversation() {
        let mut st = MemoryStore::new();
        let mut c = PageCache::new(3, 3);
        let convs: Vec<ConversationId> = (0..5).map(|i| ConversationId([i; 16])).collect();
        for (i, id) in convs.iter().enumerate() {
            c.insert(
                id,
                0,
                page_with(0, &format!("c{i}")),
                BTreeMap::new(),
                false,
            );
            if i == 2 {
                // Conversation 0 is used again: conversation 1 is now the oldest.
                assert!(c.touch(&convs[0], 0));
            }
            c.evict(&mut st, id, 0, &a(), &|c2, _| *c2 == convs[3])
                .unwrap();
            assert!(c.loaded_total() <= 3, "{} loaded", c.loaded_total());
        }
        // 3 is staged (stays), 4 was just loaded, 0 was used after 1 and 2.
        let loaded: Vec<usize> = (0..5).filter(|i| c.get(&convs[*i], 0).is_some()).collect();
        assert_eq!(loaded, vec![0, 3, 4]);
    }

    #[test]
    fn pages_only_read_have_a_smaller_bound_and_written_pages_stay() {
        let mut st = MemoryStore::new();
        let mut c = PageCache::new(10, 2);
        let convs: Vec<ConversationId> = (0..6).map(|i| ConversationId([i; 16])).collect();
        for (i, id) in convs.iter().enumerate() {
            c.insert(
                id,
                0,
                page_with(0, &format!("c{i}")),
                BTreeMap::new(),
                false,
            );
            c.evict(&mut st, id, 0, &a(), &|_, _| false).unwrap();
            if i < 2 {
                // An envelope is applied to the pages of conversations 0 and 1.
                let seq = c.next_journal_seq();
                c.note_journal_entry(id, 0, seq);
            }
            assert!(
                c.read_only_total() <= 2,
                "{} read only",
                c.read_only_total()
            );
        }
        // 0 and 1 were written and stay; of the pages only read, the two newest stay.
        let loaded: Vec<usize> = (0..6).filter(|i| c.get(&convs[*i], 0).is_some()).collect();
        assert_eq!(loaded, vec![0, 1, 4, 5]);
        assert_eq!((c.loaded_total(), c.read_only_total()), (4, 2));
        // A page only read left without a save: nothing was written to the store.
        assert!(st.get(&keys::page(&convs[2], 0)).unwrap().is_none());
        // Unloading a written page takes it out of neither count wrongly.
        c.discard(&convs[0], 0);
        c.discard(&convs[4], 0);
        assert_eq!((c.loaded_total(), c.read_only_total()), (2, 1));
    }

    #[test]
    fn saved_pages_carry_their_own_messages_compactly() {
        let me = a();
        let k1 = page::message_key(
            Hlc {
                ms: 1_790_000_000_000,
                counter: 3,
            },
            &me,
        );
        let k2 = page::message_key(
            Hlc {
                ms: 1_790_000_000_001,
                counter: 0,
            },
            &me,
        );
        // A key that is not this device's form (never expected) is kept whole.
        let odd = "not-a-message-key".to_string();
        let own = BTreeMap::from([
            (k1.clone(), EnvelopeId([1; 32])),
            (k2.clone(), EnvelopeId([1; 32])),
            (odd.clone(), EnvelopeId([2; 32])),
        ]);
        let bytes = encode_saved(&own, &me, b"DOC");
        // magic 4, groups 1; group 1: id 32, count 1, 2 × 9; group 2: id 32, count 1, 1 + 1 + 17.
        assert_eq!(bytes.len(), 4 + 1 + 32 + 1 + 18 + 32 + 1 + 19 + 3);
        let (back, doc) = decode_saved(&bytes, &me).unwrap();
        assert_eq!(back, Some(own));
        assert_eq!(doc, b"DOC");
        // A page saved before issue 11 (bare save bytes) has no list.
        let mut p = page_with(0, "old");
        let old = p.save();
        let (none, doc) = decode_saved(&old, &me).unwrap();
        assert_eq!(none, None);
        assert_eq!(doc, old.as_slice());
        // Truncated lists are refused, not read past.
        for cut in 4..bytes.len() - 3 {
            assert!(decode_saved(&bytes[..cut], &me).is_err(), "cut {cut}");
        }
    }
}

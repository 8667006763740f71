//! Loaded pages, their eviction and their journal.

use super::*;

impl<S: Store> Replica<S> {
    pub(super) fn evict_pages(&mut self, id: &ConversationId) -> Result<(), StoreError> {
        loop {
            let Some(c) = self.convs.get_mut(id) else {
                return Ok(());
            };
            if c.pages.len() <= MAX_LOADED_PAGES {
                return Ok(());
            }
            let Some(victim) = c.lru.iter().copied().find(|p| !c.staged.contains_key(p)) else {
                return Ok(());
            };
            c.lru.retain(|p| *p != victim);
            self.checkpoint_page(id, victim)?;
            if let Some(c) = self.convs.get_mut(id) {
                c.pages.remove(&victim);
            }
        }
    }

    pub(super) fn checkpoint_page(
        &mut self,
        id: &ConversationId,
        n: u32,
    ) -> Result<(), StoreError> {
        let Some(c) = self.convs.get_mut(id) else {
            return Ok(());
        };
        if c.journal.get(&n).copied().unwrap_or(0) == 0 {
            return Ok(());
        }
        let Some(page) = c.pages.get_mut(&n) else {
            return Ok(());
        };
        let bytes = page.save();
        self.store.put(&keys::page(id, n), &bytes)?;
        let mut old = Vec::new();
        self.store
            .scan_prefix(&keys::journal_prefix(id, n), &mut |k, _| {
                old.push(k.to_vec());
                true
            })?;
        for k in old {
            self.store.delete(&k)?;
        }
        c.journal.insert(n, 0);
        Ok(())
    }

    /// Saves every loaded page that has journal entries (call before shutdown).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let work: Vec<(ConversationId, u32)> = self
            .convs
            .iter()
            .flat_map(|(id, c)| c.pages.keys().map(move |p| (*id, *p)))
            .collect();
        for (id, p) in work {
            self.checkpoint_page(&id, p)?;
        }
        Ok(())
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

    pub(super) fn journal(
        &mut self,
        id: &ConversationId,
        page: u32,
        env: &EnvelopeId,
    ) -> Result<(), StoreError> {
        let seq = self.journal_seq;
        self.journal_seq += 1;
        self.store.put(&keys::journal(id, page, seq), &env.0)?;
        let full = {
            let Some(c) = self.convs.get_mut(id) else {
                return Ok(());
            };
            c.known_pages.insert(page);
            let j = c.journal.entry(page).or_default();
            *j += 1;
            *j >= JOURNAL_MAX && !c.staged.contains_key(&page)
        };
        if full {
            self.checkpoint_page(id, page)?;
        }
        Ok(())
    }
}

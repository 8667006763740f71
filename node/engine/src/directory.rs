//! The signed directory on links, and role addressing (issue 12, docs/organisations.md,
//! "The directory" and "Messages to a role").
//!
//! **Spread.** Once a peer's chain verified against a root this device pinned, each side
//! takes the other's chain into its directory and lists the ids of every record it holds
//! (`DirHave`, at most [`MAX_IDS_PER_FRAME`] a frame, the last marked); on the final one
//! the other side sends, once per link, the records it holds that the list lacked
//! (`Directory`, at most [`MAX_DIR_RECORDS_PER_FRAME`] a frame). A record learnt goes on at
//! once to every other verified link that has not listed or been sent it. Records are taken
//! in only when they verify here (`vaarta_sync::org::Directory::insert`), from verified
//! peers only; a forged or malformed one is a fault, one that does not verify here (another
//! organisation's, expired, revoked, a full directory) is passed over and counted
//! (`Counters::directory_ignored`). New ones are reported ([`Event::DirectoryLearnt`],
//! which the daemon saves).
//!
//! **Role addressing.** [`Engine::send_to_role`] resolves a role (its title in any script,
//! its key, or `unit/key`) to its holder now and that person's devices that verify now,
//! and sends in the role's conversation: one this device created, whose title ends with
//! `role <16 hex digits of the role id>`, in which it is the only admin and whose other
//! members are exactly the holder's devices. It is created on first use (history
//! `FromJoin`: a new holder reads only what follows their joining) and brought in line
//! before every message and whenever the directory or the revocations change: the old
//! holder's devices are removed (an ordinary signed removal; the key rotates at the admin's
//! next duty, so they open nothing sent after) and the new holder's added. A vacant role
//! (every assignment expired or revoked) leaves the sender alone in it.

use vaarta_sync::ids::{ConversationId, DeviceId};
use vaarta_sync::membership::History;
use vaarta_sync::org::directory::record_id;
use vaarta_sync::org::{CredError, Judge, MAX_DIRECTORY_RECORDS, RoleId};
use vaarta_sync::page::{Draft, MessageId};
use vaarta_sync::store::Store;

use crate::wire::{Frame, MAX_DIR_RECORDS_PER_FRAME, MAX_IDS_PER_FRAME};
use crate::{Credentials, Engine, EngineError, Event, Fault, LinkId, PeerCredential};

/// A batch stopped at a forged or malformed record: the new records before it, and why.
type Stopped = (Vec<Vec<u8>>, CredError);

/// The end of a role conversation's title: `role ` and the role's short id.
pub fn role_marker(role: &RoleId) -> String {
    format!("role {}", role.short())
}

impl<S: Store> Engine<S> {
    fn link_verified(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| matches!(l.credential, Some(PeerCredential::Verified(_))))
    }

    /// Takes `records` into the directory, judged at `now`; returns the new ones. Errors
    /// other than "forged or malformed" are counted and passed over; a forged or malformed
    /// record stops the batch with its error.
    fn learn_directory(&mut self, records: &[Vec<u8>], now: u64) -> Result<Vec<Vec<u8>>, Stopped> {
        let mut new = Vec::new();
        for bytes in records {
            let c = &mut self.credentials;
            let j = Judge {
                pinned: &c.pinned,
                revocations: &c.revocations,
                now,
                skew: Credentials::SKEW_MS,
            };
            match c.directory.insert(bytes, &j) {
                Ok(true) => new.push(bytes.clone()),
                Ok(false) => {}
                Err(
                    e @ (CredError::Decode(_)
                    | CredError::BadSignature(_)
                    | CredError::WrongKind { .. }
                    | CredError::NotARegistrar { .. }
                    | CredError::RevokerCertMismatch { .. }),
                ) => return Err((new, e)),
                Err(e) => {
                    tracing::debug!(error = %e, "a directory record is not taken in");
                    self.counters.directory_ignored += 1;
                }
            }
        }
        Ok(new)
    }

    /// Reports new records, sends them on to every other verified link that lacks them,
    /// and brings the role conversations in line.
    fn directory_grew(&mut self, from: Option<LinkId>, new: Vec<Vec<u8>>) {
        if new.is_empty() {
            return;
        }
        self.event(Event::DirectoryLearnt {
            records: new.clone(),
        });
        let links: Vec<LinkId> = self
            .links
            .ids()
            .into_iter()
            .filter(|l| Some(*l) != from && self.link_verified(*l))
            .collect();
        for link in links {
            self.send_directory_records(link, &new);
        }
        let now = self.now;
        self.sync_role_conversations(now);
    }

    /// Sends `records` the peer on `link` has not listed or been sent, in frames of at most
    /// [`MAX_DIR_RECORDS_PER_FRAME`].
    fn send_directory_records(&mut self, link: LinkId, records: &[Vec<u8>]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let mut out = Vec::new();
        for r in records {
            let id = record_id(r);
            if l.dir_peer_has.contains(&id) {
                continue;
            }
            if l.dir_peer_has.len() < MAX_DIRECTORY_RECORDS {
                l.dir_peer_has.insert(id);
            }
            out.push(r.clone());
        }
        for chunk in out.chunks(MAX_DIR_RECORDS_PER_FRAME) {
            self.send(
                link,
                Frame::Directory {
                    records: chunk.to_vec(),
                },
            );
        }
    }

    /// A peer's chain verified on `link`: its chain goes into the directory, and it gets the
    /// list of what we hold.
    pub(crate) fn share_directory(&mut self, link: LinkId) {
        let chain = self
            .links
            .get(&link)
            .and_then(|l| l.device.as_ref())
            .map(|h| h.chain.clone())
            .filter(|c| !c.is_empty());
        if let Some(chain) = chain {
            let now = self.now;
            match self.learn_directory(&[chain], now) {
                Ok(new) | Err((new, _)) => self.directory_grew(None, new),
            }
        }
        let ids: Vec<[u8; 16]> = self.credentials.directory.ids().copied().collect();
        let chunks: Vec<&[[u8; 16]]> = if ids.is_empty() {
            vec![&[]]
        } else {
            ids.chunks(MAX_IDS_PER_FRAME).collect()
        };
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            self.send(
                link,
                Frame::DirHave {
                    last: i + 1 == n,
                    ids: c.to_vec(),
                },
            );
        }
    }

    /// After new credentials: every verified link gets the records it has not listed or
    /// been sent (the lists were exchanged when it came up).
    pub(crate) fn share_directory_with_all(&mut self) {
        let links: Vec<LinkId> = self
            .links
            .ids()
            .into_iter()
            .filter(|l| self.link_verified(*l))
            .collect();
        if links.is_empty() {
            return;
        }
        let records: Vec<Vec<u8>> = self
            .credentials
            .directory
            .records()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        for link in links {
            self.send_directory_records(link, &records);
        }
    }

    /// A peer lists the directory records it holds; on the last frame it gets what we hold
    /// and it lacks (once per link). Ignored from a peer whose chain did not verify here.
    pub(crate) fn on_dir_have(&mut self, link: LinkId, last: bool, ids: Vec<[u8; 16]>) {
        if !self.link_verified(link) {
            self.counters.directory_ignored += 1;
            return;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for id in ids {
            if l.dir_peer_has.len() >= MAX_DIRECTORY_RECORDS {
                break;
            }
            l.dir_peer_has.insert(id);
        }
        if !last || l.dir_answered {
            return;
        }
        l.dir_answered = true;
        let records: Vec<Vec<u8>> = self
            .credentials
            .directory
            .records()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        self.send_directory_records(link, &records);
    }

    /// Directory records from a peer: taken in when they verify here (module docs).
    pub(crate) fn on_directory(&mut self, link: LinkId, records: Vec<Vec<u8>>) {
        if !self.link_verified(link) {
            self.counters.directory_ignored += 1;
            return;
        }
        if let Some(l) = self.links.get_mut(&link) {
            for r in &records {
                if l.dir_peer_has.len() >= MAX_DIRECTORY_RECORDS {
                    break;
                }
                l.dir_peer_has.insert(record_id(r));
            }
        }
        let now = self.now;
        match self.learn_directory(&records, now) {
            Ok(new) => self.directory_grew(Some(link), new),
            Err((new, e)) => {
                self.directory_grew(Some(link), new);
                self.fault(link, Fault::Credential(e));
            }
        }
    }

    /// Takes directory records in from the user or the daemon (`vaarta org assign` output,
    /// saved files); they spread like those learnt from peers. Returns how many were new;
    /// a record that does not verify here is refused with its error.
    pub fn add_directory_records(
        &mut self,
        records: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<usize, CredError> {
        self.now = self.now.max(now_ms);
        let mut new = Vec::new();
        let mut first_err = None;
        for r in records {
            let c = &mut self.credentials;
            let j = Judge {
                pinned: &c.pinned,
                revocations: &c.revocations,
                now: now_ms,
                skew: Credentials::SKEW_MS,
            };
            match c.directory.insert(r, &j) {
                Ok(true) => new.push(r.clone()),
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let n = new.len();
        self.directory_grew(None, new);
        self.settle();
        match first_err {
            Some(e) if n == 0 => Err(e),
            _ => Ok(n),
        }
    }

    /// The directory as judged now.
    pub fn directory(&self) -> &vaarta_sync::org::Directory {
        &self.credentials.directory
    }

    /// What queries of the directory are judged against at `now_ms`.
    pub fn directory_judge(&self, now_ms: u64) -> Judge<'_> {
        Judge {
            pinned: &self.credentials.pinned,
            revocations: &self.credentials.revocations,
            now: now_ms,
            skew: Credentials::SKEW_MS,
        }
    }

    /// The conversation this device created for `role`, if any.
    pub fn find_role_conversation(&self, role: &RoleId) -> Option<ConversationId> {
        self.role_conversations().remove(&role.short())
    }

    /// The role conversations this device created, by the role's short id (one pass over
    /// the conversations).
    fn role_conversations(&self) -> std::collections::BTreeMap<String, ConversationId> {
        let me = self.replica.device_id();
        let mut out = std::collections::BTreeMap::new();
        for id in self.replica.conversation_ids() {
            let Some(c) = self.replica.conversation(&id) else {
                continue;
            };
            let st = c.membership.state();
            if st.creator != Some(me) {
                continue;
            }
            if let Some((_, short)) = st.title.rsplit_once(" role ")
                && short.len() == 16
                && short.bytes().all(|b| b.is_ascii_hexdigit())
            {
                out.entry(short.to_string()).or_insert(id);
            }
        }
        out
    }

    /// Stages a message to whoever holds the role `query` names now (module docs); returns
    /// the role's conversation and the message. Refused, with nothing written, when no
    /// role or several match, the role is vacant, or its holder has no device here.
    pub fn send_to_role(
        &mut self,
        query: &str,
        draft: Draft,
        now_ms: u64,
    ) -> Result<(ConversationId, MessageId), EngineError> {
        let role = self.credentials.directory.find_role(query)?;
        let conv = self.role_conversation(&role, now_ms)?;
        let msg = self.send_message(&conv, draft, now_ms)?;
        Ok((conv, msg))
    }

    /// The conversation for `role`, created if need be, its members brought in line with
    /// the holder's devices now.
    pub fn role_conversation(
        &mut self,
        role: &RoleId,
        now_ms: u64,
    ) -> Result<ConversationId, EngineError> {
        let (_, devices) = self
            .credentials
            .directory
            .holder_devices(role, &self.directory_judge(now_ms))?;
        let conv = match self.find_role_conversation(role) {
            Some(c) => c,
            None => {
                let titles = self.credentials.directory.titles(role);
                let title = titles
                    .iter()
                    .find(|(t, _)| t == "en")
                    .or(titles.first())
                    .map(|(_, t)| t.clone())
                    .unwrap_or_else(|| role.to_string());
                let title = format!("{title} · {}", role_marker(role));
                self.create_conversation(&title, History::FromJoin, now_ms)?
                    .0
            }
        };
        self.set_role_members(&conv, &devices, now_ms)?;
        Ok(conv)
    }

    /// Makes the members of `conv` (besides this device) exactly `devices`.
    fn set_role_members(
        &mut self,
        conv: &ConversationId,
        devices: &[DeviceId],
        now_ms: u64,
    ) -> Result<(), EngineError> {
        let me = self.replica.device_id();
        let Some(c) = self.replica.conversation(conv) else {
            return Ok(());
        };
        let st = c.membership.state();
        let add: Vec<DeviceId> = devices
            .iter()
            .filter(|d| **d != me && !st.is_member(d))
            .copied()
            .collect();
        let remove: Vec<DeviceId> = st
            .members
            .keys()
            .filter(|d| **d != me && !devices.contains(d))
            .copied()
            .collect();
        for d in remove {
            self.remove_member(conv, d, now_ms)?;
        }
        if !add.is_empty() {
            self.add_members(conv, &add, false, now_ms)?;
        }
        Ok(())
    }

    /// Brings every role conversation this device created in line with the directory at
    /// `now_ms` (a handover, a revocation, a holder's new device). A vacant role leaves
    /// this device alone in its conversation.
    pub fn sync_role_conversations(&mut self, now_ms: u64) {
        let convs = self.role_conversations();
        if convs.is_empty() {
            return;
        }
        let roles: Vec<(RoleId, ConversationId)> = self
            .credentials
            .directory
            .roles()
            .filter_map(|r| convs.get(&r.short()).map(|c| (r.clone(), *c)))
            .collect();
        for (role, conv) in roles {
            let devices = self
                .credentials
                .directory
                .holder_devices(&role, &self.directory_judge(now_ms))
                .map(|(_, d)| d)
                .unwrap_or_default();
            if let Err(e) = self.set_role_members(&conv, &devices, now_ms) {
                tracing::warn!(error = %e, role = %role, "cannot update a role conversation");
            }
        }
    }
}

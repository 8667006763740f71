//! Issue 9 item 17: tags are blinded per session in the hello, and the device id is shown
//! only to a peer that recognised one of our tags. A stranger here is driven by hand: a
//! transport link into a node, frames written by the test, and every byte the node sends
//! on it collected.

mod common;

use common::{Engine, bodies, connect_and_invite, conversation_tag, invite, text};
use vaarta_engine::testing::{Network, drain};
use vaarta_engine::wire::{self, Blind, Frame};
use vaarta_engine::{Action, CloseReason, Config, LinkId, LinkUp, PeerKey};
use vaarta_sync::identity::{Identity, KeyCache};
use vaarta_sync::ids::{ConversationId, Tag};

fn configs(relay: impl Fn(usize) -> bool) -> impl Fn(usize) -> Config {
    move |i| Config {
        name: format!("node{i}"),
        relay: relay(i),
        ..Config::default()
    }
}

/// Nodes 0 and 1 in one conversation with a message delivered (receipts recorded), then
/// unlinked, so node 0 has no link left: its tag.
fn member_pair(net: &mut Network) -> (ConversationId, Tag) {
    let (c, l01, _) = connect_and_invite(net, (0, 1), 0, 1, "EOC");
    net.nodes[0]
        .send_message(&c, text("hello"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["hello"]);
    ends_agree(net);
    net.cut(0, l01);
    (c, conversation_tag(net, 0, &c))
}

/// A transport connection into a node, driven by the test.
struct Stranger {
    link: LinkId,
    tid: Vec<u8>,
    nonce: [u8; 32],
    /// The node's nonce, from its `Hello`.
    theirs: Option<[u8; 32]>,
    /// Every frame the node sent on the link.
    got: Vec<Vec<u8>>,
    closed: Vec<CloseReason>,
}

const VICTIM_TID: &[u8] = b"victim";

impl Stranger {
    /// A link numbered `n` from transport id `tid`.
    fn open(e: &mut Engine, n: u64, tid: &[u8], nonce: [u8; 32], now: u64) -> Self {
        let link = LinkId(5_000 + n);
        let tid = tid.to_vec();
        e.handle_link_up(
            LinkUp {
                link,
                peer: PeerKey::new(String::from_utf8_lossy(&tid).into_owned()),
                outbound: false,
                dialed: None,
                local_tid: VICTIM_TID.to_vec(),
                remote_tid: tid.clone(),
            },
            now,
        );
        let mut s = Self {
            link,
            tid,
            nonce,
            theirs: None,
            got: Vec::new(),
            closed: Vec::new(),
        };
        s.collect(e, now);
        s
    }

    /// Flushes the node and keeps what it sent on this link.
    fn collect(&mut self, e: &mut Engine, now: u64) {
        e.flush(now).unwrap();
        let out = drain(e);
        for (l, f) in out.frames {
            if l == self.link {
                if let Ok(Frame::Hello { nonce }) = Frame::decode(&f) {
                    self.theirs = Some(nonce);
                }
                self.got.push(f);
            }
        }
        for a in out.actions {
            if let Action::Close { link, reason, .. } = a
                && link == self.link
            {
                self.closed.push(reason);
            }
        }
    }

    fn send(&mut self, e: &mut Engine, f: &[u8], now: u64) {
        e.handle_frame(self.link, f, now);
        self.collect(e, now);
    }

    fn key(&self) -> wire::Blinder {
        wire::Blinder::new(
            &self.tid,
            &self.nonce,
            VICTIM_TID,
            &self.theirs.expect("the node said hello"),
        )
        .expect("distinct sides")
    }

    fn hello(&self) -> Vec<u8> {
        Frame::Hello { nonce: self.nonce }.encode()
    }

    fn intro(&self, relay: bool, tags: &[Tag]) -> Vec<u8> {
        self.intro_with(relay, tags, &[])
    }

    /// An intro listing plain `tags` and conversation `presences` (what a member lists).
    fn intro_with(&self, relay: bool, tags: &[Tag], presences: &[Tag]) -> Vec<u8> {
        let key = self.key();
        let mut blinds: Vec<Blind> = tags.iter().map(|t| key.ours(t)).collect();
        blinds.extend(presences.iter().map(|p| key.member_ours(p)));
        // Padding a stranger might list (random-looking values).
        blinds.extend((0..5u8).map(|i| {
            let mut b = [0u8; wire::BLIND_BYTES];
            b.copy_from_slice(&blake3::hash(&[i]).as_bytes()[..wire::BLIND_BYTES]);
            b
        }));
        blinds.sort();
        Frame::Intro { relay, blinds }.encode()
    }

    fn frames(&self) -> Vec<Frame> {
        self.got
            .iter()
            .filter_map(|f| Frame::decode(f).ok())
            .collect()
    }

    fn intro_blinds(&self) -> Vec<Blind> {
        self.frames()
            .into_iter()
            .rev()
            .find_map(|f| match f {
                Frame::Intro { blinds, .. } => Some(blinds),
                _ => None,
            })
            .expect("the node sent its intro")
    }

    fn proof(&self) -> Option<(wire::Hello, [u8; 64])> {
        self.frames().into_iter().find_map(|f| match f {
            Frame::Proof(h, sig) => Some((h, sig)),
            _ => None,
        })
    }

    fn all_bytes(&self) -> Vec<u8> {
        self.got.concat()
    }
}

/// What node `node`'s hello proves for conversation `c` now (its current epoch).
fn presences(net: &Network, node: usize, c: &ConversationId) -> Vec<Tag> {
    net.nodes[node]
        .replica()
        .conversation(c)
        .expect("the conversation")
        .listed_presences()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Both ends of every link reconcile the same tags (else every reconciliation would be
/// ignored as built on another list).
fn ends_agree(net: &Network) {
    for (i, e) in net.nodes.iter().enumerate() {
        for l in e.links() {
            let (o, ol) = net.peer_of(i, l.link).expect("wired");
            assert_eq!(
                l.tags,
                link_info(&net.nodes[o], ol).tags,
                "node {i} {} and node {o} {ol}",
                l.link
            );
        }
    }
}

fn link_info(e: &Engine, link: LinkId) -> vaarta_engine::LinkInfo {
    e.links()
        .into_iter()
        .find(|l| l.link == link)
        .expect("the link is up")
}

/// Everything a node sends to a stranger (a member or a relay that knows none of its tags)
/// holds none of its conversation tags, none of its inbox tags for the window, and not its
/// device id; no proof is sent and the node shares no tag with it.
#[test]
fn a_stranger_learns_no_tag_and_no_device() {
    for stranger_relays in [false, true] {
        let mut net = Network::new(2);
        let (_c, tag) = member_pair(&mut net);
        let now = net.now;
        let e = &mut net.nodes[0];
        let mut secrets: Vec<Vec<u8>> = vec![tag.0.to_vec(), e.device_id().0.to_vec()];
        secrets.extend(e.replica().inbox_tags(now).iter().map(|t| t.0.to_vec()));
        let mut s = Stranger::open(e, 1, b"stranger", [42; 32], now);
        let hello = s.hello();
        s.send(e, &hello, now);
        let intro = s.intro(stranger_relays, &[Tag([9; 16])]);
        s.send(e, &intro, now);
        let info = link_info(e, s.link);
        assert!(info.ready, "the link carries data");
        if !stranger_relays {
            assert_eq!(info.tags, 0, "nothing shared");
        }
        // (Relay to relay, the session also holds what node 0 carries for others: here the
        // invitation it sent under node 1's inbox tag. Node 1's tag, not node 0's.)
        assert_eq!(info.device, None);
        assert!(s.proof().is_none(), "no proof to a stranger");
        assert!(
            s.intro_blinds().len() >= 2,
            "the node listed its tags, blinded"
        );
        let bytes = s.all_bytes();
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "a stranger (relay: {stranger_relays}) saw {secret:?} in {} bytes",
                bytes.len()
            );
        }
    }
}

/// A peer that already knows a conversation — its tag and its current key — recognises it:
/// the node reconciles that tag with it and shows it its device, proven over this session.
/// The plain tag alone (what a relay, or a device removed from the conversation, knows) is
/// not enough.
#[test]
fn a_peer_that_knows_a_tag_recognises_it_and_sees_the_device() {
    let mut net = Network::new(2);
    let (c, tag) = member_pair(&mut net);
    let presence = presences(&net, 0, &c);
    let now = net.now;
    let e = &mut net.nodes[0];
    let mut plain = Stranger::open(e, 2, b"plain", [43; 32], now);
    let hello = plain.hello();
    plain.send(e, &hello, now);
    let intro = plain.intro(false, &[tag]);
    plain.send(e, &intro, now);
    assert_eq!(
        link_info(e, plain.link).tags,
        0,
        "the plain tag shares nothing"
    );
    assert!(plain.proof().is_none());
    let mut s = Stranger::open(e, 1, b"stranger", [42; 32], now);
    let hello = s.hello();
    s.send(e, &hello, now);
    let intro = s.intro_with(false, &[tag], &presence);
    s.send(e, &intro, now);
    assert_eq!(link_info(e, s.link).tags, 1, "the shared tag");
    let (h, sig) = s.proof().expect("a proof to a peer that knew a tag");
    assert_eq!(h.device, e.device_id());
    let theirs = s.theirs.unwrap();
    assert!(wire::verify_proof(
        &h,
        &sig,
        (VICTIM_TID, &theirs),
        (&s.tid, &s.nonce),
        &mut KeyCache::default()
    ));
}

/// A peer that knows none of our tags gains nothing by sending our own blinds back: our
/// intro reflected as its intro, or as a `Held` claim, matches nothing (blinds differ by
/// direction and by use), so it shares no tag and sees no device.
#[test]
fn a_reflected_intro_or_held_matches_nothing() {
    let mut net = Network::new(2);
    member_pair(&mut net);
    let now = net.now;
    let e = &mut net.nodes[0];
    let mut s = Stranger::open(e, 1, b"stranger", [42; 32], now);
    let hello = s.hello();
    s.send(e, &hello, now);
    let mirror = s.intro_blinds();
    assert!(!mirror.is_empty());
    for relay in [false, true] {
        let f = Frame::Intro {
            relay,
            blinds: mirror.clone(),
        }
        .encode();
        s.send(e, &f, now);
        let held = Frame::Held {
            blinds: mirror.clone(),
        }
        .encode();
        s.send(e, &held, now);
        let info = link_info(e, s.link);
        if !relay {
            assert_eq!(info.tags, 0, "a reflection shares nothing");
        }
        assert_eq!(info.device, None);
        assert!(
            s.proof().is_none(),
            "no proof for a reflection (relay: {relay})"
        );
    }
}

/// Two sessions of the same pair (the same stranger, even with the same nonce) see
/// unrelated blinded lists: the node's fresh nonce changes the key.
#[test]
fn blinded_values_differ_between_two_sessions_of_the_same_pair() {
    let mut net = Network::new(2);
    member_pair(&mut net);
    let now = net.now;
    let e = &mut net.nodes[0];
    let mut lists = Vec::new();
    for n in 0..2 {
        // The same transport id and nonce both times.
        let mut s = Stranger::open(e, 1 + n, b"stranger", [42; 32], now);
        let hello = s.hello();
        s.send(e, &hello, now);
        lists.push((s.theirs.unwrap(), s.intro_blinds()));
        e.handle_link_down(s.link, now);
    }
    assert_ne!(lists[0].0, lists[1].0, "fresh nonces");
    assert_eq!(lists[0].1.len(), lists[1].1.len());
    assert!(
        lists[0].1.iter().all(|b| !lists[1].1.contains(b)),
        "no blinded value repeats across sessions"
    );
}

/// A hello and intro recorded from an old session (by a peer that knew a tag then) match
/// nothing when replayed in a new one, and an old proof does not verify: the link is cut.
#[test]
fn a_replayed_hello_from_an_old_session_does_not_match() {
    let mut net = Network::new(2);
    let (c, tag) = member_pair(&mut net);
    let presence = presences(&net, 0, &c);
    let now = net.now;
    let e = &mut net.nodes[0];
    let who = Identity::from_seed([77; 32]);
    // Session 1: a peer that knows the conversation, and proves its device.
    let mut s = Stranger::open(e, 1, b"stranger", [42; 32], now);
    let hello = s.hello();
    s.send(e, &hello, now);
    let intro = s.intro_with(false, &[tag], &presence);
    s.send(e, &intro, now);
    assert_eq!(link_info(e, s.link).tags, 1);
    let proof = Frame::proof(
        &who,
        wire::Hello {
            device: who.device_id(),
            name: "w".into(),
            chain: Vec::new(),
        },
        (&s.tid, &s.nonce),
        (VICTIM_TID, &s.theirs.unwrap()),
    )
    .encode();
    s.send(e, &proof, now);
    assert_eq!(link_info(e, s.link).device, Some(who.device_id()));
    e.handle_link_down(s.link, now);
    // Session 2: the same bytes replayed.
    let mut r = Stranger::open(e, 2, b"stranger", [42; 32], now);
    r.send(e, &hello, now);
    r.send(e, &intro, now);
    let info = link_info(e, r.link);
    assert_eq!(info.tags, 0, "the old blinded tag matches nothing");
    assert!(r.proof().is_none(), "the node does not show its device");
    r.send(e, &proof, now);
    assert!(
        r.closed
            .iter()
            .any(|c| matches!(c, CloseReason::Fault(vaarta_engine::Fault::BadHelloProof))),
        "an old proof is refused: {:?}",
        r.closed
    );
}

/// A hello of protocol version 3 gets a `Bye` that says which version this device speaks,
/// and the link is closed without a ban.
#[test]
fn an_old_protocol_hello_gets_a_clear_bye() {
    let mut net = Network::new(1);
    let now = net.now;
    let e = &mut net.nodes[0];
    let mut s = Stranger::open(e, 1, b"stranger", [1; 32], now);
    // A version 3 hello: type, version, device, ...
    let mut old = vec![1u8, 3];
    old.extend([5u8; 32]);
    e.handle_frame(s.link, &old, now);
    let mut bans = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Close { link, ban, reason } = a
            && link == s.link
        {
            bans.push(ban);
            s.closed.push(reason);
        }
    }
    s.collect(e, now);
    assert_eq!(bans, vec![false], "closed, not banned");
    let byes: Vec<String> = s
        .frames()
        .into_iter()
        .filter_map(|f| match f {
            Frame::Bye { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(byes.len(), 1, "{byes:?}");
    assert!(
        byes[0].contains("version 3")
            && byes[0].contains(&format!("version {}", vaarta_engine::wire::VERSION)),
        "{byes:?}"
    );
}

/// Two members that do not relay find their shared conversation (and the invitation under
/// the invitee's blinded inbox tag) and sync; a third device linked to both shares nothing
/// with them and sees neither device.
#[test]
fn members_find_their_shared_conversations_and_sync() {
    let mut net = Network::with(3, configs(|_| false));
    net.connect(0, 1);
    let (l02, _) = net.connect(0, 2);
    let (c, l21, _) = connect_and_invite(&mut net, (2, 1), 0, 1, "EOC");
    let b = net.nodes[1].device_id();
    net.nodes[0]
        .send_message(&c, text("पहला संदेश"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["पहला संदेश"]);
    // Delivered, with a receipt naming node 1 (its device was shown: it knew the tag).
    assert_eq!(net.nodes[0].messages(&c, 10).unwrap()[0].1, vec![b]);
    net.nodes[1]
        .send_message(&c, text("received"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(bodies(&mut net.nodes[0], &c), vec!["पहला संदेश", "received"]);
    for (node, link) in [(0, l02), (2, l21)] {
        let info = link_info(&net.nodes[node], link);
        assert_eq!(info.tags, 0, "node {node} shares nothing on {link}");
        assert_eq!(info.device, None, "node {node} on {link}");
    }
    let on1 = net.nodes[0]
        .links()
        .into_iter()
        .find(|l| l.device == Some(b))
        .expect("node 1 showed its device to node 0");
    assert!(on1.tags >= 1);
    assert!(net.nodes[2].conversations().is_empty());
    ends_agree(&net);
}

/// A relay still carries for members that do not relay: the inviter asks it to carry the
/// invitation's and the conversation's tags (it is about to hand it envelopes under them),
/// and the invitee, arriving later, finds the invitation under its blinded inbox tag and
/// the messages under the conversation's.
#[test]
fn a_relay_still_carries_for_members_that_do_not_relay() {
    let mut net = Network::with(3, configs(|i| i == 1));
    let (l01, _) = net.connect(0, 1);
    net.settle();
    let c = invite(&mut net, 0, 2, "x");
    net.nodes[0]
        .send_message(&c, text("via the relay"), net.now)
        .unwrap();
    net.settle();
    net.cut(0, l01);
    net.connect(1, 2);
    net.settle();
    ends_agree(&net);
    assert_eq!(bodies(&mut net.nodes[2], &c), vec!["via the relay"]);
    assert!(
        net.nodes[1].conversations().is_empty(),
        "the relay read nothing"
    );
    // The reply goes back the same way.
    net.nodes[2]
        .send_message(&c, text("got it"), net.now)
        .unwrap();
    net.settle();
    let l21 = net.nodes[2].links()[0].link;
    net.cut(2, l21);
    net.connect(0, 1);
    net.settle();
    ends_agree(&net);
    assert_eq!(
        bodies(&mut net.nodes[0], &c),
        vec!["via the relay", "got it"]
    );
}

/// Tags asked of a relay and blinded lists are both bounded per link: a member that asks a
/// relay to carry more than `MAX_CARRY_TAGS` tags is held to it.
#[test]
fn asks_are_bounded_per_link() {
    let mut net = Network::new(1);
    let now = net.now;
    let e = &mut net.nodes[0];
    let mut s = Stranger::open(e, 1, b"stranger", [3; 32], now);
    let hello = s.hello();
    s.send(e, &hello, now);
    let intro = s.intro(false, &[]);
    s.send(e, &intro, now);
    for round in 0..3u32 {
        let tags: Vec<Tag> = (0..wire::MAX_HELLO_TAGS as u32)
            .map(|i| {
                let mut t = [0u8; 16];
                t[..4].copy_from_slice(&round.to_be_bytes());
                t[4..8].copy_from_slice(&i.to_be_bytes());
                Tag(t)
            })
            .collect();
        let ask = Frame::Ask { tags }.encode();
        s.send(e, &ask, now);
    }
    assert_eq!(link_info(e, s.link).tags, wire::MAX_CARRY_TAGS);
}

/// Issue 9, C5: a device removed from a conversation knows its tag and every key up to its
/// removal. After the rotation that removed it, nothing it can list — the plain tag, the
/// presence it could compute before (which a member then recognised, as checked first), both,
/// relay or not, then its own proof — makes a member share the conversation: no shared tag,
/// no `Held`, not the tag in any byte sent to it. (It lists the previous epoch, as a lagging
/// member does, so it is shown the device, whose id it knew: docs/security.md.)
#[test]
fn an_ex_member_after_the_rotation_that_removed_it_gets_nothing_of_the_conversation() {
    let mut net = Network::with(3, configs(|_| false));
    let (c, _, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "EOC");
    let (l02, _) = net.connect(0, 2);
    let x = net.nodes[2].device_id();
    net.nodes[0].add_member(&c, x, false, net.now).unwrap();
    net.settle();
    assert!(
        !presences(&net, 2, &c).is_empty(),
        "the member holds the key"
    );
    let tag = conversation_tag(&net, 2, &c);
    // What it knows before its removal is what a member lists: recognised.
    let before = presences(&net, 2, &c);
    {
        let now = net.now;
        let e = &mut net.nodes[0];
        let mut s = Stranger::open(e, 1, b"member", [41; 32], now);
        let hello = s.hello();
        s.send(e, &hello, now);
        let intro = s.intro_with(false, &[tag], &before);
        s.send(e, &intro, now);
        assert_eq!(link_info(e, s.link).tags, 1, "a member is recognised");
        assert!(s.proof().is_some());
        e.handle_link_down(s.link, now);
    }
    net.nodes[0].remove_member(&c, x, net.now).unwrap();
    net.settle();
    net.cut(0, l02);
    assert_ne!(
        presences(&net, 0, &c),
        before,
        "the rotation changed the presence"
    );
    assert_eq!(bodies(&mut net.nodes[1], &c), Vec::<String>::new());
    // Everything the removed device can compute: the plain tag, and the presence of every
    // epoch whose key it holds (it never got the new one).
    let mut knows = before.clone();
    knows.extend(presences(&net, 2, &c));
    knows.sort();
    knows.dedup();
    let now = net.now;
    let e = &mut net.nodes[0];
    let secrets = [tag.0.to_vec()];
    for (n, relay) in [(2u64, false), (3, true)] {
        let mut s = Stranger::open(e, n, b"ex-member", [44 + n as u8; 32], now);
        let hello = s.hello();
        s.send(e, &hello, now);
        let intro = s.intro_with(relay, &[tag], &knows);
        s.send(e, &intro, now);
        let info = link_info(e, s.link);
        // A peer that says it relays is asked, in the clear, to carry the tags the node is
        // about to hand it envelopes under (here the invitations it sealed, under the
        // invitees' inbox tags): never the conversation's.
        let asked: Vec<Tag> = s
            .frames()
            .into_iter()
            .filter_map(|f| match f {
                Frame::Ask { tags } => Some(tags),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(!asked.contains(&tag));
        assert_eq!(asked.is_empty(), !relay);
        assert_eq!(
            info.tags,
            asked.len(),
            "the ex-member shares nothing but what it was asked to carry (relay: {relay})"
        );
        assert_eq!(info.device, None);
        let held = |s: &Stranger| {
            s.frames()
                .into_iter()
                .filter(|f| matches!(f, Frame::Held { .. }))
                .count()
        };
        assert_eq!(held(&s), 0, "no claim to the ex-member (relay: {relay})");
        let bytes = s.all_bytes();
        for secret in &secrets {
            assert!(!contains(&bytes, secret), "the ex-member saw {secret:?}");
        }
        // Proving its own device changes nothing: it is no member now.
        let proof = Frame::proof(
            &Identity::from_seed([3; 32]),
            wire::Hello {
                device: x,
                name: "x".into(),
                chain: Vec::new(),
            },
            (&s.tid, &s.nonce),
            (VICTIM_TID, &s.theirs.unwrap()),
        )
        .encode();
        s.send(e, &proof, now);
        let info = link_info(e, s.link);
        assert_eq!(info.device, Some(x), "its proof verified");
        assert_eq!(
            info.tags,
            asked.len(),
            "still nothing more (relay: {relay})"
        );
        assert_eq!(held(&s), 0, "still no claim (relay: {relay})");
        e.handle_link_down(s.link, now);
    }
}

/// Members still recognise each other across a rotation only one of them has seen: node 1
/// was away when node 0 removed node 2. Node 1 lists the conversation under the previous
/// epoch; node 0 takes that from a device proven (here through another conversation they
/// share) to be a current member, tells it so, and both reconcile, which brings node 1 the
/// rotation and what was sent after it: equal logs and messages, and node 1's hello then
/// proves the new epoch. Without relays, so no `Ask` carries the tag instead.
#[test]
fn members_across_a_rotation_seen_by_one_side_still_sync() {
    let mut net = Network::with(3, configs(|_| false));
    let (c, l01, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "EOC");
    let d = invite(&mut net, 0, 1, "other");
    net.connect(0, 2);
    let x = net.nodes[2].device_id();
    net.nodes[0].add_member(&c, x, false, net.now).unwrap();
    net.settle();
    let before = presences(&net, 1, &c);
    assert_eq!(before, presences(&net, 0, &c));
    net.cut(0, l01);
    net.nodes[0].remove_member(&c, x, net.now).unwrap();
    net.nodes[0]
        .send_message(&c, text("after the removal"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(
        presences(&net, 1, &c),
        before,
        "node 1 has not seen the rotation"
    );
    assert_ne!(presences(&net, 0, &c), before);
    net.connect(0, 1);
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["after the removal"]);
    assert_eq!(presences(&net, 1, &c), presences(&net, 0, &c));
    let log = |net: &Network, n: usize| {
        net.nodes[n]
            .replica()
            .conversation(&c)
            .unwrap()
            .membership
            .state()
            .order
            .clone()
    };
    assert_eq!(log(&net, 0), log(&net, 1), "equal logs");
    assert!(
        !net.nodes[1]
            .replica()
            .conversation(&c)
            .unwrap()
            .membership
            .state()
            .is_member(&x)
    );
    assert!(net.nodes[1].replica().conversation(&d).is_some());
    ends_agree(&net);
}

/// The same across a rotation with the default configuration (every device relays) and no
/// other conversation shared: the side that rotated asks the other, as a relay, to carry the
/// conversation's tag (it has envelopes awaiting that member's receipts), which brings the
/// rotation.
#[test]
fn members_across_a_rotation_sync_through_the_ask_when_both_relay() {
    let mut net = Network::new(3);
    let (c, l01, _) = connect_and_invite(&mut net, (0, 1), 0, 1, "EOC");
    net.connect(0, 2);
    let x = net.nodes[2].device_id();
    net.nodes[0].add_member(&c, x, false, net.now).unwrap();
    net.settle();
    let before = presences(&net, 1, &c);
    net.cut(0, l01);
    net.nodes[0].remove_member(&c, x, net.now).unwrap();
    net.nodes[0]
        .send_message(&c, text("after the removal"), net.now)
        .unwrap();
    net.settle();
    assert_eq!(presences(&net, 1, &c), before);
    net.connect(0, 1);
    net.settle();
    assert_eq!(bodies(&mut net.nodes[1], &c), vec!["after the removal"]);
    assert_eq!(presences(&net, 1, &c), presences(&net, 0, &c));
    ends_agree(&net);
}

//! The priority scheduler: five lanes (FLASH, IMMEDIATE, PRIORITY, ROUTINE, bulk), strict
//! priority, at chunk granularity.
//!
//! A frame is queued whole on its lane and cut into chunks when the link is ready to send
//! the next record; the highest non-empty lane always supplies the next chunk. A chunk spans
//! at most [`crate::Config::chunk_fragments`] fragments, so a FLASH frame queued while a
//! 1 MB bulk transfer is under way waits for at most the rest of one bulk chunk (8 fragments
//! by default), not for the bulk. Each lane has a byte budget: past it [`Scheduler::push`]
//! hands the frame back (back-pressure), so the caller keeps it. A lane always accepts one
//! frame when empty, so the memory held is at most the budget plus one frame per lane.
//!
//! Strict priority lets a steady FLASH stream starve bulk: FLASH traffic is small and rare
//! by design (alerts), and the engine bounds what it queues.

use std::collections::VecDeque;

use vaarta_sync::envelope::Precedence;

/// A frame's lane. Lower value = sent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Flash = 0,
    Immediate = 1,
    Priority = 2,
    Routine = 3,
    /// Reconciliation backlogs, catch-up pushes: anything that may wait.
    Bulk = 4,
}

pub const LANES: usize = 5;

/// The lane an engine frame goes on, from the engine's classifier
/// ([`vaarta_engine::wire::frame_priority`]): handshake frames, acknowledgements, receipts and
/// revocations on the FLASH lane (everything else waits on them, and they are small), pushes
/// on their precedence's lane, reconciliation and announcements on the bulk lane. Frames of
/// one lane keep their order; the engine is built for frames of different lanes overtaking
/// one another (pushes and acknowledgements are numbered per lane).
pub fn lane_of(frame: &[u8]) -> Priority {
    use vaarta_engine::wire::{FramePriority, frame_priority};
    use vaarta_sync::envelope::Precedence;
    match frame_priority(frame) {
        FramePriority::Control => Priority::Flash,
        FramePriority::Push(std::cmp::Reverse(p)) => match p {
            Precedence::Flash => Priority::Flash,
            Precedence::Immediate => Priority::Immediate,
            Precedence::Priority => Priority::Priority,
            Precedence::Routine => Priority::Routine,
        },
        FramePriority::Bulk => Priority::Bulk,
    }
}

impl Priority {
    pub const ALL: [Priority; LANES] = [
        Priority::Flash,
        Priority::Immediate,
        Priority::Priority,
        Priority::Routine,
        Priority::Bulk,
    ];

    pub fn from_lane(lane: u8) -> Option<Self> {
        Self::ALL.get(lane as usize).copied()
    }

    pub fn lane(self) -> usize {
        self as usize
    }
}

impl From<Precedence> for Priority {
    fn from(p: Precedence) -> Self {
        match p {
            Precedence::Flash => Priority::Flash,
            Precedence::Immediate => Priority::Immediate,
            Precedence::Priority => Priority::Priority,
            Precedence::Routine => Priority::Routine,
        }
    }
}

/// One chunk of a frame, ready to be sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub priority: Priority,
    /// The frame's length, on its first chunk.
    pub total: Option<usize>,
    pub data: Vec<u8>,
    /// The frame's last chunk.
    pub last: bool,
}

#[derive(Debug, Default)]
struct Lane {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Bytes of the front frame already cut into chunks.
    sent: usize,
}

/// Per-link send queues.
#[derive(Debug)]
pub struct Scheduler {
    lanes: [Lane; LANES],
    budget: [usize; LANES],
}

impl Scheduler {
    pub fn new(budget: [usize; LANES]) -> Self {
        Self {
            lanes: Default::default(),
            budget,
        }
    }

    /// Queues `frame` on `priority`'s lane, or hands it back when the lane is over budget.
    pub fn push(&mut self, priority: Priority, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let lane = &mut self.lanes[priority.lane()];
        if !lane.frames.is_empty() && lane.bytes + frame.len() > self.budget[priority.lane()] {
            return Err(frame);
        }
        lane.bytes += frame.len();
        lane.frames.push_back(frame);
        Ok(())
    }

    /// Whether a frame of `len` bytes would be accepted now.
    pub fn has_room(&self, priority: Priority, len: usize) -> bool {
        let lane = &self.lanes[priority.lane()];
        lane.frames.is_empty() || lane.bytes + len <= self.budget[priority.lane()]
    }

    /// Bytes queued (not yet cut into chunks) on a lane.
    pub fn queued(&self, priority: Priority) -> usize {
        let lane = &self.lanes[priority.lane()];
        lane.bytes - lane.sent
    }

    /// Bytes held over all lanes.
    pub fn held(&self) -> usize {
        self.lanes.iter().map(|l| l.bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.frames.is_empty())
    }

    /// The next chunk from the highest non-empty lane: at most `first_cap` data bytes when
    /// it starts a frame, `rest_cap` otherwise.
    pub fn next_chunk(&mut self, first_cap: usize, rest_cap: usize) -> Option<Chunk> {
        let (i, lane) = self
            .lanes
            .iter_mut()
            .enumerate()
            .find(|(_, l)| !l.frames.is_empty())?;
        let priority = Priority::ALL[i];
        let front = lane.frames.front()?;
        let first = lane.sent == 0;
        let cap = if first { first_cap } else { rest_cap }.max(1);
        let n = cap.min(front.len() - lane.sent);
        let data = front[lane.sent..lane.sent + n].to_vec();
        let total = first.then_some(front.len());
        lane.sent += n;
        let last = lane.sent == front.len();
        if last {
            lane.bytes -= front.len();
            lane.sent = 0;
            lane.frames.pop_front();
        }
        Some(Chunk {
            priority,
            total,
            data,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_overtakes_bulk_between_chunks() {
        let mut s = Scheduler::new([1 << 20; LANES]);
        s.push(Priority::Bulk, vec![0; 10_000]).unwrap();
        let c = s.next_chunk(1000, 1000).unwrap();
        assert_eq!(
            (c.priority, c.total, c.last),
            (Priority::Bulk, Some(10_000), false)
        );
        s.push(Priority::Flash, vec![1; 50]).unwrap();
        let c = s.next_chunk(1000, 1000).unwrap();
        assert_eq!(
            (c.priority, c.total, c.last),
            (Priority::Flash, Some(50), true)
        );
        let c = s.next_chunk(1000, 1000).unwrap();
        assert_eq!(
            (c.priority, c.total, c.data.len()),
            (Priority::Bulk, None, 1000)
        );
    }

    #[test]
    fn lanes_are_bounded_and_push_back_when_full() {
        let mut s = Scheduler::new([100; LANES]);
        // An empty lane takes one frame of any size.
        s.push(Priority::Routine, vec![0; 500]).unwrap();
        assert!(!s.has_room(Priority::Routine, 1));
        assert_eq!(s.push(Priority::Routine, vec![1; 1]), Err(vec![1]));
        s.push(Priority::Flash, vec![0; 60]).unwrap();
        s.push(Priority::Flash, vec![0; 40]).unwrap();
        assert_eq!(s.push(Priority::Flash, vec![2; 1]), Err(vec![2]));
        assert_eq!(s.held(), 600);
        while s.next_chunk(64, 64).is_some() {}
        assert!(s.is_empty() && s.has_room(Priority::Flash, 100));
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn frames_come_out_whole_and_in_order_per_lane() {
        let mut s = Scheduler::new([1 << 20; LANES]);
        for i in 0..20u8 {
            s.push(
                Priority::ALL[(i % 5) as usize],
                vec![i; 1 + i as usize * 37],
            )
            .unwrap();
        }
        let mut got: [Vec<Vec<u8>>; LANES] = Default::default();
        let mut cur: [Vec<u8>; LANES] = Default::default();
        while let Some(c) = s.next_chunk(50, 70) {
            let l = c.priority.lane();
            cur[l].extend_from_slice(&c.data);
            if c.last {
                got[l].push(std::mem::take(&mut cur[l]));
            }
        }
        for (l, frames) in got.iter().enumerate() {
            let want: Vec<Vec<u8>> = (0..20u8)
                .filter(|i| (i % 5) as usize == l)
                .map(|i| vec![i; 1 + i as usize * 37])
                .collect();
            assert_eq!(frames, &want);
        }
    }

    #[test]
    fn precedence_maps_to_lanes() {
        assert_eq!(Priority::from(Precedence::Flash), Priority::Flash);
        assert_eq!(Priority::from(Precedence::Routine), Priority::Routine);
        assert_eq!(Priority::from_lane(4), Some(Priority::Bulk));
        assert_eq!(Priority::from_lane(5), None);
    }

    #[test]
    fn engine_frames_take_the_lane_of_their_priority() {
        use vaarta_engine::Frame;
        use vaarta_sync::envelope::Precedence;
        let push = |p| {
            Frame::Push {
                lane: p,
                seq: 1,
                envelope: vec![1; 20],
            }
            .encode()
        };
        assert_eq!(lane_of(&push(Precedence::Flash)), Priority::Flash);
        assert_eq!(lane_of(&push(Precedence::Immediate)), Priority::Immediate);
        assert_eq!(lane_of(&push(Precedence::Priority)), Priority::Priority);
        assert_eq!(lane_of(&push(Precedence::Routine)), Priority::Routine);
        assert_eq!(
            lane_of(&Frame::Hello { nonce: [0; 32] }.encode()),
            Priority::Flash
        );
        assert_eq!(
            lane_of(&Frame::Have { ids: vec![] }.encode()),
            Priority::Bulk
        );
        assert_eq!(lane_of(&[]), Priority::Bulk);
    }
}

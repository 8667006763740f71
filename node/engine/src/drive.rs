//! The output pump every driver runs after a batch of inputs (the daemon, the simulator and
//! the test harness alike), so the poll order is written once.

use vaarta_sync::store::Store;

use crate::{Action, Engine, EngineError, Event, LinkId};

/// Everything an engine had for its driver after a flush, in the documented poll order.
#[derive(Debug, Default)]
pub struct Outputs {
    pub actions: Vec<Action>,
    pub frames: Vec<(LinkId, Vec<u8>)>,
    pub events: Vec<Event>,
}

/// Polls actions, then frames, then events, each until empty.
pub fn drain<S: Store>(e: &mut Engine<S>) -> Outputs {
    let mut out = Outputs::default();
    while let Some(a) = e.poll_action() {
        out.actions.push(a);
    }
    while let Some(f) = e.poll_transmit() {
        out.frames.push(f);
    }
    while let Some(ev) = e.poll_event() {
        out.events.push(ev);
    }
    out
}

/// [`Engine::flush`], then [`drain`]: what a driver does after each batch of inputs.
pub fn pump<S: Store>(e: &mut Engine<S>, now_ms: u64) -> Result<Outputs, EngineError> {
    e.flush(now_ms)?;
    Ok(drain(e))
}

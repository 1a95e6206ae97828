//! Counters aggregated in the VM and flushed to Envoy's stats on a tick.
//!
//! A request only adds one to a number in the VM's memory; no host call.
//! Every root context ticks every [`FLUSH_PERIOD`] and the tick writes each
//! counter that moved with one `increment_metric` call, whatever the number
//! of requests since the last flush. So Envoy's `/stats` lag behind the
//! requests by at most one period (plus the worker's event-loop delay), and
//! the counts of the last period are lost when a VM is torn down without its
//! root being told (`on_done` flushes too).
//!
//! Counters live per VM (one per worker); Envoy sums the workers' increments
//! into one stat per name, exactly as with one call per request.

use crate::abi;
use std::cell::RefCell;
use std::time::Duration;

/// How often every root context flushes the counters: the maximum lag of a
/// gatehouse counter in `/stats` behind the requests it counts.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(100);

/// One defined counter: Envoy's metric id and what the VM has not yet
/// handed to Envoy.
struct Slot {
    id: u32,
    pending: u64,
}

thread_local! {
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// A counter in Envoy's stats (`/stats`, `/stats/prometheus`).
#[derive(Debug, Clone, Copy)]
pub struct Counter(Option<usize>);

impl Counter {
    /// Defines (or finds: each worker's VM defines the same name, and a new
    /// configuration defines it again) a counter. The slot is shared by every
    /// definition of the same metric in this VM.
    pub fn define(name: &str) -> Counter {
        match abi::define_counter(name) {
            Ok(id) => Counter(SLOTS.with(|s| {
                let mut slots = s.borrow_mut();
                match slots.iter().position(|slot| slot.id == id) {
                    Some(i) => Some(i),
                    None => {
                        slots.push(Slot { id, pending: 0 });
                        Some(slots.len() - 1)
                    }
                }
            })),
            Err(st) => {
                log::warn!("gatehouse: defining metric `{name}` failed: {st:?}");
                Counter(None)
            }
        }
    }

    /// Counts one; Envoy sees it at the next flush.
    pub fn inc(&self) {
        if let Some(i) = self.0 {
            SLOTS.with(|s| {
                if let Some(slot) = s.borrow_mut().get_mut(i) {
                    slot.pending = slot.pending.saturating_add(1);
                }
            });
        }
    }
}

/// Hands every counter that moved since the last flush to Envoy: one
/// `increment_metric` per such counter, none when nothing moved.
pub fn flush() {
    SLOTS.with(|s| {
        for slot in s.borrow_mut().iter_mut().filter(|slot| slot.pending > 0) {
            let delta = i64::try_from(slot.pending).unwrap_or(i64::MAX);
            slot.pending = 0;
            if let Err(st) = abi::increment_counter(slot.id, delta) {
                log::warn!("gatehouse: flushing a counter failed: {st:?}");
            }
        }
    });
}

/// Makes the current root context tick every [`FLUSH_PERIOD`] (each root
/// calls this from `on_configure`; its `on_tick` calls [`flush`]).
pub fn start_flushing() {
    crate::set_tick_period(FLUSH_PERIOD);
}

//! Flow control between an upload's encoder and its per-server writers, and long-tail cancellation:
//! a server far behind the others is dropped from the upload once the others alone are happy.
//!
//! The encoder hands each server (a "lane") its blocks in order and waits while the lane has its
//! depth of writes per share queued or in flight ([`PENDING_PER_SHARE`] on a link with round trips
//! of tens of milliseconds, [`PENDING_PER_SHARE_NEAR`] on one of a few), which bounds memory. Without more,
//! one slow server sets the pace of the whole upload (a 1 Mbit/s server among ten at 100 Mbit/s
//! took a 16 MiB upload from 0.7 s to 20 s). So a lane is a *straggler*, and is cancelled, when
//! - it holds the encoder up (its writes are at the bound), or the encoder has finished and the
//!   lane has not;
//! - it has completed no write for [`STALL_FLOOR`] (so a hiccup of a loaded host or a loopback
//!   grid's scheduling never counts; meanwhile it may have up to [`OVERDRAFT`] times its bound
//!   pending, so the others do not wait for the verdict), or, once encoding is over and every
//!   other lane is done (the upload waits for it alone), for a quarter of the upload so far
//!   (at least [`LAST_LANE_FLOOR`]);
//! - the lanes that have done at least [`LAG_FACTOR`] times its progress, and at least
//!   [`MIN_LEAD`] segments, together with the shares already on servers, meet `shares.happy`
//!   (and hold at least k distinct shares) by themselves.
//!
//! Progress is counted per share (a server with two shares does twice the writes), so only a
//! server several times slower than the others is cancelled, never one that is merely last. Its
//! shares stay unplaced: the upload reports it (`UploadResult::stragglers`) and the file is less
//! than fully healthy until a repair places them. Its unfinished buckets are left for the server to
//! abort as idle (asking it would wait on the same slow link).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::AbortHandle;
use storage::ShareNum;

use super::placement::happiness;

/// Writes per share a lane may have queued or in flight before the encoder waits for it, on a
/// link whose round trips take tens of milliseconds: eight keep the link busy while answers travel
/// (see `upload::WRITES_IN_FLIGHT`).
pub(crate) const PENDING_PER_SHARE: u64 = 8;
/// The same on a link of a few milliseconds (a LAN, this machine): two keep it as busy (a 128 MiB
/// upload to ten local servers ran as fast with three, and with two), and each write held back is a
/// block (a third of a MiB at 3-of-10) the gateway does not hold: its peak during such an upload went
/// from 79–80 MiB to 69–70 with three instead of eight, and down by another ~3.5 MiB with two.
pub(crate) const PENDING_PER_SHARE_NEAR: u64 = 2;
/// How many times a lane's progress the lanes that justify cancelling it must have made.
pub(crate) const LAG_FACTOR: u64 = 4;
/// Segments (writes per share) the lanes that justify cancelling another must have completed.
pub(crate) const MIN_LEAD: u64 = 4;
/// How many times its bound a lane far behind may have pending while it is not yet idle for
/// [`STALL_FLOOR`] (so the others do not wait meanwhile).
pub(crate) const OVERDRAFT: u64 = 3;
/// How long a lane must have completed nothing before it may be cancelled.
pub(crate) const STALL_FLOOR: Duration = Duration::from_millis(500);
/// The least a lane must have completed nothing before it may be cancelled when the upload waits
/// for it alone (see the module's doc): a loopback grid's hiccup stays under it.
pub(crate) const LAST_LANE_FLOOR: Duration = Duration::from_millis(100);
/// How long the encoder sleeps between checks when no writer wakes it (a safety net: writers
/// notify on every completion).
const RECHECK: Duration = Duration::from_millis(100);

/// Where a lane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneState {
    /// Still writing.
    Active,
    /// Every write it was given has completed.
    Finished,
    /// A write failed: the encoder no longer feeds it.
    Failed,
    /// Cancelled as a straggler.
    Dropped,
}

struct Lane {
    shares: BTreeSet<ShareNum>,
    /// Writes per share it may have queued or in flight.
    depth: u64,
    /// Shares the same server already held before the upload (they count towards happiness).
    kept: BTreeSet<ShareNum>,
    sent: u64,
    done: u64,
    /// When it last completed a write (or started).
    progressed: Instant,
    state: LaneState,
    abort: AbortHandle,
}

impl Lane {
    fn per_share(&self, writes: u64) -> u64 {
        writes / self.shares.len().max(1) as u64
    }
}

struct State {
    lanes: Vec<Lane>,
    /// Shares already on servers that have no lane, by server.
    kept_elsewhere: Vec<BTreeSet<ShareNum>>,
    happy: usize,
    needed: usize,
    encoded: bool,
    /// The pass was called off ([`Flow::cancel`]).
    cancelled: bool,
    /// When the upload began writing.
    started: Instant,
}

/// The shared state of one encoding pass.
pub(crate) struct Flow {
    state: Mutex<State>,
    moved: Condvar,
}

/// What the encoder should do with a write for a lane.
pub(crate) enum Admit {
    /// Send it.
    Send,
    /// The lane failed or was dropped: skip it.
    Skip,
}

impl Flow {
    /// A flow for lanes with these shares, abort handles and depths (writes per share pending);
    /// `kept` maps each lane (by index, or beyond the lanes for servers without one) to shares its
    /// server already holds.
    pub(crate) fn new(
        lanes: Vec<(BTreeSet<ShareNum>, AbortHandle, u64)>,
        kept: Vec<(Option<usize>, BTreeSet<ShareNum>)>,
        happy: usize,
        needed: usize,
    ) -> Flow {
        let mut lanes: Vec<Lane> = lanes
            .into_iter()
            .map(|(shares, abort, depth)| Lane {
                shares,
                depth: depth.max(1),
                kept: BTreeSet::new(),
                sent: 0,
                done: 0,
                progressed: Instant::now(),
                state: LaneState::Active,
                abort,
            })
            .collect();
        let mut kept_elsewhere = Vec::new();
        for (lane, shares) in kept {
            match lane.and_then(|index| lanes.get_mut(index)) {
                Some(lane) => lane.kept.extend(shares),
                None => kept_elsewhere.push(shares),
            }
        }
        Flow {
            state: Mutex::new(State {
                lanes,
                kept_elsewhere,
                happy,
                needed,
                encoded: false,
                cancelled: false,
                started: Instant::now(),
            }),
            moved: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by the encoder (a blocking thread) before it sends a write to `lane`: waits while the
    /// lane is at its bound, unless it turns out to be a straggler (then it is cancelled and the
    /// write skipped). `closed` says whether the lane's writer is gone (the upload was dropped).
    pub(crate) fn admit(&self, lane: usize, closed: impl Fn() -> bool) -> Result<Admit, ()> {
        let mut state = self.lock();
        loop {
            if state.cancelled {
                return Err(());
            }
            let entry = &state.lanes[lane];
            match entry.state {
                LaneState::Failed | LaneState::Dropped => return Ok(Admit::Skip),
                LaneState::Active | LaneState::Finished => {}
            }
            let bound = entry.depth * entry.shares.len().max(1) as u64;
            let pending = entry.sent - entry.done;
            if pending < bound {
                state.lanes[lane].sent += 1;
                return Ok(Admit::Send);
            }
            if state.far_behind(lane) {
                if state.is_straggler(lane) {
                    state.drop_lane(lane);
                    self.moved.notify_all();
                    return Ok(Admit::Skip);
                }
                // Suspected but not yet idle for the floor: keep the others busy meanwhile.
                if pending < OVERDRAFT * bound {
                    state.lanes[lane].sent += 1;
                    return Ok(Admit::Send);
                }
            }
            if closed() {
                return Err(());
            }
            state = self
                .moved
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The encoder has sent its last write: from now on, lanes still writing may be cancelled.
    /// Waits (on the encoder's thread) until every lane is done or cancelled, checking for
    /// stragglers as writes complete and every [`RECHECK`]; returns early if the writers are gone
    /// (`writers_gone`: the upload was dropped).
    pub(crate) fn encoded(&self, writers_gone: impl Fn() -> bool) {
        let mut state = self.lock();
        state.encoded = true;
        loop {
            state.drop_stragglers();
            if state.cancelled
                || state.lanes.iter().all(|lane| lane.state != LaneState::Active)
                || writers_gone()
            {
                return;
            }
            state = self
                .moved
                .wait_timeout(state, RECHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes `lane` out of the pass as failed, its writes in flight dropped (its server does not
    /// answer): the encoder feeds it no more.
    pub(crate) fn abandon(&self, lane: usize) {
        let mut state = self.lock();
        let entry = &mut state.lanes[lane];
        if entry.state == LaneState::Active {
            entry.state = LaneState::Failed;
            entry.abort.abort();
        }
        drop(state);
        self.moved.notify_all();
    }

    /// Sets how many writes per share `lane` may have queued or in flight from now on.
    pub(crate) fn set_depth(&self, lane: usize, depth: u64) {
        self.lock().lanes[lane].depth = depth.max(1);
    }

    /// A write of `lane` completed (or was skipped after its lane failed).
    pub(crate) fn completed(&self, lane: usize) {
        let mut state = self.lock();
        state.lanes[lane].done += 1;
        state.lanes[lane].progressed = Instant::now();
        drop(state);
        self.moved.notify_all();
    }

    /// `lane`'s writer has finished (`failed`: a write failed).
    pub(crate) fn finished(&self, lane: usize, failed: bool) {
        let mut state = self.lock();
        let entry = &mut state.lanes[lane];
        if entry.state == LaneState::Active {
            entry.state = if failed {
                LaneState::Failed
            } else {
                LaneState::Finished
            };
        }
        if state.encoded {
            state.drop_stragglers();
        }
        drop(state);
        self.moved.notify_all();
    }

    /// A write of `lane` failed: the encoder stops feeding it.
    pub(crate) fn failed(&self, lane: usize) {
        let mut state = self.lock();
        if state.lanes[lane].state == LaneState::Active {
            state.lanes[lane].state = LaneState::Failed;
        }
        drop(state);
        self.moved.notify_all();
    }

    /// Calls the pass off: the encoder's next write fails and the writers send nothing more, so
    /// that the upload can start again another way. Writes already sent are answered first (they
    /// are not dropped): an allocating write dropped on its way could open its upload on the
    /// server after the abort that follows the pass.
    pub(crate) fn cancel(&self) {
        self.lock().cancelled = true;
        self.moved.notify_all();
    }

    /// Whether the pass was called off.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Each lane's final state.
    pub(crate) fn states(&self) -> Vec<LaneState> {
        self.lock().lanes.iter().map(|lane| lane.state).collect()
    }
}

impl State {
    /// Whether `lane` is a straggler: idle for the floor and [`State::far_behind`].
    fn is_straggler(&self, lane: usize) -> bool {
        self.lanes[lane].progressed.elapsed() >= self.stall_floor(lane) && self.far_behind(lane)
    }

    /// How long `lane` must have completed nothing to be cancelled: [`STALL_FLOOR`], less once
    /// the upload waits for it alone.
    fn stall_floor(&self, lane: usize) -> Duration {
        let alone = self.encoded
            && self
                .lanes
                .iter()
                .enumerate()
                .all(|(index, other)| index == lane || other.state != LaneState::Active);
        if alone {
            (self.started.elapsed() / 4).clamp(LAST_LANE_FLOOR, STALL_FLOOR)
        } else {
            STALL_FLOOR
        }
    }

    /// Whether the lanes well ahead of `lane` (see the module's doc) are happy without it.
    fn far_behind(&self, lane: usize) -> bool {
        let slow = &self.lanes[lane];
        if slow.state != LaneState::Active {
            return false;
        }
        let progress = slow.per_share(slow.done);
        let lead = MIN_LEAD.max(LAG_FACTOR * progress);
        let mut holdings: BTreeMap<usize, BTreeSet<ShareNum>> = BTreeMap::new();
        for (index, other) in self.lanes.iter().enumerate() {
            let mut held = other.kept.clone();
            let ahead = index != lane
                && matches!(other.state, LaneState::Active | LaneState::Finished)
                && other.per_share(other.done) >= lead;
            if ahead {
                held.extend(other.shares.iter().copied());
            }
            if !held.is_empty() {
                holdings.insert(index, held);
            }
        }
        for (offset, held) in self.kept_elsewhere.iter().enumerate() {
            holdings.insert(self.lanes.len() + offset, held.clone());
        }
        let distinct: BTreeSet<ShareNum> = holdings.values().flatten().copied().collect();
        distinct.len() >= self.needed && happiness(&holdings) >= self.happy.max(self.needed)
    }

    fn drop_lane(&mut self, lane: usize) {
        let entry = &mut self.lanes[lane];
        entry.state = LaneState::Dropped;
        entry.abort.abort();
    }

    /// Once encoding is done: cancels every active lane that is a straggler.
    fn drop_stragglers(&mut self) {
        for lane in 0..self.lanes.len() {
            if self.lanes[lane].state == LaneState::Active && self.is_straggler(lane) {
                self.drop_lane(lane);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::AbortHandle;

    fn flow(lanes: usize, happy: usize) -> (Flow, Vec<futures::future::AbortRegistration>) {
        let mut registrations = Vec::new();
        let lanes = (0..lanes)
            .map(|index| {
                let (handle, registration) = AbortHandle::new_pair();
                registrations.push(registration);
                (BTreeSet::from([index as ShareNum]), handle, PENDING_PER_SHARE)
            })
            .collect();
        (Flow::new(lanes, Vec::new(), happy, 3), registrations)
    }

    /// Makes `lane` look idle for longer than the floor.
    fn stall(flow: &Flow, lane: usize) {
        flow.lock().lanes[lane].progressed = Instant::now() - 2 * STALL_FLOOR;
    }

    fn send(flow: &Flow, lane: usize, writes: u64) {
        for _ in 0..writes {
            assert!(matches!(flow.admit(lane, || false), Ok(Admit::Send)));
        }
    }

    #[test]
    fn a_lane_far_behind_is_dropped_once_the_rest_are_happy() {
        let (flow, _registrations) = flow(10, 7);
        for lane in 0..10 {
            send(&flow, lane, PENDING_PER_SHARE);
        }
        for lane in 1..10 {
            for _ in 0..MIN_LEAD {
                flow.completed(lane);
            }
        }
        // Lane 0 is at its bound with nothing done while nine others have done MIN_LEAD each,
        // but only once it has been idle for the floor.
        assert!(!flow.lock().is_straggler(0));
        stall(&flow, 0);
        assert!(matches!(flow.admit(0, || false), Ok(Admit::Skip)));
        assert_eq!(flow.states()[0], LaneState::Dropped);
        assert!(flow.states()[1..].iter().all(|s| *s == LaneState::Active));
    }

    #[test]
    fn a_lane_is_not_dropped_if_happiness_needs_it() {
        let (flow, _registrations) = flow(7, 7);
        for lane in 0..7 {
            send(&flow, lane, PENDING_PER_SHARE);
        }
        for lane in 1..7 {
            for _ in 0..PENDING_PER_SHARE {
                flow.completed(lane);
            }
        }
        stall(&flow, 0);
        assert!(!flow.lock().is_straggler(0));
    }

    #[test]
    fn a_lane_somewhat_behind_is_kept() {
        let (flow, _registrations) = flow(10, 7);
        for lane in 0..10 {
            send(&flow, lane, PENDING_PER_SHARE);
            let done = if lane == 0 { 4 } else { 10 };
            for _ in 0..done {
                flow.completed(lane);
            }
        }
        // Lane 0 did 4 while the others did 10: under LAG_FACTOR times behind.
        stall(&flow, 0);
        assert!(!flow.lock().is_straggler(0));
        flow.encoded(|| true);
        assert_eq!(flow.states()[0], LaneState::Active);
    }

    #[test]
    fn after_encoding_a_lane_far_behind_the_finished_ones_is_dropped() {
        let (flow, _registrations) = flow(10, 7);
        for lane in 0..10 {
            send(&flow, lane, 6);
        }
        for lane in 1..10 {
            for _ in 0..6 {
                flow.completed(lane);
            }
            flow.finished(lane, false);
        }
        stall(&flow, 0);
        assert_eq!(flow.states()[0], LaneState::Active, "not before encoding ends");
        flow.encoded(|| true);
        assert_eq!(flow.states()[0], LaneState::Dropped);
    }

    /// A flow begun `ago`, whose lanes 1..10 have each completed 6 writes and finished, except
    /// `writing` (still active), and whose lane 0 has been idle for `idle` with encoding over.
    fn behind_at_the_end(
        ago: u64,
        idle: u64,
        writing: Option<usize>,
    ) -> (Flow, Vec<futures::future::AbortRegistration>) {
        let (flow, registrations) = flow(10, 7);
        flow.lock().started = Instant::now() - Duration::from_millis(ago);
        for lane in 0..10 {
            send(&flow, lane, 6);
        }
        for lane in 1..10 {
            for _ in 0..6 {
                flow.completed(lane);
            }
            if Some(lane) != writing {
                flow.finished(lane, false);
            }
        }
        flow.lock().lanes[0].progressed = Instant::now() - Duration::from_millis(idle);
        flow.lock().encoded = true;
        (flow, registrations)
    }

    /// Once the upload waits for a lane far behind alone, it is cancelled after a quarter of the
    /// upload's time idle, not the full floor; while another lane still writes, the floor holds.
    #[test]
    fn a_lane_far_behind_that_the_upload_waits_for_alone_gets_a_shorter_floor() {
        // Idle for 200 ms: more than a quarter of the 600 ms so far, less than STALL_FLOOR.
        let (alone, _registrations) = behind_at_the_end(600, 200, Some(9));
        assert!(
            !alone.lock().is_straggler(0),
            "lane 9 still writes: the full floor holds"
        );
        alone.finished(9, false);
        assert_eq!(alone.states()[0], LaneState::Dropped);
        // Idle for less than LAST_LANE_FLOOR: kept, however short the upload.
        let (short, _registrations) = behind_at_the_end(100, 50, None);
        assert!(!short.lock().is_straggler(0));
    }

    #[test]
    fn a_small_upload_waits_for_a_lane_just_behind() {
        let (flow, _registrations) = flow(10, 7);
        for lane in 0..10 {
            send(&flow, lane, 3);
        }
        flow.completed(0);
        for lane in 1..10 {
            for _ in 0..3 {
                flow.completed(lane);
            }
            flow.finished(lane, false);
        }
        stall(&flow, 0);
        flow.encoded(|| true);
        // The others did 3 writes (under MIN_LEAD): lane 0 is not cancelled for being last.
        assert_eq!(flow.states()[0], LaneState::Active);
    }
}

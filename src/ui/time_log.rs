//! Measures the human time each image costs: a visit runs from showing an image to leaving it,
//! and adds the gaps between consecutive inputs (keys, pointer, wheel) while the window has
//! focus, leaving out every gap longer than [`IDLE_LIMIT`] (the person was away). It also
//! counts the key presses and the edits (actions) made during the visit. The session stores
//! each finished visit through the background writer (`store::TimeVisit`).
//!
//! The time comes from a [`Clock`], so tests drive a [`ManualClock`] instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A gap between two inputs longer than this is not working time.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Where visits read the time.
pub trait Clock: Send + Sync {
    /// Time since some fixed start; never goes back.
    fn now(&self) -> Duration;
}

/// The system's monotonic clock.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to (tests script the time a person takes).
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

/// What one visit of an image measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Visit {
    pub image: Uuid,
    pub active: Duration,
    pub actions: u64,
    pub key_presses: u64,
}

impl Visit {
    /// True when nothing happened on the image (shown and left without an input).
    pub fn is_empty(&self) -> bool {
        self.active.is_zero() && self.actions == 0 && self.key_presses == 0
    }
}

/// The visit in progress.
pub struct TimeLog {
    clock: Arc<dyn Clock>,
    visit: Option<Visit>,
    /// The last input counted; `None` after focus was lost (the next input starts afresh).
    last_input: Option<Duration>,
}

impl Default for TimeLog {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock::default()))
    }
}

impl TimeLog {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            visit: None,
            last_input: None,
        }
    }

    /// Reads the time from `clock` from now on (the visit in progress keeps what it has).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
        self.last_input = self.visit.map(|_| self.clock.now());
    }

    /// The image of the visit in progress.
    pub fn image(&self) -> Option<Uuid> {
        self.visit.map(|v| v.image)
    }

    /// An input arrived while the window had focus: the gap since the last one counts unless
    /// it is longer than [`IDLE_LIMIT`].
    pub fn input(&mut self) {
        let now = self.clock.now();
        if let (Some(v), Some(last)) = (&mut self.visit, self.last_input) {
            let gap = now.saturating_sub(last);
            if gap <= IDLE_LIMIT {
                v.active += gap;
            }
        }
        self.last_input = Some(now);
    }

    /// The window lost focus: the time until the next input does not count.
    pub fn pause(&mut self) {
        self.last_input = None;
    }

    /// Keys pressed on the image.
    pub fn key_presses(&mut self, n: u64) {
        if let Some(v) = &mut self.visit {
            v.key_presses += n;
        }
    }

    /// An edit was made on the image.
    pub fn action(&mut self) {
        if let Some(v) = &mut self.visit {
            v.actions += 1;
        }
    }

    /// The image shown is now `image`: ends the visit of the one before (returned, unless
    /// nothing happened on it) and starts one for `image`. Showing the same image again
    /// continues its visit.
    pub fn show(&mut self, image: Option<Uuid>) -> Option<Visit> {
        if self.image() == image {
            return None;
        }
        let done = self.finish();
        if let Some(image) = image {
            self.visit = Some(Visit {
                image,
                ..Visit::default()
            });
            self.last_input = Some(self.clock.now());
        }
        done
    }

    /// Ends the visit in progress (the project closes), returning it unless it is empty.
    pub fn finish(&mut self) -> Option<Visit> {
        self.visit.take().filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_add_their_gaps_and_long_idle_gaps_and_lost_focus_do_not_count() {
        let clock = Arc::new(ManualClock::default());
        let mut log = TimeLog::new(clock.clone());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(log.show(Some(a)), None);
        clock.advance(Duration::from_secs(5));
        log.input();
        log.key_presses(1);
        log.action();
        // Two minutes away: not counted.
        clock.advance(Duration::from_secs(120));
        log.input();
        clock.advance(Duration::from_secs(3));
        log.input();
        // Focus lost for 10 s: not counted either.
        log.pause();
        clock.advance(Duration::from_secs(10));
        log.input();
        clock.advance(Duration::from_secs(2));
        log.input();
        log.key_presses(2);
        let visit = log.show(Some(b)).expect("a's visit");
        assert_eq!(
            visit,
            Visit {
                image: a,
                active: Duration::from_secs(10),
                actions: 1,
                key_presses: 3,
            }
        );
        // Exactly the limit still counts; an image left without input is no visit.
        clock.advance(IDLE_LIMIT);
        log.input();
        assert_eq!(log.finish().map(|v| v.active), Some(IDLE_LIMIT));
        log.show(Some(a));
        clock.advance(Duration::from_secs(1));
        assert_eq!(log.show(Some(b)), None);
    }
}

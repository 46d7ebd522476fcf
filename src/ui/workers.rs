//! The one way the app starts a background thread. [`spawn`] names the thread, catches a panic
//! in it and reports it: the thread's name and the panic's message go to a list kept with the
//! egui context, which the UI takes each frame in `App::logic` ([`take_deaths`]) and shows in
//! the status bar. No thread of the app dies silently.
//!
//! The list lives in the context's data (not in a global), so two apps in one process (tests)
//! never see each other's threads.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use eframe::egui;
use parking_lot::Mutex;

/// A background thread that panicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerDeath {
    /// The thread's name (`loupe-store-writer`, `loupe-decode-0`, …).
    pub thread: String,
    /// The panic's message.
    pub message: String,
}

impl std::fmt::Display for WorkerDeath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} stopped: {}", self.thread, self.message)
    }
}

/// Deaths not yet taken by the UI.
#[derive(Clone, Default)]
struct Deaths(Arc<Mutex<Vec<WorkerDeath>>>);

fn deaths(ctx: &egui::Context) -> Deaths {
    ctx.data_mut(|d| {
        d.get_temp_mut_or_default::<Deaths>(egui::Id::unique("loupe-worker-deaths"))
            .clone()
    })
}

/// Starts `work` on a thread named `name`. A panic in it is caught, logged, reported to the UI
/// (see [`take_deaths`]) and returned by `join` as the [`WorkerDeath`], and the UI is woken up
/// to show it.
pub fn spawn<T: Send + 'static>(
    ctx: &egui::Context,
    name: impl Into<String>,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<Result<T, WorkerDeath>>> {
    let name = name.into();
    let report = deaths(ctx);
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            // The work owns what it uses; nothing it shares is left half-changed for anyone
            // who goes on using it: its channels close and its owners see the death.
            std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
                let death = WorkerDeath {
                    thread: name,
                    message: crate::panic_message(&payload),
                };
                tracing::error!("thread {death}");
                report.0.lock().push(death.clone());
                ctx.request_repaint();
                death
            })
        })
}

/// The threads that died since the last call, oldest first.
pub fn take_deaths(ctx: &egui::Context) -> Vec<WorkerDeath> {
    std::mem::take(&mut *deaths(ctx).0.lock())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_named_and_reported_to_its_own_context() {
        let ctx = egui::Context::default();
        let other = egui::Context::default();
        let fine = spawn(&ctx, "loupe-test-fine", || 7).expect("spawn");
        assert_eq!(fine.join().expect("joined"), Ok(7));
        let dies =
            spawn(&ctx, "loupe-test-dies", || -> u32 { panic!("boom {}", 42) }).expect("spawn");
        let death = dies.join().expect("the panic is caught").expect_err("died");
        let expected = WorkerDeath {
            thread: "loupe-test-dies".into(),
            message: "boom 42".into(),
        };
        assert_eq!(death, expected);
        assert_eq!(take_deaths(&ctx), vec![expected]);
        assert!(take_deaths(&ctx).is_empty(), "taken once");
        assert!(take_deaths(&other).is_empty(), "another app sees nothing");
    }
}

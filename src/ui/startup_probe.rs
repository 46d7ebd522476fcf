//! `LOUPE_EXIT_AFTER_FIRST_FRAME=1`: measures the time from launch to the first drawn frame.
//!
//! The probe wraps the app, lets it draw one frame, and at the start of the next one (when the
//! first has been presented) prints the time and closes the window. The moment is printed as
//! milliseconds since the Unix epoch so that a script can subtract the time it launched the
//! process at (packaging/measure-startup.sh), which counts the executable's loading too.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eframe::egui::{self, Ui};

/// The environment variable that turns the probe on.
pub const ENV: &str = "LOUPE_EXIT_AFTER_FIRST_FRAME";

/// Whether the probe was asked for.
pub fn wanted() -> bool {
    std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// An app that closes itself once its first frame has been drawn.
pub struct StartupProbe<A> {
    inner: A,
    started: Instant,
    frames: u32,
}

impl<A> StartupProbe<A> {
    /// Wraps `inner`; `started` is when `ui::run` began, for the in-process part of the time.
    pub fn new(inner: A, started: Instant) -> Self {
        Self {
            inner,
            started,
            frames: 0,
        }
    }
}

impl<A: eframe::App> eframe::App for StartupProbe<A> {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        if self.frames == 1 {
            let epoch_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            println!(
                "first frame drawn: epoch_ms={epoch_ms} since_run_ms={}",
                self.started.elapsed().as_millis()
            );
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.inner.ui(ui, frame);
        // An idle app draws nothing more; ask for the frame whose start proves the first one
        // was presented.
        ui.ctx().request_repaint();
        self.frames = self.frames.saturating_add(1);
    }

    fn on_exit(&mut self) {
        self.inner.on_exit();
    }

    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        self.inner.clear_color(visuals)
    }
}

//! `LOUPE_FRAME_LOG=FILE`: one line per frame, for measuring the real app (benches/app_latency.sh).
//!
//! Each line is `start_us<TAB>ui_us<TAB>ready<TAB>path`: when the frame began (microseconds
//! since the Unix epoch, so a script can compare it with when it sent a key), how long the app
//! took to build it (the CPU side of a frame: input, layout, tessellation-ready shapes; the GPU
//! work and presentation come after), whether the current image was decoded and drawn in it,
//! and the current image's path.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eframe::egui::{self, Ui};

use super::App;

/// The environment variable that names the log file.
pub const ENV: &str = "LOUPE_FRAME_LOG";

/// The log file asked for, if any.
pub fn wanted() -> Option<PathBuf> {
    std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The app, timed frame by frame.
pub struct FrameLog {
    inner: App,
    out: std::io::BufWriter<std::fs::File>,
}

impl FrameLog {
    pub fn new(inner: App, path: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot write the frame log {}: {e}", path.display()))?;
        Ok(Self {
            inner,
            out: std::io::BufWriter::new(file),
        })
    }
}

impl eframe::App for FrameLog {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        let start_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let t0 = Instant::now();
        self.inner.ui(ui, frame);
        let ui_us = t0.elapsed().as_micros();
        let (ready, path) = self.inner.session().map_or((false, ""), |s| {
            (s.image_ready(), s.current().map_or("", |c| c.path.as_str()))
        });
        // Written as it goes: a script may end the app with a signal.
        let _ = writeln!(self.out, "{start_us}\t{ui_us}\t{}\t{path}", u8::from(ready));
        let _ = self.out.flush();
    }

    fn on_exit(&mut self) {
        self.inner.on_exit();
    }

    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        self.inner.clear_color(visuals)
    }
}

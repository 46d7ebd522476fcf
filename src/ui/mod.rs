//! The desktop app (egui/eframe, wgpu): the labeling canvas, the image and box panels, proposal
//! review, undo/redo and background store writes. `run` opens the window.
//!
//! Layout: `app` (the eframe app) holds a `session::Session` per open project. Panels
//! (`image_list`, `box_list`, `bars`, `canvas`, `classes::ClassPicker`, `help`, `start`) draw
//! and push `commands::Command`s; `Session::apply` applies them and is the only place that
//! changes boxes, through `document::Document` (in-memory boxes, undo/redo) and
//! `writer::StoreWriter` (a thread with its own store connection). `viewport` owns every
//! image/screen transform, `gpu` + `shaders/` draw the image, `loader` and `thumbs` decode off
//! the UI thread, `theme` holds colours and sizes, `settings` and `shortcuts` what persists,
//! `settings_page` the window that edits them.

mod app;
mod bars;
mod box_list;
mod canvas;
mod classes;
mod commands;
mod document;
mod gpu;
mod help;
mod image_list;
mod lead;
mod loader;
mod model_run;
mod session;
mod settings;
mod settings_page;
mod shortcuts;
mod start;
mod sync_status;
mod theme;
mod thumbs;
mod viewport;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu::{self, wgpu};

pub use app::{App, AppOptions};
pub use canvas::{BoxLayer, Canvas, Display, Handle, WindowPreset, paint_boxes};
pub use classes::{ClassTable, Thresholds};
pub use commands::Command;
pub use document::{Change, Document};
pub use help::markdown_table;
pub use lead::{
    DashboardData, EvalResult, HistoryRow, ImageMeta, LeadCommand, LeadViews, Mode, Queue,
};
pub use loader::{GrayStats, Job, LoadedImage, Slot};
pub use model_run::{ModelCommand, ModelRunner, ModelState, RecentModel, RuntimeState};
pub use session::{Current, Session};
pub use settings::{ConfigDir, Settings};
pub use settings_page::{SavedSettings, SettingsOutcome, SettingsPage};
pub use shortcuts::{Action, KeyBinding, KeyConflict, Keymap};
pub use sync_status::{Phase, SyncCommand, SyncConfig, SyncStatus, SyncView};
pub use theme::ThemeChoice;
pub use viewport::Viewport;
pub use writer::SaveState;

/// Opens the app window: on `project` if given, else on the most recent project, else on the
/// start screen. Returns when the window closes, after every edit is written.
pub fn run(project: Option<PathBuf>) -> anyhow::Result<()> {
    let mut wgpu_options = egui_wgpu::WgpuConfiguration::default();
    if let egui_wgpu::WgpuSetup::CreateNew(create) = &mut wgpu_options.wgpu_setup {
        // Ask for the largest textures the adapter has (egui asks for 8192), so big scans fit.
        create.device_descriptor = Arc::new(|adapter: &wgpu::Adapter| {
            let base = if adapter.get_info().backend == wgpu::Backend::Gl {
                wgpu::Limits::downlevel_webgl2_defaults()
            } else {
                wgpu::Limits::default()
            };
            wgpu::DeviceDescriptor {
                label: Some("loupe"),
                required_limits: wgpu::Limits {
                    max_texture_dimension_2d: adapter.limits().max_texture_dimension_2d.max(8192),
                    ..base
                },
                ..Default::default()
            }
        });
    }
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Loupe")
            .with_app_id("loupe")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([720.0, 480.0]),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options,
        ..Default::default()
    };
    let options = AppOptions {
        project,
        open_last: true,
        config: ConfigDir::user(),
        sync: SyncConfig::default(),
    };
    eframe::run_native(
        "Loupe",
        native,
        Box::new(move |cc| Ok(Box::new(App::new(cc, options)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the app window: {e}"))
}

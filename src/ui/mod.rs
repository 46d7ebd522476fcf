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
mod box_tools;
mod canvas;
mod classes;
mod commands;
mod document;
mod frame_log;
mod gpu;
mod help;
mod image_list;
mod lead;
mod loader;
mod model_run;
mod reading;
mod return_dialog;
mod session;
mod settings;
mod settings_page;
mod shortcuts;
mod start;
mod startup_probe;
mod sync_status;
mod theme;
mod thumbs;
mod tiles;
mod time_log;
mod viewport;
mod workers;
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
    DashboardData, EvalResult, HistoryRow, ImageMeta, IssueKey, LeadCommand, LeadViews, Mode, Queue,
};
pub use loader::{GrayStats, Job, LoadedImage, Slot};
pub use model_run::{ModelCommand, ModelRunner, ModelState, RecentModel, RuntimeState};
pub use session::{Current, Session};
pub use settings::{ConfigDir, Settings};
pub use settings_page::{SavedSettings, SettingsOutcome, SettingsPage};
pub use shortcuts::{Action, KeyBinding, KeyConflict, Keymap};
pub use sync_status::{Phase, SyncCommand, SyncConfig, SyncStatus, SyncView};
pub use theme::ThemeChoice;
pub use time_log::{Clock, IDLE_LIMIT, ManualClock, SystemClock};
pub use viewport::Viewport;
pub use writer::SaveState;

/// Opens the app window: on `project` if given, else on the most recent project, else on the
/// start screen. Returns when the window closes, after every edit is written.
pub fn run(project: Option<PathBuf>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    #[cfg(windows)]
    close_own_console();
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
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Loupe")
        // The desktop file's name (assets/org.loupe.Loupe.desktop): Wayland compositors find
        // the window's icon and name through it, X11 through WM_CLASS.
        .with_app_id("org.loupe.Loupe")
        .with_inner_size([1440.0, 900.0])
        .with_min_inner_size([720.0, 480.0]);
    // The window and taskbar icon, the same picture the installers carry as files.
    match eframe::icon_data::from_png_bytes(include_bytes!(
        "../../assets/icons/hicolor/128x128/apps/loupe.png"
    )) {
        Ok(icon) => viewport = viewport.with_icon(Arc::new(icon)),
        Err(e) => tracing::warn!("the built-in window icon does not decode: {e}"),
    }
    let native = eframe::NativeOptions {
        viewport,
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
        Box::new(move |cc| {
            let app = App::new(cc, options);
            if let Some(path) = frame_log::wanted() {
                return Ok(Box::new(frame_log::FrameLog::new(app, &path)?));
            }
            Ok(if startup_probe::wanted() {
                Box::new(startup_probe::StartupProbe::new(app, started))
            } else {
                Box::new(app) as Box<dyn eframe::App>
            })
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the app window: {e}"))
}

/// On Windows `loupe.exe` is a console program (it is the CLI too), so starting the app from the
/// Start menu or a double-clicked `.loupe` file opens a console window beside it, which would
/// end the app when closed. When that console is Loupe's alone (no shell started it) and shows
/// the output, let it go; from a terminal the console is shared and stays.
#[cfg(windows)]
#[allow(unsafe_code)] // Two kernel32 calls with a local buffer; nothing is kept.
fn close_own_console() {
    use std::io::IsTerminal;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetConsoleProcessList(list: *mut u32, count: u32) -> u32;
        fn FreeConsole() -> i32;
    }
    if !std::io::stdout().is_terminal() {
        return;
    }
    let mut processes = [0u32; 2];
    // SAFETY: the buffer holds `processes.len()` entries, as the count says.
    let attached = unsafe { GetConsoleProcessList(processes.as_mut_ptr(), 2) };
    if attached == 1 {
        // SAFETY: no arguments; detaching only stops console output, which nobody reads.
        unsafe {
            FreeConsole();
        }
    }
}

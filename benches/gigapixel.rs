//! Gigapixel images in the real app, headless (driven by `benches/gigapixel.sh`, which makes
//! the images): time to the first complete view, the app's frame time while panning at full
//! resolution, and peak resident memory; and, for comparison, opening the same file with the
//! `image` crate. One measurement per process, so each peak memory is its own:
//!
//! ```text
//! cargo bench --bench gigapixel -- app FILE        # the app, with a software GPU if present
//! cargo bench --bench gigapixel -- image-crate FILE
//! ```
//!
//! Frame time is the app's CPU time per frame (UI and tessellation, as in `benches/frame.rs`);
//! the GPU's drawing and tile uploads happen elsewhere (uploads on the tile threads).

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui::{self, Pos2, RawInput, Rect, pos2, vec2};
use loupe::store::{ImageInput, Project};
use loupe::ui::{App, AppOptions, Command};

const SCREEN: Rect = Rect::from_min_max(Pos2::ZERO, pos2(1600.0, 1000.0));

struct Headless {
    ctx: egui::Context,
    app: App,
    time: f64,
}

impl Headless {
    fn frame(&mut self) -> Duration {
        self.time += 1.0 / 60.0;
        let input = RawInput {
            screen_rect: Some(SCREEN),
            time: Some(self.time),
            ..RawInput::default()
        };
        let started = Instant::now();
        let app = &mut self.app;
        let mut output = self.ctx.run_ui(input, |ui| app.frame_ui(ui));
        output.textures_delta.clear();
        let prims = self.ctx.tessellate(output.shapes, output.pixels_per_point);
        std::hint::black_box(prims);
        started.elapsed()
    }

    fn session(&self) -> &loupe::ui::Session {
        self.app.session().expect("project open")
    }
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn project_with(file: &Path, dir: &Path) -> std::path::PathBuf {
    let name = file
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let link = dir.join(&name);
    #[cfg(unix)]
    std::os::unix::fs::symlink(std::fs::canonicalize(file).expect("file"), &link).expect("link");
    let path = dir.join("giga.loupe");
    let mut project = Project::create(&path).expect("create");
    let info = loupe::imaging::probe(&link).expect("probe");
    let bytes = std::fs::metadata(&link).expect("size").len();
    let mut bulk = project.bulk().expect("bulk");
    // The hash of a multi-gigabyte file is not what is measured here: the file's size and name
    // stand in for it.
    bulk.upsert_image(&ImageInput {
        path: name,
        hash: Some(format!("bench-{bytes}")),
        width: info.width,
        height: info.height,
        bytes,
        external_id: None,
    })
    .expect("add");
    bulk.commit().expect("commit");
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(&mut project, &me.name, me.role).expect("profile");
    path
}

fn bench_app(file: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY-free: set before any thread reads it (the app has not started).
    let cache = dir.path().join("cache");
    let project = project_with(file, dir.path());
    let gpu = std::panic::catch_unwind(|| {
        egui_kittest::wgpu::create_render_state(
            egui_kittest::wgpu::default_wgpu_setup(),
            eframe::egui_wgpu::RendererOptions::default(),
        )
    })
    .ok();
    println!(
        "gpu: {}",
        if gpu.is_some() {
            "software Vulkan adapter (tiles uploaded)"
        } else {
            "none (tiles read, not uploaded)"
        }
    );
    let started = Instant::now();
    let ctx = egui::Context::default();
    let mut cc = eframe::CreationContext::_new_kittest(ctx.clone());
    cc.wgpu_render_state = gpu;
    let app = App::new(&cc, AppOptions::project_only(&project));
    let mut h = Headless {
        ctx,
        app,
        time: 0.0,
    };
    if let Some(s) = h.app.session_mut() {
        s.set_tile_settings(loupe::imaging::tiles::TileSettings {
            cache_dir: cache,
            ..loupe::imaging::tiles::TileSettings::default()
        });
        s.apply(Command::ShowRow(0));
    }
    // First view: the image fitted to the window with every tile it needs on screen.
    let mut frames = 0;
    let mut first_picture = None;
    loop {
        h.frame();
        frames += 1;
        if first_picture.is_none() && h.session().resident_tiles() > 0 {
            first_picture = Some(started.elapsed());
        }
        if h.session().view_complete() && h.session().resident_tiles() > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no first view in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let first_view = started.elapsed();
    let size = h.session().canvas().viewport.image_size();
    println!("image: {} x {} pixels", size.x, size.y);
    println!(
        "first picture (coarsest level): {:.0} ms; first complete view: {:.0} ms ({frames} frames)",
        first_picture.unwrap_or(first_view).as_secs_f64() * 1000.0,
        first_view.as_secs_f64() * 1000.0
    );

    // Full resolution at the centre, then pan right and down at 600 points per second (a fast
    // drag), one frame every 16 ms, for 6 seconds.
    if let Some(s) = h.app.session_mut() {
        let viewport = &mut s.canvas_mut().viewport;
        let centre = viewport.canvas().center();
        viewport.one_to_one(1.0, centre);
    }
    let mut times = Vec::new();
    let mut complete = 0usize;
    let pan_started = Instant::now();
    for i in 0..360 {
        if let Some(s) = h.app.session_mut() {
            let dir = if (i / 120) % 2 == 0 {
                vec2(-10.0, -4.0)
            } else {
                vec2(-4.0, -10.0)
            };
            s.canvas_mut().viewport.pan(dir);
        }
        let t = h.frame();
        times.push(t.as_secs_f64() * 1000.0);
        if h.session().view_complete() {
            complete += 1;
        }
        let next = pan_started + Duration::from_millis(16 * (i + 1));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((times.len() - 1) as f64 * p).round() as usize;
        times[i]
    };
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "panning at 1:1, {} frames: frame time mean {mean:.2} ms, median {:.2} ms, p95 {:.2} ms, max {:.2} ms; \
         {complete} frames had every tile of the full-resolution level on screen",
        times.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    println!(
        "tiles resident at the end: {}",
        h.session().resident_tiles()
    );
    match peak_rss_mib() {
        Some(mib) => println!("peak resident memory: {mib:.0} MiB"),
        None => println!("peak resident memory: unknown"),
    }
}

fn bench_image_crate(file: &Path) {
    let started = Instant::now();
    let result = image::open(file);
    let took = started.elapsed();
    match result {
        Ok(img) => println!(
            "image::open: decoded {} x {} in {:.0} ms",
            img.width(),
            img.height(),
            took.as_secs_f64() * 1000.0
        ),
        Err(e) => println!(
            "image::open: failed after {:.0} ms: {e}",
            took.as_secs_f64() * 1000.0
        ),
    }
    match peak_rss_mib() {
        Some(mib) => println!("peak resident memory: {mib:.0} MiB"),
        None => println!("peak resident memory: unknown"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the mode and file follow it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [mode, file] if mode == "app" => bench_app(Path::new(file)),
        [mode, file] if mode == "image-crate" => bench_image_crate(Path::new(file)),
        _ => {
            eprintln!(
                "usage: cargo bench --bench gigapixel -- app|image-crate FILE (see benches/gigapixel.sh)"
            );
        }
    }
}

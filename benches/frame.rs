//! Frame cost of the real app, headless: CPU time of one frame (UI + tessellation) with 1,000
//! and 10,000 boxes on one image, idle and while dragging a box; and the time from "next
//! image" to the frame that shows a 12-megapixel JPEG, with and without prefetch (decoding and
//! upload on lavapipe when a software Vulkan adapter is present).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use eframe::egui::{self, Event, Modifiers, PointerButton, Pos2, RawInput, Rect, pos2, vec2};
use loupe::model::{AnnotationValue, BBox, BoxFlags, ReviewState, Source};
use loupe::store::{Edit, ImageInput, Project};
use loupe::ui::{App, AppOptions, Command};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const SCREEN: Rect = Rect::from_min_max(Pos2::ZERO, pos2(1600.0, 1000.0));

/// The app on a plain egui context (no window, no accessibility tree).
struct Headless {
    ctx: egui::Context,
    app: App,
    time: f64,
}

impl Headless {
    fn new(project: &Path, gpu: Option<eframe::egui_wgpu::RenderState>) -> Self {
        let ctx = egui::Context::default();
        let mut cc = eframe::CreationContext::_new_kittest(ctx.clone());
        cc.wgpu_render_state = gpu;
        let app = App::new(&cc, AppOptions::project_only(project));
        let mut h = Self {
            ctx,
            app,
            time: 0.0,
        };
        h.app.flush_writes();
        h.frame(Vec::new());
        h.frame(Vec::new());
        assert!(
            !h.session().lead().modal_open(),
            "no modal dialog may take the benchmark's input"
        );
        h
    }

    /// One frame: UI pass plus tessellation, as the window would do.
    fn frame(&mut self, events: Vec<Event>) {
        self.time += 1.0 / 60.0;
        let input = RawInput {
            screen_rect: Some(SCREEN),
            time: Some(self.time),
            events,
            ..RawInput::default()
        };
        let app = &mut self.app;
        let mut output = self.ctx.run_ui(input, |ui| app.frame_ui(ui));
        // No GPU here: texture uploads are dropped on purpose (epaint insists it is said).
        output.textures_delta.clear();
        let prims = self.ctx.tessellate(output.shapes, output.pixels_per_point);
        black_box(prims);
    }

    fn apply(&mut self, c: Command) {
        if let Some(s) = self.app.session_mut() {
            s.apply(c);
        }
        self.frame(Vec::new());
    }

    fn session(&self) -> &loupe::ui::Session {
        self.app.session().expect("project open")
    }
}

/// Chooses the store's default user as this project's profile. Without a chosen profile the
/// app opens its first-start profile dialog, a modal that takes every key and pointer event:
/// "next image" would do nothing and a drag would not reach the canvas.
fn choose_profile(project: &mut Project) {
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(project, &me.name, me.role).expect("profile");
}

fn add_image(project: &mut Project, root: &Path, name: &str) -> Uuid {
    let file = root.join(name);
    let (hash, bytes) = loupe::imaging::hash_file(&file).expect("hash");
    let info = loupe::imaging::probe(&file).expect("probe");
    let mut bulk = project.bulk().expect("bulk");
    bulk.upsert_image(&ImageInput {
        path: name.into(),
        hash: Some(hash),
        width: info.width,
        height: info.height,
        bytes,
        external_id: None,
    })
    .expect("add");
    bulk.commit().expect("commit");
    project
        .image_by_path(name)
        .expect("query")
        .expect("image")
        .id
}

/// A project with `boxes_1k.png` and `boxes_10k.png` (2000×1500) holding that many boxes, a
/// third of them proposals.
fn boxes_project(root: &Path) -> PathBuf {
    let path = root.join("boxes.loupe");
    let mut project = Project::create(&path).expect("create");
    let classes: Vec<Uuid> = ["car", "person", "bike", "sign"]
        .iter()
        .map(|n| project.ensure_class(n).expect("class").id)
        .collect();
    let run = project
        .create_run(&loupe::store::NewRun {
            name: "bench".into(),
            kind: "onnx".into(),
            settings: "{}".into(),
            ..Default::default()
        })
        .expect("run");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (name, n) in [("boxes_1k.png", 1_000), ("boxes_10k.png", 10_000)] {
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
            // Different content per image (the store recognises files by hash).
            image::Rgb([
                u8::try_from(x % 256).unwrap_or(0),
                u8::try_from(y % 256).unwrap_or(0),
                if n == 1_000 { 90 } else { 160 },
            ])
        });
        img.save(root.join(name)).expect("write");
        let image = add_image(&mut project, root, name);
        let edits: Vec<Edit> = (0..n)
            .map(|i| {
                let (w, h) = (rng.random_range(8.0..120.0), rng.random_range(8.0..120.0));
                let (x, y) = (
                    rng.random_range(0.0..2000.0 - w),
                    rng.random_range(0.0..1500.0 - h),
                );
                let proposal = i % 3 == 0;
                Edit::Create {
                    id: Uuid::now_v7(),
                    value: AnnotationValue {
                        image,
                        class: classes[i % classes.len()],
                        bbox: BBox::new(f64::round(x), f64::round(y), f64::round(w), f64::round(h)),
                        source: if proposal {
                            Source::Model {
                                run,
                                score: rng.random_range(0.05..1.0),
                            }
                        } else {
                            Source::Human
                        },
                        state: if proposal {
                            ReviewState::Proposed
                        } else {
                            ReviewState::Submitted
                        },
                        flags: BoxFlags::default(),
                        deleted: false,
                        attributes: Default::default(),
                    },
                }
            })
            .collect();
        project.apply(&edits).expect("boxes");
    }
    choose_profile(&mut project);
    path
}

fn bench_boxes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = boxes_project(dir.path());
    let mut h = Headless::new(&project, None);
    let mut group = c.benchmark_group("frame");
    for (row, label) in [(0usize, "1000"), (1usize, "10000")] {
        // Rows are in path order: boxes_10k.png, boxes_1k.png.
        let row = 1 - row;
        h.apply(Command::ShowRow(row));
        let n = h.session().boxes().len();
        assert_eq!(n.to_string(), label, "the image has the boxes");
        group.bench_function(format!("idle/{label}"), |b| b.iter(|| h.frame(Vec::new())));

        // Select a human box near the centre and keep dragging it to and fro.
        let viewport = h.session().canvas().viewport;
        let centre = viewport.image_from_screen(viewport.canvas().center());
        let target = h
            .session()
            .boxes()
            .iter()
            .filter(|a| a.value.state == ReviewState::Submitted)
            .min_by(|a, b| {
                let d = |x: &BBox| {
                    let (cx, cy) = x.center();
                    (cx - f64::from(centre.x)).powi(2) + (cy - f64::from(centre.y)).powi(2)
                };
                d(&a.value.bbox).total_cmp(&d(&b.value.bbox))
            })
            .map(|a| (a.id, a.value.bbox))
            .expect("a box");
        h.apply(Command::Select(Some(target.0)));
        #[allow(clippy::cast_possible_truncation)]
        let (cx, cy) = (target.1.center().0 as f32, target.1.center().1 as f32);
        let grab = viewport.screen_from_image(pos2(cx, cy));
        let press = |pressed: bool, pos: Pos2| Event::PointerButton {
            pos,
            button: PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        };
        h.frame(vec![Event::PointerMoved(grab)]);
        h.frame(vec![press(true, grab)]);
        h.frame(vec![Event::PointerMoved(grab + vec2(12.0, 0.0))]);
        let mut flip = false;
        group.bench_function(format!("drag/{label}"), |b| {
            b.iter(|| {
                flip = !flip;
                let offset = if flip {
                    vec2(16.0, 4.0)
                } else {
                    vec2(12.0, 0.0)
                };
                h.frame(vec![Event::PointerMoved(grab + offset)]);
            });
        });
        h.frame(vec![press(false, grab + vec2(12.0, 0.0))]);
        h.app.flush_writes();
        h.frame(vec![Event::PointerGone]);
        let moved = h
            .session()
            .boxes()
            .iter()
            .find(|a| a.id == target.0)
            .map(|a| a.value.bbox)
            .expect("the dragged box");
        assert_ne!(moved, target.1, "the drag moved the box");
    }
    group.finish();
}

/// Four 12-megapixel JPEGs (4000×3000) with different content.
fn jpeg_project(root: &Path) -> PathBuf {
    let path = root.join("photos.loupe");
    let mut project = Project::create(&path).expect("create");
    for i in 0..4u32 {
        let name = format!("photo_{i}.jpg");
        let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
            let v = (x / 7 + y / 5 + i * 37) % 256;
            image::Rgb([
                u8::try_from(v).unwrap_or(0),
                u8::try_from((x ^ y) % 256).unwrap_or(0),
                u8::try_from((i * 60) % 256).unwrap_or(0),
            ])
        });
        img.save(root.join(&name)).expect("write jpeg");
        add_image(&mut project, root, &name);
    }
    choose_profile(&mut project);
    path
}

/// Runs frames until the current image is on screen.
fn until_shown(h: &mut Headless) {
    loop {
        h.frame(Vec::new());
        if h.session().image_ready() {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn wait_decoded(h: &mut Headless, row: usize) {
    let id = h.session().rows()[row].id;
    while !h.session().is_decoded(id) {
        h.frame(Vec::new());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn current_row(h: &Headless) -> Option<usize> {
    h.session().current().and_then(|c| c.row)
}

fn bench_next_image(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = jpeg_project(dir.path());
    // A software Vulkan adapter (lavapipe) if there is one, so the upload is timed too.
    let gpu = std::panic::catch_unwind(|| {
        egui_kittest::wgpu::create_render_state(
            egui_kittest::wgpu::default_wgpu_setup(),
            eframe::egui_wgpu::RendererOptions::default(),
        )
    })
    .ok();
    eprintln!(
        "next_image: GPU upload {}",
        if gpu.is_some() {
            "included"
        } else {
            "skipped (no adapter)"
        }
    );
    let mut h = Headless::new(&project, gpu);
    assert_eq!(h.session().rows().len(), 4, "four photos listed");
    // Thumbnails decode the same files on other threads: let them finish first, so they do
    // not compete with the timed decodes.
    while !h.session().thumbnails_idle() {
        h.frame(Vec::new());
        std::thread::sleep(Duration::from_millis(5));
    }
    let next_id = h.session().rows()[1].id;
    // For reading the no-prefetch figure: the decode alone (libjpeg-turbo, one thread), without
    // the RGBA conversion, mip chain and upload the loader adds.
    let mut decodes: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            black_box(loupe::imaging::decode(&dir.path().join("photo_1.jpg")).expect("decode"));
            started.elapsed()
        })
        .collect();
    decodes.sort();
    eprintln!(
        "next_image: decoding photo_1.jpg alone takes {:.1?} (median of 5, min {:.1?})",
        decodes[2], decodes[0]
    );
    let mut group = c.benchmark_group("next_image_12mp");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for prefetch in [true, false] {
        h.app.session_mut().expect("session").set_prefetch(prefetch);
        let name = if prefetch { "prefetch" } else { "no_prefetch" };
        // Steps, and steps whose first frame after the key did not show the image yet.
        let (mut steps, mut late) = (0u64, 0u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    h.apply(Command::ShowRow(0));
                    until_shown(&mut h);
                    assert_eq!(current_row(&h), Some(0));
                    if prefetch {
                        // As after a moment on an image: the neighbours ahead are decoded
                        // (and uploaded) by the background threads.
                        wait_decoded(&mut h, 1);
                        wait_decoded(&mut h, 2);
                    } else {
                        // Without prefetch (and no recent images kept) showing row 0 evicted
                        // row 1: the step below decodes the 12 MP JPEG from the file.
                        assert!(
                            !h.session().is_decoded(next_id),
                            "without prefetch the next image must not be decoded yet"
                        );
                    }
                    // Timed from the key press to the frame that draws the next image.
                    let started = Instant::now();
                    h.frame(vec![Event::Key {
                        key: egui::Key::D,
                        physical_key: None,
                        pressed: true,
                        repeat: false,
                        modifiers: Modifiers::NONE,
                    }]);
                    if !h.session().image_ready() {
                        late += 1;
                        until_shown(&mut h);
                    }
                    total += started.elapsed();
                    steps += 1;
                    assert_eq!(current_row(&h), Some(1), "the key showed the next image");
                }
                total
            });
        });
        eprintln!("next_image_12mp/{name}: {late} of {steps} steps needed more than one frame");
    }
    group.finish();
}

criterion_group!(benches, bench_boxes, bench_next_image);
criterion_main!(benches);

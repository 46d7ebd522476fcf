//! UI tests: drive the real app with egui_kittest (mouse drags, key presses) and check what
//! reached the project file through a fresh connection.

mod clicks;
mod crops;
mod dialogs;
mod editing;
mod lead;
mod loop_cost;
mod measured_time;
mod navigation;
mod prelabel;
mod reading;
mod review;
mod similar;
mod snapshots;
mod stacks;
mod sync;
mod tiled;
mod triage_fix;

use std::path::{Path, PathBuf};
use std::time::Duration;

use eframe::egui::{self, Key, Modifiers, Pos2, Vec2, pos2};
use egui_kittest::Harness;
use loupe::model::{Annotation, AnnotationValue, BBox, BoxFlags, Class, ReviewState, Source};
use loupe::store::{Edit, ImageInput, NewRun, Project};
use loupe::ui::{App, AppOptions, Session};
use uuid::Uuid;

/// Window size of the tests.
pub const SIZE: Vec2 = Vec2::new(1280.0, 800.0);

/// A project in a temporary folder: four images in path order (`a.png`, `b.png`, `c.png`
/// 8-bit, `d16.png` 16-bit), classes cat/dog/bird, one box on `a.png`, three proposals of a
/// model run on `b.png`.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub project: PathBuf,
    /// (id, path) in path order.
    pub images: Vec<(Uuid, String)>,
    pub classes: Vec<Class>,
    pub run: Uuid,
    /// The box on `a.png`.
    pub a_box: Uuid,
    /// The proposals on `b.png`: cat 0.9, dog 0.4, cat 0.2.
    pub proposals: Vec<Uuid>,
}

impl Fixture {
    pub fn image(&self, path: &str) -> Uuid {
        self.images
            .iter()
            .find(|(_, p)| p == path)
            .map(|(id, _)| *id)
            .expect("fixture image")
    }

    pub fn class(&self, name: &str) -> Uuid {
        self.classes
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
            .expect("fixture class")
    }

    /// The boxes of an image as stored, read with a new connection.
    pub fn stored(&self, path: &str) -> Vec<Annotation> {
        let project = Project::open(&self.project).expect("open project");
        project
            .annotations_for_image(self.image(path))
            .expect("read boxes")
    }

    /// One box as stored (deleted ones too).
    pub fn stored_box(&self, id: Uuid) -> Annotation {
        Project::open(&self.project)
            .expect("open project")
            .annotation(id)
            .expect("read box")
    }
}

pub fn write_rgb(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let r = u8::try_from((x * 255) / w).unwrap_or(0);
        let g = u8::try_from((y * 255) / h).unwrap_or(0);
        image::Rgb([r, g, seed])
    });
    img.save(path).expect("write png");
}

fn write_gray16(path: &Path, w: u32, h: u32) {
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        // A horizontal ramp 1000..5000 with a small bright square (under 0.5% of the
        // pixels, so the automatic window leaves it out and it saturates).
        let v = if (30..33).contains(&x) && (20..23).contains(&y) {
            40_000
        } else {
            1000 + (x * 4000) / w
        };
        image::Luma([u16::try_from(v).unwrap_or(u16::MAX)])
    });
    img.save(path).expect("write 16-bit png");
}

/// Adds files of `root` to a project with the core API, in one bulk write.
pub fn add_images(project: &mut Project, root: &Path, names: &[&str]) {
    let mut bulk = project.bulk().expect("bulk");
    for name in names {
        let file = root.join(name);
        let (hash, bytes) = loupe::imaging::hash_file(&file).expect("hash");
        let info = loupe::imaging::probe(&file).expect("probe");
        bulk.upsert_image(&ImageInput {
            path: (*name).into(),
            hash: Some(hash),
            width: info.width,
            height: info.height,
            bytes,
            external_id: None,
        })
        .expect("add image");
    }
    bulk.commit().expect("commit");
}

/// Builds the fixture project with the core API.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_rgb(&root.join("a.png"), 320, 240, 40);
    write_rgb(&root.join("b.png"), 320, 240, 120);
    write_rgb(&root.join("c.png"), 320, 240, 200);
    write_gray16(&root.join("d16.png"), 64, 48);
    let path = root.join("test.loupe");
    let mut project = Project::create(&path).expect("create project");
    add_images(&mut project, root, &["a.png", "b.png", "c.png", "d16.png"]);
    let classes: Vec<Class> = ["cat", "dog", "bird"]
        .iter()
        .map(|n| project.ensure_class(n).expect("class"))
        .collect();
    let images: Vec<(Uuid, String)> = ["a.png", "b.png", "c.png", "d16.png"]
        .iter()
        .map(|p| {
            let rec = project.image_by_path(p).expect("query").expect("image");
            (rec.id, rec.path)
        })
        .collect();
    let run = project
        .create_run(&NewRun {
            name: "detector-v1".into(),
            kind: "onnx".into(),
            settings: "{}".into(),
            ..NewRun::default()
        })
        .expect("run");
    let value = |image: Uuid, class: Uuid, bbox: BBox, source: Source, state: ReviewState| {
        AnnotationValue {
            image,
            class,
            bbox,
            source,
            state,
            flags: BoxFlags::default(),
            deleted: false,
            attributes: Default::default(),
        }
    };
    let a_box = Uuid::now_v7();
    let mut edits = vec![Edit::Create {
        id: a_box,
        value: value(
            images[0].0,
            classes[0].id,
            BBox::new(40.0, 40.0, 80.0, 60.0),
            Source::Human,
            ReviewState::Submitted,
        ),
    }];
    let mut proposals = Vec::new();
    for (class, bbox, score) in [
        (classes[0].id, BBox::new(20.0, 20.0, 60.0, 40.0), 0.9),
        (classes[1].id, BBox::new(150.0, 100.0, 50.0, 50.0), 0.4),
        (classes[0].id, BBox::new(240.0, 150.0, 40.0, 40.0), 0.2),
    ] {
        let id = Uuid::now_v7();
        proposals.push(id);
        edits.push(Edit::Create {
            id,
            value: value(
                images[1].0,
                class,
                bbox,
                Source::Model { run, score },
                ReviewState::Proposed,
            ),
        });
    }
    project.apply(&edits).expect("apply");
    // The store's default user, chosen as the profile (else the app asks on first start).
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(&mut project, &me.name, me.role).expect("profile");
    Fixture {
        _dir: dir,
        project: path,
        images,
        classes,
        run,
        a_box,
        proposals,
    }
}

/// The real app on the fixture project, settled on the first image.
pub fn app(fx: &Fixture) -> Harness<'static, App> {
    let path = fx.project.clone();
    let mut h = Harness::builder()
        .with_size(SIZE)
        // Background threads (decoding, thumbnails, the writer) wake the UI when done.
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&path)));
    settle(&mut h);
    h
}

/// The open project of the app.
pub fn session<'a>(h: &'a Harness<'_, App>) -> &'a Session {
    h.state().session().expect("a project is open")
}

/// Runs the queued input, waits for the writer (and handles its replies), then runs frames
/// until the UI is idle.
pub fn settle(h: &mut Harness<'_, App>) {
    h.run();
    h.state_mut().flush_writes();
    h.run();
}

/// Waits for the current image to be decoded.
pub fn wait_for_image(h: &mut Harness<'_, App>) {
    let ready = h
        .state_mut()
        .session_mut()
        .expect("a project is open")
        .wait_for_image(Duration::from_secs(20));
    assert!(ready, "the image did not decode in time");
    h.run();
}

/// Where an image pixel is on screen right now.
pub fn screen(h: &Harness<'_, App>, x: f32, y: f32) -> Pos2 {
    session(h).canvas().viewport.screen_from_image(pos2(x, y))
}

/// A primary-button drag from one screen point to another.
pub fn drag(h: &mut Harness<'_, App>, from: Pos2, to: Pos2) {
    h.hover_at(from);
    h.drag_at(from);
    h.hover_at(from + (to - from) * 0.5);
    h.hover_at(to);
    h.drop_at(to);
    settle(h);
}

/// A primary click at a screen point.
pub fn click(h: &mut Harness<'_, App>, at: Pos2) {
    h.hover_at(at);
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    settle(h);
}

/// Presses a key, then waits for the writer.
/// Runs frames, waits for the writer and for the lead views' queries, until both are idle.
pub fn settle_all(h: &mut Harness<'_, App>) {
    for _ in 0..4 {
        settle(h);
        h.state_mut()
            .session_mut()
            .expect("session")
            .lead_mut()
            .wait_for_jobs(Duration::from_secs(60));
        h.run();
    }
}

pub fn press(h: &mut Harness<'_, App>, key: Key) {
    h.key_press(key);
    settle(h);
}

/// Presses a key with modifiers (`ctrl` means the command key), then waits for the writer.
pub fn press_with(h: &mut Harness<'_, App>, ctrl: bool, shift: bool, key: Key) {
    let modifiers = Modifiers {
        ctrl,
        command: ctrl,
        shift,
        ..Modifiers::default()
    };
    h.key_press_modifiers(modifiers, key);
    settle(h);
}

/// Presses a key with Alt (and Shift), the nudge keys, then waits for the writer.
pub fn press_alt(h: &mut Harness<'_, App>, shift: bool, key: Key) {
    let modifiers = Modifiers {
        alt: true,
        shift,
        ..Modifiers::default()
    };
    h.key_press_modifiers(modifiers, key);
    settle(h);
}

/// The path of the image on the canvas.
pub fn current_path(h: &Harness<'_, App>) -> String {
    session(h)
        .current()
        .expect("an image is shown")
        .path
        .clone()
}

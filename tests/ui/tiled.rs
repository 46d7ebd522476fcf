//! Images read as tiles: a small tiled pyramid TIFF (2,000 x 1,500, 256-pixel tiles, made in
//! the test) above a low tiling threshold opens, its tiles arrive, and boxes drawn at any zoom
//! are stored in full-resolution image pixels.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use loupe::imaging::tiles::{TileSettings, write_pyramid};
use loupe::store::Project;
use loupe::ui::{App, AppOptions, Command};

use super::{SIZE, add_images, drag, screen, session, settle};

fn wait_for_tiles(h: &mut Harness<'_, App>) {
    let started = Instant::now();
    loop {
        h.run();
        if session(h).view_complete() && session(h).resident_tiles() > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the tiles did not arrive in time: ready {}, complete {}, {} resident, showing {}",
            session(h).image_ready(),
            session(h).view_complete(),
            session(h).resident_tiles(),
            super::current_path(h)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_tiled_image_opens_and_boxes_are_stored_in_full_resolution_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    super::write_rgb(&root.join("a.png"), 320, 240, 40);
    let big = image::RgbImage::from_fn(2000, 1500, |x, y| {
        image::Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            ((x / 64 + y / 64) % 2 * 200) as u8,
        ])
    });
    write_pyramid(&big, &root.join("slide.tif"), 256).expect("write the pyramid");
    let path = root.join("t.loupe");
    let mut project = Project::create(&path).expect("create");
    add_images(&mut project, root, &["a.png", "slide.tif"]);
    project.ensure_class("cell").expect("class");
    let me = project.current_user().expect("user");
    loupe::review::choose_profile(&mut project, &me.name, me.role).expect("profile");
    drop(project);

    let app_path = path.clone();
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&app_path)));
    settle(&mut h);
    // The slide was prefetched as a plain image under the default threshold; let that finish
    // before the threshold changes (a change forgets what is decoded, not what is in flight).
    let slide = session(&h).rows()[1].id;
    let started = Instant::now();
    while !session(&h).is_decoded(slide) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "prefetch did not finish"
        );
        h.run();
        std::thread::sleep(Duration::from_millis(5));
    }
    // 1 MP: the 3 MP slide is read as tiles.
    h.state_mut()
        .session_mut()
        .expect("session")
        .set_tile_settings(TileSettings {
            threshold_pixels: 1_000_000,
            max_side: 16_384,
            cache_dir: root.join("cache"),
        });
    h.state_mut()
        .session_mut()
        .expect("session")
        .apply(Command::ShowRow(1));
    wait_for_tiles(&mut h);
    assert_eq!(super::current_path(&h), "slide.tif");
    // Fitted: a reduced level (1,000 x 750, 12 tiles) and the coarsest one. A pyramidal TIFF
    // needs no cache.
    let fitted = session(&h).resident_tiles();
    assert!((1..=16).contains(&fitted), "{fitted} tiles");
    assert!(!root.join("cache").exists());

    // Draw at the fitted zoom.
    let (from, to) = (screen(&h, 500.0, 400.0), screen(&h, 900.0, 700.0));
    drag(&mut h, from, to);
    let boxes = session(&h).boxes().to_vec();
    assert_eq!(boxes.len(), 1, "one box drawn");
    let b = boxes[0].value.bbox;
    assert!(
        (b.x - 500.0).abs() < 3.0 && (b.y - 400.0).abs() < 3.0,
        "{b:?} is in full-resolution pixels"
    );
    assert!(
        (b.w - 400.0).abs() < 5.0 && (b.h - 300.0).abs() < 5.0,
        "{b:?}"
    );

    // Full resolution: the finest level's tiles arrive and drawing still lands in image pixels.
    {
        let session = h.state_mut().session_mut().expect("session");
        let viewport = &mut session.canvas_mut().viewport;
        let at = viewport.screen_from_image(eframe::egui::pos2(1500.0, 1100.0));
        viewport.one_to_one(1.0, at);
    }
    wait_for_tiles(&mut h);
    assert!(session(&h).resident_tiles() > fitted);
    let (from, to) = (screen(&h, 1450.0, 1050.0), screen(&h, 1550.0, 1130.0));
    drag(&mut h, from, to);
    let boxes = session(&h).boxes().to_vec();
    assert_eq!(boxes.len(), 2);
    let b = boxes
        .iter()
        .map(|a| a.value.bbox)
        .find(|b| b.x > 1000.0)
        .expect("the second box");
    assert!(
        (b.x - 1450.0).abs() < 1.0 && (b.y - 1050.0).abs() < 1.0,
        "{b:?}"
    );
    assert!(
        (b.w - 100.0).abs() < 1.5 && (b.h - 80.0).abs() < 1.5,
        "{b:?}"
    );
}

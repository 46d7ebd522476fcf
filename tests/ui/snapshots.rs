//! A few small images rendered with wgpu on the software adapter: our image pipeline plus the
//! boxes. `UPDATE_SNAPSHOTS=1` refreshes `tests/snapshots/*.png`.

use eframe::egui::{Key, Vec2};
use egui_kittest::Harness;
use loupe::ui::{App, AppOptions};

use super::{Fixture, fixture, press, settle, wait_for_image};

/// Runs frames until every visible thumbnail is in, so snapshots do not depend on timing.
fn wait_for_thumbnails(h: &mut Harness<'_, App>) {
    for _ in 0..2000 {
        h.run();
        if h.state()
            .session()
            .is_some_and(loupe::ui::Session::thumbnails_idle)
        {
            h.run();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("thumbnails did not finish");
}

fn gpu_app(fx: &Fixture) -> Harness<'static, App> {
    let path = fx.project.clone();
    let mut h = Harness::builder()
        .with_size(Vec2::new(960.0, 540.0))
        .with_max_steps(64)
        .wgpu()
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&path)));
    settle(&mut h);
    wait_for_image(&mut h);
    h
}

#[test]
fn rgba_image_with_boxes_and_proposals() {
    let fx = fixture();
    let mut h = gpu_app(&fx);
    press(&mut h, Key::D);
    wait_for_image(&mut h);
    press(&mut h, Key::Tab);
    h.remove_cursor();
    wait_for_thumbnails(&mut h);
    h.snapshot("canvas_rgba_proposals");
}

#[test]
fn sixteen_bit_image_under_two_windows() {
    let fx = fixture();
    let mut h = gpu_app(&fx);
    for _ in 0..3 {
        press(&mut h, Key::D);
    }
    assert_eq!(super::current_path(&h), "d16.png");
    wait_for_image(&mut h);
    h.remove_cursor();
    wait_for_thumbnails(&mut h);
    // Automatic window (0.5–99.5%): the ramp is visible, the bright square saturates.
    h.snapshot("canvas_gray16_auto");
    // A narrow manual window on the dark end of the ramp.
    h.state_mut()
        .session_mut()
        .expect("session")
        .canvas_mut()
        .display
        .window = Some((900.0, 2000.0));
    h.run();
    h.snapshot("canvas_gray16_narrow");
}

#[test]
fn ct_in_the_lung_window_with_a_ruler() {
    let (_dir, path) = super::reading::dicom_project();
    let mut h = Harness::builder()
        .with_size(Vec2::new(960.0, 540.0))
        .with_max_steps(64)
        .wgpu()
        .build_eframe(move |cc| App::new(cc, AppOptions::project_only(&path)));
    settle(&mut h);
    wait_for_image(&mut h);
    // Window mode, lung (5), closed again; then a measurement.
    press(&mut h, Key::W);
    press(&mut h, Key::Num5);
    press(&mut h, Key::Escape);
    press(&mut h, Key::L);
    let (from, to) = (
        super::screen(&h, 30.0, 60.0),
        super::screen(&h, 110.0, 100.0),
    );
    super::drag(&mut h, from, to);
    h.remove_cursor();
    wait_for_thumbnails(&mut h);
    h.snapshot("canvas_ct_lung_ruler");
}

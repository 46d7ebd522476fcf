//! Every dialog of the app answers Enter (confirm) and Escape (cancel) with the focus in its
//! first field: the first-start profile, the class picker, the help overlay, the sync details
//! window and the settings window (whose key rebinding and conflict refusal are tested here too).

use eframe::egui::{self, Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use loupe::model::{ReviewState, Role};
use loupe::review;
use loupe::store::Project;
use loupe::ui::{Action, App, AppOptions, ConfigDir, KeyBinding, Keymap, ThemeChoice};

use super::{
    Fixture, SIZE, app, click, fixture, press, press_with, screen, session, settle, settle_all,
};

fn typed(h: &mut Harness<'_, App>, text: &str) {
    h.event(egui::Event::Text(text.to_owned()));
    h.run();
}

fn chosen(fx: &Fixture) -> Option<(String, Role)> {
    let p = Project::open(&fx.project).expect("open");
    review::chosen_profile(&p)
        .expect("read")
        .map(|u| (u.name, u.role))
}

#[test]
fn the_profile_dialog_takes_enter_and_escape() {
    let fx = fixture();
    rusqlite::Connection::open(&fx.project)
        .expect("open")
        .execute("DELETE FROM meta WHERE key='user'", [])
        .expect("forget profile");
    let mut h = app(&fx);
    assert!(session(&h).lead().modal_open(), "first start asks");

    // The name field has the focus: typing replaces the suggested name without a click.
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.run();
    typed(&mut h, "grace");
    // On first start there is nothing to go back to: Escape keeps the dialog and says why.
    press(&mut h, Key::Escape);
    assert!(
        session(&h).lead().modal_open(),
        "Escape cannot skip the first choice"
    );
    assert!(
        h.query_by_label_contains("Choose a name and a role first")
            .is_some()
    );
    assert_eq!(chosen(&fx), None);

    // Enter confirms.
    press(&mut h, Key::Enter);
    settle_all(&mut h);
    assert!(
        !session(&h).lead().modal_open(),
        "Enter confirmed the dialog"
    );
    let (name, role) = chosen(&fx).expect("a profile was chosen");
    assert_eq!(name, "grace");

    // Opened again from the top bar: Escape cancels the change.
    h.get_by_label(&format!("grace · {}", role.as_str()))
        .click();
    settle_all(&mut h);
    assert!(session(&h).lead().modal_open());
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.run();
    typed(&mut h, "nobody");
    press(&mut h, Key::Escape);
    settle_all(&mut h);
    assert!(!session(&h).lead().modal_open(), "Escape closed the dialog");
    assert_eq!(chosen(&fx), Some(("grace".to_owned(), role)));

    // And Enter confirms a change.
    h.get_by_label(&format!("grace · {}", role.as_str()))
        .click();
    settle_all(&mut h);
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.run();
    typed(&mut h, "hopper");
    press(&mut h, Key::Enter);
    settle_all(&mut h);
    assert!(!session(&h).lead().modal_open());
    assert_eq!(chosen(&fx), Some(("hopper".to_owned(), role)));
}

#[test]
fn the_class_picker_closes_on_escape_without_a_change() {
    let fx = fixture();
    let mut h = app(&fx);
    let at = screen(&h, 80.0, 70.0);
    click(&mut h, at);
    press(&mut h, Key::C);
    assert!(session(&h).picker_open());
    // The search field has the focus: typing goes there, not to the shortcuts.
    typed(&mut h, "bi");
    assert!(
        session(&h).picker_open(),
        "typing did not trigger shortcuts"
    );
    press(&mut h, Key::Escape);
    assert!(!session(&h).picker_open(), "Escape closed the picker");
    assert_eq!(fx.stored_box(fx.a_box).value.class, fx.class("cat"));
    // Enter picks the first match (the search field has the focus again).
    press(&mut h, Key::C);
    typed(&mut h, "do");
    press(&mut h, Key::Enter);
    assert!(!session(&h).picker_open());
    assert_eq!(fx.stored_box(fx.a_box).value.class, fx.class("dog"));
}

#[test]
fn the_help_overlay_closes_on_enter_and_escape_without_acting_behind() {
    let fx = fixture();
    let mut h = app(&fx);
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
    // Select the first proposal: Enter would accept it if the overlay let it through.
    press(&mut h, Key::Tab);
    let selected = session(&h).selected().expect("a box is selected");
    press(&mut h, Key::F1);
    assert!(h.state().help_open());
    press(&mut h, Key::Enter);
    assert!(!h.state().help_open(), "Enter closed the help");
    let stored = Project::open(&fx.project)
        .expect("open")
        .annotation(selected)
        .expect("box");
    assert_eq!(
        stored.value.state,
        ReviewState::Proposed,
        "nothing accepted"
    );
    press(&mut h, Key::F1);
    assert!(h.state().help_open());
    press(&mut h, Key::Escape);
    assert!(!h.state().help_open(), "Escape closed the help");
    assert_eq!(
        session(&h).selected(),
        Some(selected),
        "the selection stays"
    );
}

/// The app with settings kept in `dir`, on the fixture project.
fn app_with_config(fx: &Fixture, dir: &std::path::Path) -> Harness<'static, App> {
    let options = AppOptions {
        config: ConfigDir::at(dir.to_path_buf()),
        ..AppOptions::project_only(&fx.project)
    };
    let mut h = Harness::builder()
        .with_size(SIZE)
        .with_max_steps(64)
        .build_eframe(move |cc| App::new(cc, options));
    settle(&mut h);
    h
}

fn binding(text: &str) -> KeyBinding {
    KeyBinding::parse(text).expect("a key")
}

#[test]
fn settings_rebind_a_key_by_pressing_it_and_refuse_conflicts() {
    let fx = fixture();
    let config = tempfile::tempdir().expect("tempdir");
    let mut h = app_with_config(&fx, config.path());
    // Ctrl+, opens the window, with the focus in its first field.
    press_with(&mut h, true, false, Key::Comma);
    assert!(h.state().settings_page().is_open());
    typed(&mut h, "/tmp/loupe-data");

    // Rebind "next image" to J by pressing J.
    let next = Action::NextImage.description();
    h.get_by_label(&format!("Change keys: {next}")).click();
    h.run();
    assert_eq!(
        h.state().settings_page().capturing(),
        Some(Action::NextImage)
    );
    press(&mut h, Key::J);
    assert_eq!(h.state().settings_page().capturing(), None);
    assert_eq!(
        h.state().settings_page().keymap().keys(Action::NextImage),
        &[binding("J")]
    );
    assert_eq!(h.state().settings_page().message(), None);

    // Ctrl+Z is Undo's: giving it to Redo is refused, naming both.
    let redo = Action::Redo.description();
    h.get_by_label(&format!("Change keys: {redo}")).click();
    h.run();
    press_with(&mut h, true, false, Key::Z);
    let message = h
        .state()
        .settings_page()
        .message()
        .expect("a refusal")
        .to_owned();
    assert!(
        message.contains("“Undo”") && message.contains("“Redo”"),
        "{message}"
    );
    assert!(h.query_by_label_contains("is already the key of").is_some());
    assert_eq!(
        h.state().settings_page().keymap().keys(Action::Redo),
        Keymap::default().keys(Action::Redo),
        "Redo keeps its keys"
    );
    // Escape while waiting for a key keeps the old one and leaves the window open.
    h.get_by_label(&format!("Change keys: {redo}")).click();
    h.run();
    press(&mut h, Key::Escape);
    assert!(h.state().settings_page().is_open());
    assert_eq!(h.state().settings_page().capturing(), None);

    h.get_by_label("Light").click();
    h.run();
    // Enter saves: the keys, the theme and the data folder apply and are written.
    press(&mut h, Key::Enter);
    assert!(!h.state().settings_page().is_open());
    assert_eq!(h.state().keymap().keys(Action::NextImage), &[binding("J")]);
    assert_eq!(h.state().settings().theme, ThemeChoice::Light);
    assert_eq!(
        h.state().settings().data_folder.as_deref(),
        Some(std::path::Path::new("/tmp/loupe-data"))
    );
    let stored = ConfigDir::at(config.path().to_path_buf());
    assert_eq!(
        stored.load_keymap().0.keys(Action::NextImage),
        &[binding("J")],
        "written to shortcuts.toml"
    );
    assert_eq!(stored.load_settings().theme, ThemeChoice::Light);
    // The new key works at once; D no longer moves.
    assert_eq!(super::current_path(&h), "a.png");
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "a.png");
    press(&mut h, Key::J);
    assert_eq!(super::current_path(&h), "b.png");
}

#[test]
fn settings_escape_drops_every_change() {
    let fx = fixture();
    let config = tempfile::tempdir().expect("tempdir");
    let mut h = app_with_config(&fx, config.path());
    h.get_by_label("Project").click();
    h.run();
    // The menu item carries its shortcut (Ctrl+,) after the name.
    h.get_by_label_contains("Settings…").click();
    h.run();
    assert!(h.state().settings_page().is_open());
    let next = Action::NextImage.description();
    h.get_by_label(&format!("Change keys: {next}")).click();
    h.run();
    press(&mut h, Key::J);
    h.get_by_label("Light").click();
    h.run();
    press(&mut h, Key::Escape);
    assert!(
        !h.state().settings_page().is_open(),
        "Escape closed the window"
    );
    assert_eq!(
        h.state().keymap().keys(Action::NextImage),
        Keymap::default().keys(Action::NextImage)
    );
    assert_eq!(h.state().settings().theme, ThemeChoice::Dark);
    // Keys reach the project again once the window is closed.
    press(&mut h, Key::D);
    assert_eq!(super::current_path(&h), "b.png");
}

//! The eframe app: settings and shortcuts, the start screen, the open project (a `Session`),
//! the help overlay, the settings window, and the project dialogs.

use std::path::{Path, PathBuf};

use eframe::egui::{self, Key, Modifiers, Ui};

use super::commands::Command;
use super::gpu::GpuContext;
use super::help::Help;
use super::session::{AppRequest, Session};
use super::settings::{ConfigDir, Settings};
use super::settings_page::{SettingsOutcome, SettingsPage};
use super::shortcuts::{Action, KeyBinding, Keymap};
use super::start::StartScreen;
use super::theme;
use crate::store::Project;

/// How the app starts.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Open this project.
    pub project: Option<PathBuf>,
    /// Without `project`, open the most recent one.
    pub open_last: bool,
    /// Where settings and shortcuts live; `ConfigDir::none()` keeps nothing (tests).
    pub config: ConfigDir,
    /// How projects sync with their shared store.
    pub sync: super::sync_status::SyncConfig,
}

impl AppOptions {
    /// A project, with no settings read or written: what tests use.
    pub fn project_only(project: &Path) -> Self {
        Self {
            project: Some(project.to_path_buf()),
            open_last: false,
            config: ConfigDir::none(),
            sync: super::sync_status::SyncConfig::default(),
        }
    }
}

/// The Loupe desktop app.
pub struct App {
    config: ConfigDir,
    settings: Settings,
    keymap: Keymap,
    gpu: Option<GpuContext>,
    session: Option<Session>,
    start: StartScreen,
    help: Help,
    settings_page: SettingsPage,
    ctx: egui::Context,
    sync: super::sync_status::SyncConfig,
}

impl App {
    /// Sets up the theme and GPU pipelines and opens the project asked for (or the last one).
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let gpu = cc.wgpu_render_state.as_ref().map(GpuContext::new);
        let settings = options.config.load_settings();
        theme::apply_choice(&cc.egui_ctx, settings.theme);
        crate::inference::runtime::set_data_dir(settings.data_folder.clone());
        let (keymap, keymap_warnings) = options.config.load_keymap();
        let project = options.project.clone().or_else(|| {
            options
                .open_last
                .then(|| settings.last_project().map(Path::to_path_buf))
                .flatten()
        });
        let mut app = Self {
            config: options.config,
            settings,
            keymap,
            gpu,
            session: None,
            start: StartScreen::default(),
            help: Help::default(),
            settings_page: SettingsPage::default(),
            ctx: cc.egui_ctx.clone(),
            sync: options.sync.clone(),
        };
        if let Some(p) = project {
            app.open_project(&p);
        }
        // A conflict in the shortcuts file is said where the user looks, not only in the log.
        if let Some(first) = keymap_warnings.first() {
            let more = match keymap_warnings.len() {
                1 => String::new(),
                n => format!(" (and {} more, see the log)", n - 1),
            };
            let text = format!("Shortcuts: {first}{more}");
            match app.session.as_mut() {
                Some(s) => s.say(text),
                None => app.start.error = Some(text),
            }
        }
        app
    }

    /// Opens a project in place of the current one; errors go to the start screen.
    pub fn open_project(&mut self, path: &Path) {
        // Finish the old project's writes before switching.
        self.close_session();
        let start = self.settings.last_image(path).map(str::to_owned);
        match Session::open_with(path, &self.ctx, self.gpu.clone(), start, self.sync.clone()) {
            Ok(mut s) => {
                s.model_mut()
                    .set_recent(self.settings.recent_models.clone());
                let provider =
                    self.settings
                        .execution_provider
                        .parse()
                        .unwrap_or_else(|e: String| {
                            tracing::warn!("settings: {e}; using auto");
                            crate::inference::ProviderChoice::Auto
                        });
                s.model_mut().set_provider(provider);
                self.settings.remember_project(path);
                self.save_settings();
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::Title(format!(
                        "{} — Loupe",
                        path.display()
                    )));
                self.session = Some(s);
                self.start.error = None;
            }
            Err(e) => {
                tracing::warn!("cannot open {}: {e:#}", path.display());
                self.start.error = Some(format!("Cannot open {}: {e:#}", path.display()));
            }
        }
    }

    /// Finishes the open project's writes and remembers where it was left.
    fn close_session(&mut self) {
        if let Some(mut old) = self.session.take() {
            old.end_visit();
            old.flush_writes();
            if let Some(c) = old.current() {
                self.settings.remember_image(old.path(), &c.path);
                self.save_settings();
            }
        }
    }

    fn save_settings(&self) {
        if let Err(e) = self.config.save_settings(&self.settings) {
            tracing::warn!("cannot save settings: {e:#}");
        }
    }

    /// The open project, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The open project, mutable (tests drive it and wait on it).
    pub fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// Blocks until every edit made so far is in the project file. For tests and benchmarks.
    pub fn flush_writes(&mut self) {
        if let Some(s) = &mut self.session {
            s.flush_writes();
        }
    }

    /// True while the help overlay is open.
    pub fn help_open(&self) -> bool {
        self.help.open
    }

    /// The settings window (open or not), for tests.
    pub fn settings_page(&self) -> &SettingsPage {
        &self.settings_page
    }

    /// The keys in use.
    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens the settings window on the current settings.
    pub fn open_settings(&mut self) {
        self.settings_page.open(&self.keymap, &self.settings);
    }

    /// Keys the app answers before the project sees them: the settings shortcut, and Enter or
    /// Escape closing the help overlay (Enter would otherwise accept a proposal behind it).
    fn app_keys(&mut self, ctx: &egui::Context) {
        if self.settings_page.is_open() {
            return;
        }
        let settings_keys: Vec<KeyBinding> = self.keymap.keys(Action::Settings).to_vec();
        let open_settings = ctx.input_mut(|i| {
            settings_keys
                .iter()
                .any(|k| i.consume_key(k.modifiers(), k.key))
        });
        if open_settings {
            self.open_settings();
            return;
        }
        if self.help.open
            && ctx.input_mut(|i| {
                i.consume_key(Modifiers::NONE, Key::Escape)
                    || i.consume_key(Modifiers::NONE, Key::Enter)
            })
        {
            self.help.open = false;
        }
    }

    /// Applies what the settings window decided.
    fn settings_closed(&mut self, outcome: SettingsOutcome) {
        let SettingsOutcome::Saved(saved) = outcome else {
            return;
        };
        if let Err(e) = self.config.save_keymap(&saved.keymap) {
            tracing::warn!("cannot save the keys: {e:#}");
        }
        self.keymap = saved.keymap;
        self.settings.theme = saved.theme;
        theme::apply_choice(&self.ctx, saved.theme);
        crate::inference::runtime::set_data_dir(saved.data_folder.clone());
        self.settings.data_folder = saved.data_folder;
        self.save_settings();
    }

    /// One frame of the whole app, logic then drawing: benchmarks and tests that drive a plain
    /// egui context call it (eframe calls [`App::logic_pass`] and [`App::ui_pass`] itself).
    pub fn frame_ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        self.logic_pass(&ctx);
        self.ui_pass(ui);
    }

    /// What `eframe::App::logic` does before each frame (and while the window is hidden): take
    /// what the background threads sent (their results and their deaths) and apply it. Draws
    /// nothing.
    pub fn logic_pass(&mut self, ctx: &egui::Context) {
        let requests = match &mut self.session {
            Some(session) => session.logic(ctx),
            None => {
                // No project: a thread that died is said on the start screen.
                if let Some(death) = super::workers::take_deaths(ctx).pop() {
                    self.start.error = Some(death.to_string());
                }
                Vec::new()
            }
        };
        for r in requests {
            self.handle(r);
        }
    }

    /// What `eframe::App::ui` does: keys, drawing, and the commands the panels push.
    pub fn ui_pass(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        self.app_keys(&ctx);
        // Before the project, so that the window takes its keys first.
        if let Some(outcome) = self.settings_page.ui(&ctx, self.config.dir()) {
            self.settings_closed(outcome);
        }
        let requests = match &mut self.session {
            Some(session) => session.ui(ui, &self.keymap, self.help.open),
            None => {
                let mut commands = Vec::new();
                if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::O)) {
                    commands.push(Command::OpenProjectDialog);
                }
                self.start.ui(ui, &self.settings, &mut commands);
                commands
                    .into_iter()
                    .filter_map(|c| match c {
                        Command::OpenProjectDialog => Some(AppRequest::OpenProjectDialog),
                        Command::NewProjectDialog => Some(AppRequest::NewProjectDialog),
                        Command::OpenProject(p) => Some(AppRequest::OpenProject(p)),
                        _ => None,
                    })
                    .collect()
            }
        };
        let keymap_path = self.config.keymap_path();
        self.help.ui(&ctx, &self.keymap, keymap_path.as_ref());
        for r in requests {
            self.handle(r);
        }
    }

    fn handle(&mut self, request: AppRequest) {
        match request {
            AppRequest::ToggleHelp => self.help.open = !self.help.open,
            AppRequest::OpenSettings => self.open_settings(),
            AppRequest::RememberModel(m) => {
                self.settings.remember_model(m);
                self.save_settings();
            }
            AppRequest::RememberProvider(p) => {
                self.settings.execution_provider = p.name().to_owned();
                self.save_settings();
            }
            AppRequest::OpenProject(p) => self.open_project(&p),
            AppRequest::OpenProjectDialog => {
                if let Some(p) = rfd::FileDialog::new()
                    .set_title("Open a Loupe project")
                    .add_filter("Loupe project", &["loupe"])
                    .pick_file()
                {
                    self.open_project(&p);
                }
            }
            AppRequest::NewProjectDialog => {
                if let Some(mut p) = rfd::FileDialog::new()
                    .set_title("New Loupe project (images are added relative to its folder)")
                    .add_filter("Loupe project", &["loupe"])
                    .set_file_name("project.loupe")
                    .save_file()
                {
                    if p.extension().is_none() {
                        p.set_extension("loupe");
                    }
                    match Project::create(&p) {
                        Ok(project) => {
                            drop(project);
                            self.open_project(&p);
                        }
                        Err(e) => {
                            self.start.error = Some(format!("Cannot create the project: {e}"))
                        }
                    }
                }
            }
            AppRequest::CloseProject => {
                self.close_session();
                self.ctx
                    .send_viewport_cmd(egui::ViewportCommand::Title("Loupe".into()));
            }
        }
    }
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic_pass(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.ui_pass(ui);
    }

    fn on_exit(&mut self) {
        // Every edit is written before the window goes (dropping the session then joins the
        // writer thread).
        self.close_session();
        self.save_settings();
    }

    fn clear_color(&self, _visuals: &egui::Visuals) -> [f32; 4] {
        theme::CANVAS_BG.to_normalized_gamma_f32()
    }
}

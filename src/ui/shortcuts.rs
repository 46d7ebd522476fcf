//! Keyboard shortcuts: every action the app offers, its default keys, the user's overrides
//! (a TOML file in the config folder) and matching key presses to actions.

use std::collections::BTreeMap;

use eframe::egui::{self, Key, Modifiers};

/// Everything a key can do. The names (`name`) are what the shortcuts file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    NextImage,
    PreviousImage,
    /// The next image of the list that still has proposals to review.
    NextWithProposals,
    /// The next image nobody has finished (proposals waiting, or no boxes and not done).
    NextUnreviewed,
    /// The next flagged image.
    NextFlagged,
    /// Stacks (DICOM series, multi-frame files): step frames, go to the ends, play.
    NextFrame,
    PreviousFrame,
    FirstFrame,
    LastFrame,
    Cine,
    /// Copy the selected box to the next frame of the stack.
    CopyBoxToNextFrame,
    /// Propose boxes between the keyframes of the selected box's track.
    Interpolate,
    /// Four-click boxes: click the leftmost, topmost, rightmost and bottommost points of the
    /// object (any order); the box is their bounding box.
    FourClickBoxes,
    /// A drawn box snaps to the proposal of the current class it overlaps well.
    SnapToProposals,
    AcceptAndNext,
    AcceptSelected,
    AcceptAllVisible,
    DeleteSelected,
    /// Reviewers: approve the selected label, or every label of the image and go on.
    ApproveLabels,
    /// Reviewers: return the selected label, or every label of the image, with a comment.
    ReturnLabels,
    Undo,
    Redo,
    SelectNextBox,
    SelectPreviousBox,
    Deselect,
    NudgeLeft,
    NudgeRight,
    NudgeUp,
    NudgeDown,
    NudgeLeftFar,
    NudgeRightFar,
    NudgeUpFar,
    NudgeDownFar,
    /// Class by position in the class list, 1-based.
    Class(u8),
    ClassPicker,
    CopyPreviousBoxes,
    /// The images (or boxes) most like this one, by their embeddings, as a queue.
    MoreLikeThis,
    /// Triage: the fix the selected issue suggests (add the predicted box, snap the label to
    /// it, take its class, delete the label), then the next issue.
    FixIssue,
    Fit,
    OneToOne,
    ZoomIn,
    ZoomOut,
    ResetDisplay,
    NextWindowPreset,
    /// Window mode: number keys pick a window, Enter types one.
    WindowLevel,
    /// The ruler: drag to measure (mm where the pixel spacing is known).
    Ruler,
    ToggleBoxes,
    /// Hide or show the proposals while reading the image.
    ToggleProposals,
    /// Thin outlines without fill; labels on hover.
    ToggleOutlines,
    ToggleFlag,
    FocusSearch,
    Help,
    /// Open the settings window (keys, theme, data folder).
    Settings,
    OpenProject,
    AddImages,
    /// Push then pull with the shared store now.
    SyncNow,
    // The central area's modes.
    ShowLabel,
    ShowTriage,
    ShowEvaluate,
    ShowDashboard,
    ShowCrops,
    // Pre-labelling with a model.
    RunModelOnImage,
    RunModelOnQueue,
    CancelModelRun,
}

impl Action {
    /// Every action, in the order the help overlay lists them.
    pub fn all() -> Vec<Action> {
        let mut all = vec![
            Action::NextImage,
            Action::PreviousImage,
            Action::NextWithProposals,
            Action::NextUnreviewed,
            Action::NextFlagged,
            Action::AcceptAndNext,
            Action::AcceptSelected,
            Action::AcceptAllVisible,
            Action::DeleteSelected,
            Action::ApproveLabels,
            Action::ReturnLabels,
            Action::Undo,
            Action::Redo,
            Action::SelectNextBox,
            Action::SelectPreviousBox,
            Action::Deselect,
            Action::NudgeLeft,
            Action::NudgeRight,
            Action::NudgeUp,
            Action::NudgeDown,
            Action::NudgeLeftFar,
            Action::NudgeRightFar,
            Action::NudgeUpFar,
            Action::NudgeDownFar,
        ];
        all.extend((1..=9).map(Action::Class));
        all.extend([
            Action::ClassPicker,
            Action::CopyPreviousBoxes,
            Action::MoreLikeThis,
            Action::FixIssue,
            Action::NextFrame,
            Action::PreviousFrame,
            Action::FirstFrame,
            Action::LastFrame,
            Action::Cine,
            Action::CopyBoxToNextFrame,
            Action::Interpolate,
            Action::FourClickBoxes,
            Action::SnapToProposals,
            Action::Fit,
            Action::OneToOne,
            Action::ZoomIn,
            Action::ZoomOut,
            Action::ResetDisplay,
            Action::NextWindowPreset,
            Action::WindowLevel,
            Action::Ruler,
            Action::ToggleBoxes,
            Action::ToggleProposals,
            Action::ToggleOutlines,
            Action::ToggleFlag,
            Action::FocusSearch,
            Action::Help,
            Action::Settings,
            Action::OpenProject,
            Action::AddImages,
            Action::SyncNow,
            Action::ShowLabel,
            Action::ShowTriage,
            Action::ShowEvaluate,
            Action::ShowDashboard,
            Action::ShowCrops,
            Action::RunModelOnImage,
            Action::RunModelOnQueue,
            Action::CancelModelRun,
        ]);
        all
    }

    /// The action's name in the shortcuts file.
    pub fn name(self) -> String {
        let s = match self {
            Action::NextImage => "next_image",
            Action::PreviousImage => "previous_image",
            Action::NextWithProposals => "next_with_proposals",
            Action::NextUnreviewed => "next_unreviewed",
            Action::NextFlagged => "next_flagged",
            Action::NextFrame => "next_frame",
            Action::PreviousFrame => "previous_frame",
            Action::FirstFrame => "first_frame",
            Action::LastFrame => "last_frame",
            Action::Cine => "cine",
            Action::CopyBoxToNextFrame => "copy_box_to_next_frame",
            Action::Interpolate => "interpolate",
            Action::FourClickBoxes => "four_click_boxes",
            Action::SnapToProposals => "snap_to_proposals",
            Action::AcceptAndNext => "accept_and_next",
            Action::AcceptSelected => "accept_selected",
            Action::AcceptAllVisible => "accept_all_visible",
            Action::DeleteSelected => "delete_selected",
            Action::ApproveLabels => "approve_labels",
            Action::ReturnLabels => "return_labels",
            Action::Undo => "undo",
            Action::Redo => "redo",
            Action::SelectNextBox => "select_next_box",
            Action::SelectPreviousBox => "select_previous_box",
            Action::Deselect => "deselect",
            Action::NudgeLeft => "nudge_left",
            Action::NudgeRight => "nudge_right",
            Action::NudgeUp => "nudge_up",
            Action::NudgeDown => "nudge_down",
            Action::NudgeLeftFar => "nudge_left_10",
            Action::NudgeRightFar => "nudge_right_10",
            Action::NudgeUpFar => "nudge_up_10",
            Action::NudgeDownFar => "nudge_down_10",
            Action::Class(n) => return format!("class_{n}"),
            Action::ClassPicker => "class_picker",
            Action::CopyPreviousBoxes => "copy_previous_boxes",
            Action::MoreLikeThis => "more_like_this",
            Action::FixIssue => "fix_issue",
            Action::Fit => "fit",
            Action::OneToOne => "one_to_one",
            Action::ZoomIn => "zoom_in",
            Action::ZoomOut => "zoom_out",
            Action::ResetDisplay => "reset_display",
            Action::NextWindowPreset => "next_window_preset",
            Action::WindowLevel => "window_level",
            Action::Ruler => "ruler",
            Action::ToggleBoxes => "toggle_boxes",
            Action::ToggleProposals => "toggle_proposals",
            Action::ToggleOutlines => "toggle_outlines",
            Action::ToggleFlag => "toggle_flag",
            Action::FocusSearch => "focus_search",
            Action::Help => "help",
            Action::Settings => "settings",
            Action::OpenProject => "open_project",
            Action::AddImages => "add_images",
            Action::SyncNow => "sync_now",
            Action::ShowLabel => "show_label",
            Action::ShowTriage => "show_triage",
            Action::ShowEvaluate => "show_evaluate",
            Action::ShowDashboard => "show_dashboard",
            Action::ShowCrops => "show_crops",
            Action::RunModelOnImage => "run_model_on_image",
            Action::RunModelOnQueue => "run_model_on_queue",
            Action::CancelModelRun => "cancel_model_run",
        };
        s.to_owned()
    }

    /// What the action does, for tooltips and the help overlay.
    pub fn description(self) -> String {
        let s = match self {
            Action::NextImage => "Next image (in the current filter)",
            Action::PreviousImage => "Previous image",
            Action::NextWithProposals => "Next image that still has proposals to review",
            Action::NextUnreviewed => {
                "Next unreviewed image (proposals waiting, or no boxes and not marked done)"
            }
            Action::NextFlagged => "Next flagged image",
            Action::NextFrame => "Next frame of the stack (series or multi-frame file)",
            Action::PreviousFrame => "Previous frame of the stack",
            Action::FirstFrame => "First frame of the stack",
            Action::LastFrame => "Last frame of the stack",
            Action::Cine => "Play or pause the stack's frames (cine)",
            Action::CopyBoxToNextFrame => {
                "Copy the selected box to the next frame (same track) and go there"
            }
            Action::Interpolate => {
                "Propose the selected box's track on the frames between its keyframes"
            }
            Action::FourClickBoxes => {
                "Four-click boxes on or off: click the leftmost, topmost, rightmost and bottommost points of the object (any order); Escape drops the clicks"
            }
            Action::SnapToProposals => {
                "Snap on or off: a drawn box that overlaps a proposal of its class well (IoU 0.5 or more) accepts that proposal instead"
            }
            Action::AcceptAndNext => {
                "Accept the visible proposals, reject those below threshold, mark the image done, go to the next"
            }
            Action::AcceptSelected => "Accept the selected proposal",
            Action::AcceptAllVisible => "Accept every visible proposal on this image",
            Action::DeleteSelected => "Delete the selected box (rejects a proposal)",
            Action::ApproveLabels => {
                "Review: approve the selected label, or all labels of the image and go to the next"
            }
            Action::ReturnLabels => {
                "Review: return the selected label, or all labels of the image, with a comment"
            }
            Action::Undo => "Undo",
            Action::Redo => "Redo",
            Action::SelectNextBox => "Select the next box",
            Action::SelectPreviousBox => "Select the previous box",
            Action::Deselect => "Deselect / cancel",
            Action::NudgeLeft => "Move the selected box 1 px left",
            Action::NudgeRight => "Move the selected box 1 px right",
            Action::NudgeUp => "Move the selected box 1 px up",
            Action::NudgeDown => "Move the selected box 1 px down",
            Action::NudgeLeftFar => "Move the selected box 10 px left",
            Action::NudgeRightFar => "Move the selected box 10 px right",
            Action::NudgeUpFar => "Move the selected box 10 px up",
            Action::NudgeDownFar => "Move the selected box 10 px down",
            Action::Class(n) => {
                return format!("Class {n} (for the selected box, or for new boxes)");
            }
            Action::ClassPicker => "Pick or create a class by typing",
            Action::CopyPreviousBoxes => "Copy all boxes from the previous image",
            Action::MoreLikeThis => {
                "More like this: the 20 images most like this one (or, with a box selected, the images of the 20 boxes most like it) as a queue (needs `loupe embed`)"
            }
            Action::FixIssue => {
                "Triage: fix the selected issue as its reason suggests (add the predicted box, snap the label to it, take the predicted class, or delete the label), then go to the next issue"
            }
            Action::Fit => "Fit the image to the window",
            Action::OneToOne => "Zoom to 1:1 (one image pixel per screen pixel)",
            Action::ZoomIn => "Zoom in",
            Action::ZoomOut => "Zoom out",
            Action::ResetDisplay => "Reset brightness/contrast or window/level",
            Action::NextWindowPreset => "Next window/level preset (16-bit images)",
            Action::WindowLevel => {
                "Window mode (16-bit images): number keys pick a window (the file's own first, then clinical presets), Enter types level and width"
            }
            Action::Ruler => {
                "Ruler: drag to measure a distance (mm where the pixel spacing is known)"
            }
            Action::ToggleBoxes => "Show or hide boxes",
            Action::ToggleProposals => "Hide or show the proposals while reading the image",
            Action::ToggleOutlines => {
                "Outlines only: thin outlines without fill, labels on hover (small or overlapping boxes)"
            }
            Action::ToggleFlag => "Flag or unflag the image",
            Action::FocusSearch => "Search images by path",
            Action::Help => "Show this help",
            Action::Settings => "Settings: keys, theme, data folder",
            Action::OpenProject => "Open a project",
            Action::AddImages => "Add images to the project",
            Action::SyncNow => "Sync with the shared store now (push, then pull)",
            Action::ShowLabel => "Show the canvas (label mode)",
            Action::ShowTriage => "Show the triage view: images ranked by where the model fails",
            Action::ShowEvaluate => {
                "Show the evaluation view: a run's metrics, or two runs compared"
            }
            Action::ShowDashboard => "Show the lead dashboard: annotators, batches and audits",
            Action::ShowCrops => {
                "Show the crop grid: every box of a class, least like the others first"
            }
            Action::RunModelOnImage => "Run the model on this image (proposals appear as stored)",
            Action::RunModelOnQueue => "Run the model on every image of the filtered list",
            Action::CancelModelRun => "Cancel the model run (finished images keep their proposals)",
        };
        s.to_owned()
    }

    /// True for the actions that change labels (boxes, their classes or states, the image's
    /// flag). Every other key only moves, shows or opens something; a test presses every
    /// default key and checks that only these store anything.
    pub fn edits(self) -> bool {
        matches!(
            self,
            Action::AcceptAndNext
                | Action::AcceptSelected
                | Action::AcceptAllVisible
                | Action::DeleteSelected
                | Action::ApproveLabels
                | Action::ReturnLabels
                | Action::Undo
                | Action::Redo
                | Action::NudgeLeft
                | Action::NudgeRight
                | Action::NudgeUp
                | Action::NudgeDown
                | Action::NudgeLeftFar
                | Action::NudgeRightFar
                | Action::NudgeUpFar
                | Action::NudgeDownFar
                | Action::Class(_)
                | Action::CopyPreviousBoxes
                | Action::FixIssue
                | Action::CopyBoxToNextFrame
                | Action::Interpolate
                | Action::ToggleFlag
                | Action::RunModelOnImage
                | Action::RunModelOnQueue
        )
    }

    fn parse(name: &str) -> Option<Action> {
        Action::all().into_iter().find(|a| a.name() == name)
    }

    /// The keys an action has unless the user says otherwise.
    pub fn default_keys(self) -> &'static [&'static str] {
        match self {
            Action::NextImage => &["D", "Right"],
            Action::PreviousImage => &["A", "Left"],
            Action::NextWithProposals => &["N"],
            Action::NextUnreviewed => &["U"],
            Action::NextFlagged => &["G"],
            Action::NextFrame => &["PageDown"],
            Action::PreviousFrame => &["PageUp"],
            Action::FirstFrame => &["Home"],
            Action::LastFrame => &["End"],
            Action::Cine => &["Shift+P"],
            Action::CopyBoxToNextFrame => &["Shift+PageDown"],
            Action::Interpolate => &["I"],
            Action::FourClickBoxes => &["E"],
            Action::SnapToProposals => &["S"],
            Action::AcceptAndNext => &["Space"],
            Action::AcceptSelected => &["Enter"],
            Action::AcceptAllVisible => &["Shift+A"],
            Action::DeleteSelected => &["Delete", "Backspace"],
            Action::ApproveLabels => &["V"],
            Action::ReturnLabels => &["X"],
            Action::Undo => &["Ctrl+Z"],
            Action::Redo => &["Ctrl+Shift+Z", "Ctrl+Y"],
            Action::SelectNextBox => &["Tab"],
            Action::SelectPreviousBox => &["Shift+Tab"],
            Action::Deselect => &["Escape"],
            // Nudging edits, so it takes a modifier: the plain arrows only navigate.
            Action::NudgeLeft => &["Alt+Left"],
            Action::NudgeRight => &["Alt+Right"],
            Action::NudgeUp => &["Alt+Up"],
            Action::NudgeDown => &["Alt+Down"],
            Action::NudgeLeftFar => &["Alt+Shift+Left"],
            Action::NudgeRightFar => &["Alt+Shift+Right"],
            Action::NudgeUpFar => &["Alt+Shift+Up"],
            Action::NudgeDownFar => &["Alt+Shift+Down"],
            Action::Class(n) => match n {
                1 => &["1"],
                2 => &["2"],
                3 => &["3"],
                4 => &["4"],
                5 => &["5"],
                6 => &["6"],
                7 => &["7"],
                8 => &["8"],
                _ => &["9"],
            },
            Action::ClassPicker => &["C"],
            Action::CopyPreviousBoxes => &["P"],
            Action::MoreLikeThis => &["Shift+S"],
            Action::FixIssue => &["T"],
            Action::Fit => &["F"],
            Action::OneToOne => &["0"],
            Action::ZoomIn => &["Plus", "Equals"],
            Action::ZoomOut => &["Minus"],
            Action::ResetDisplay => &["R"],
            Action::NextWindowPreset => &["Shift+W"],
            Action::WindowLevel => &["W"],
            Action::Ruler => &["L"],
            Action::ToggleBoxes => &["H"],
            Action::ToggleProposals => &["Shift+H"],
            Action::ToggleOutlines => &["O"],
            Action::ToggleFlag => &["Shift+F"],
            Action::FocusSearch => &["Ctrl+F", "Slash"],
            Action::Help => &["Questionmark", "F1"],
            Action::Settings => &["Ctrl+Comma"],
            Action::OpenProject => &["Ctrl+O"],
            Action::AddImages => &["Ctrl+I"],
            Action::SyncNow => &["Ctrl+S"],
            Action::ShowLabel => &["Ctrl+1"],
            Action::ShowTriage => &["Ctrl+2"],
            Action::ShowEvaluate => &["Ctrl+3"],
            Action::ShowDashboard => &["Ctrl+4"],
            Action::ShowCrops => &["Ctrl+5"],
            Action::RunModelOnImage => &["M"],
            Action::RunModelOnQueue => &["Shift+M"],
            Action::CancelModelRun => &["Shift+Escape"],
        }
    }
}

/// One key with modifiers. `ctrl` means Cmd on macOS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyBinding {
    pub ctrl: bool,
    pub shift: bool,
    pub alt: bool,
    pub key: Key,
}

impl KeyBinding {
    /// Parses `Ctrl+Shift+Z`, `Space`, `?`, `F1`, `Left`.
    pub fn parse(text: &str) -> Option<KeyBinding> {
        let mut binding = KeyBinding {
            ctrl: false,
            shift: false,
            alt: false,
            key: Key::Escape,
        };
        let parts: Vec<&str> = text.split('+').map(str::trim).collect();
        // "Ctrl++" or "+" name the plus key.
        let (mods, key) = match parts.as_slice() {
            [.., "", ""] => (&parts[..parts.len() - 2], "+"),
            [mods @ .., key] => (mods, *key),
            [] => return None,
        };
        for m in mods {
            match m.to_ascii_lowercase().as_str() {
                "ctrl" | "cmd" | "command" => binding.ctrl = true,
                "shift" => binding.shift = true,
                "alt" | "option" => binding.alt = true,
                _ => return None,
            }
        }
        binding.key = Key::from_name(key)?;
        Some(binding)
    }

    /// Keys typed with Shift on common layouts match with or without it.
    fn shift_is_part_of_key(self) -> bool {
        matches!(
            self.key,
            Key::Questionmark
                | Key::Plus
                | Key::Exclamationmark
                | Key::Colon
                | Key::Pipe
                | Key::OpenCurlyBracket
                | Key::CloseCurlyBracket
        )
    }

    /// The binding of a key press: the key and its modifiers (`command` is Ctrl, or Cmd on
    /// macOS).
    pub fn from_press(key: Key, modifiers: Modifiers) -> KeyBinding {
        KeyBinding {
            ctrl: modifiers.command,
            shift: modifiers.shift,
            alt: modifiers.alt,
            key,
        }
    }

    /// The modifiers this binding is pressed with.
    pub fn modifiers(self) -> Modifiers {
        Modifiers {
            alt: self.alt,
            ctrl: self.ctrl && !cfg!(target_os = "macos"),
            shift: self.shift,
            mac_cmd: self.ctrl && cfg!(target_os = "macos"),
            command: self.ctrl,
        }
    }

    /// True when a key event with these modifiers is this binding.
    pub fn matches(self, key: Key, modifiers: Modifiers) -> bool {
        key == self.key
            && modifiers.command == self.ctrl
            && modifiers.alt == self.alt
            && (modifiers.shift == self.shift || self.shift_is_part_of_key())
    }

    /// The binding as the shortcuts file writes it.
    pub fn to_config_string(self) -> String {
        let mut s = String::new();
        if self.ctrl {
            s.push_str("Ctrl+");
        }
        if self.shift {
            s.push_str("Shift+");
        }
        if self.alt {
            s.push_str("Alt+");
        }
        s.push_str(self.key.name());
        s
    }

    /// The binding as people read it (`Ctrl+Shift+Z`, `?`, `Left`), with `Cmd` on macOS.
    pub fn label(self) -> String {
        self.label_for(cfg!(target_os = "macos"))
    }

    /// [`label`](Self::label) as it reads on macOS (`Cmd+`) or elsewhere (`Ctrl+`): the README
    /// is the same for everyone.
    pub fn label_for(self, macos: bool) -> String {
        let mut s = String::new();
        if self.ctrl {
            s.push_str(if macos { "Cmd+" } else { "Ctrl+" });
        }
        if self.shift {
            s.push_str("Shift+");
        }
        if self.alt {
            s.push_str("Alt+");
        }
        // Arrow symbols are not in every font egui ships; their names read fine.
        let key = match self.key {
            Key::ArrowLeft | Key::ArrowRight | Key::ArrowUp | Key::ArrowDown => self.key.name(),
            other => other.symbol_or_name(),
        };
        s.push_str(key);
        s
    }
}

/// The keys of every action: defaults, replaced per action by the user's file.
#[derive(Clone, Debug)]
pub struct Keymap {
    bindings: Vec<(Action, Vec<KeyBinding>)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self {
            bindings: Action::all()
                .into_iter()
                .map(|a| {
                    let keys = a
                        .default_keys()
                        .iter()
                        .filter_map(|k| KeyBinding::parse(k))
                        .collect();
                    (a, keys)
                })
                .collect(),
        }
    }
}

/// A problem in the shortcuts file, reported once and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeymapWarning(pub String);

impl Keymap {
    /// The defaults, overridden by a TOML table `action = ["Key", …]`. Unknown actions and
    /// unreadable keys are skipped with a warning; the action keeps its defaults. A key the
    /// file gives two actions is a conflict: the warning names both, and the action that
    /// edits (or else the later one) loses the key (its defaults come back where they are
    /// free), so one key never does two things.
    pub fn from_toml(text: &str) -> (Keymap, Vec<KeymapWarning>) {
        let (mut map, mut warnings) = Self::from_toml_unchecked(text);
        map.resolve_conflicts(&mut warnings);
        (map, warnings)
    }

    /// Removes every conflict, each with a warning naming both actions.
    fn resolve_conflicts(&mut self, warnings: &mut Vec<KeymapWarning>) {
        // Each round removes one key from one action, so this ends.
        loop {
            let found = self.bindings.iter().find_map(|(action, keys)| {
                keys.iter()
                    .find_map(|&k| self.conflict(*action, k).map(|other| (*action, other, k)))
            });
            let Some((a, b, key)) = found else {
                return;
            };
            let position = |x: Action| self.bindings.iter().position(|(y, _)| *y == x);
            let loser = match (a.edits(), b.edits()) {
                (true, false) => a,
                (false, true) => b,
                _ if position(a) > position(b) => a,
                _ => b,
            };
            let keeper = if loser == a { b } else { a };
            let defaults: Vec<KeyBinding> = loser
                .default_keys()
                .iter()
                .filter_map(|k| KeyBinding::parse(k))
                .filter(|d| self.conflict(loser, *d).is_none())
                .collect();
            let slot = self
                .bindings
                .iter_mut()
                .find(|(x, _)| *x == loser)
                .map(|(_, keys)| keys);
            let Some(keys) = slot else { return };
            keys.retain(|k| *k != key && !key.matches(k.key, k.modifiers()));
            let restored: Vec<KeyBinding> =
                defaults.into_iter().filter(|d| !keys.contains(d)).collect();
            let restored_text = if restored.is_empty() {
                String::new()
            } else {
                format!(
                    "; it keeps {}",
                    restored
                        .iter()
                        .map(|k| k.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            keys.extend(restored);
            warnings.push(KeymapWarning(format!(
                "{} is the key of both {} (“{}”) and {} (“{}”): kept for {}, removed from {}{restored_text}",
                key.label(),
                keeper.name(),
                keeper.description(),
                loser.name(),
                loser.description(),
                keeper.name(),
                loser.name(),
            )));
        }
    }

    fn from_toml_unchecked(text: &str) -> (Keymap, Vec<KeymapWarning>) {
        let mut map = Keymap::default();
        let mut warnings = Vec::new();
        let table: BTreeMap<String, Vec<String>> = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(KeymapWarning(format!(
                    "cannot read the shortcuts file: {e}"
                )));
                return (map, warnings);
            }
        };
        for (name, keys) in table {
            let Some(action) = Action::parse(&name) else {
                warnings.push(KeymapWarning(format!("unknown action {name:?}")));
                continue;
            };
            let mut parsed = Vec::new();
            for k in &keys {
                match KeyBinding::parse(k) {
                    Some(b) => parsed.push(b),
                    None => warnings.push(KeymapWarning(format!("{name}: cannot read key {k:?}"))),
                }
            }
            if parsed.len() == keys.len()
                && let Some(slot) = map.bindings.iter_mut().find(|(a, _)| *a == action)
            {
                slot.1 = parsed;
            }
        }
        (map, warnings)
    }

    /// The whole keymap as TOML, for writing the defaults on first run.
    /// The shortcuts file: the keys the user changed, and every other action's default as a
    /// comment. Only changes are pinned, so a later Loupe's new defaults reach everyone who
    /// did not rebind that action.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Loupe keyboard shortcuts. Each action takes a list of keys such as \"Ctrl+Shift+Z\",\n\
             # \"Space\", \"F1\", \"Left\". Commented lines are the defaults: remove the # and\n\
             # change the keys to rebind. Delete a line to get the default back.\n\n",
        );
        let defaults = Keymap::default();
        for (action, keys) in &self.bindings {
            let text: Vec<String> = keys
                .iter()
                .map(|k| format!("\"{}\"", k.to_config_string()))
                .collect();
            if keys.as_slice() == defaults.keys(*action) {
                out.push_str("# ");
            }
            out.push_str(&format!("{} = [{}]\n", action.name(), text.join(", ")));
        }
        out
    }

    /// The keys of an action.
    pub fn keys(&self, action: Action) -> &[KeyBinding] {
        self.bindings
            .iter()
            .find(|(a, _)| *a == action)
            .map_or(&[], |(_, k)| k.as_slice())
    }

    /// "Ctrl+Z" or "D / →", for tooltips.
    pub fn label(&self, action: Action) -> String {
        self.keys(action)
            .iter()
            .map(|k| k.label())
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// A tooltip: what the action does and its keys.
    pub fn tooltip(&self, action: Action) -> String {
        let keys = self.label(action);
        if keys.is_empty() {
            action.description()
        } else {
            format!("{}  ({keys})", action.description())
        }
    }

    /// The actions bound to a key press, in keymap order.
    pub fn actions_for(&self, key: Key, modifiers: Modifiers) -> Vec<Action> {
        self.bindings
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k.matches(key, modifiers)))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Replaces the keys of `action`, refusing a key another action already has: the error
    /// names both.
    pub fn set_keys(&mut self, action: Action, keys: Vec<KeyBinding>) -> Result<(), KeyConflict> {
        for &binding in &keys {
            if let Some(other) = self.conflict(action, binding) {
                return Err(KeyConflict {
                    binding,
                    action,
                    other,
                });
            }
        }
        if let Some(slot) = self.bindings.iter_mut().find(|(a, _)| *a == action) {
            slot.1 = keys;
        }
        Ok(())
    }

    /// The default keys of `action` again (refused like [`set_keys`](Self::set_keys) when
    /// another action took one of them meanwhile).
    pub fn reset(&mut self, action: Action) -> Result<(), KeyConflict> {
        let keys = action
            .default_keys()
            .iter()
            .filter_map(|k| KeyBinding::parse(k))
            .collect();
        self.set_keys(action, keys)
    }

    /// The first action other than `action` that a press of `binding` would also trigger.
    pub fn conflict(&self, action: Action, binding: KeyBinding) -> Option<Action> {
        self.actions_for(binding.key, binding.modifiers())
            .into_iter()
            .chain(
                // A binding with Shift optional (`?`) is also hit by the same key without it.
                self.bindings
                    .iter()
                    .filter(|(_, keys)| keys.iter().any(|k| binding.matches(k.key, k.modifiers())))
                    .map(|(a, _)| *a),
            )
            .find(|other| *other != action)
    }

    /// True when some action uses this key press.
    pub fn is_bound(&self, key: Key, modifiers: Modifiers) -> bool {
        self.bindings
            .iter()
            .any(|(_, keys)| keys.iter().any(|k| k.matches(key, modifiers)))
    }
}

/// A key that [`Keymap::set_keys`] refused because another action has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyConflict {
    pub binding: KeyBinding,
    /// The action being rebound.
    pub action: Action,
    /// The action that already has the key.
    pub other: Action,
}

impl std::fmt::Display for KeyConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is already the key of “{}”; it cannot also be the key of “{}”. Give “{}” \
             another key first.",
            self.binding.label(),
            self.other.description(),
            self.action.description(),
            self.other.description()
        )
    }
}

/// One key press taken from the frame's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyPress {
    pub key: Key,
    pub modifiers: Modifiers,
    pub pressed: bool,
    /// Held down: the system repeats the press.
    pub repeat: bool,
}

/// Removes the key events the keymap knows from this frame's input (so no focused button or
/// list also reacts to them) and returns them in order, presses and releases.
pub fn take_bound_keys(ctx: &egui::Context, keymap: &Keymap) -> Vec<KeyPress> {
    ctx.input_mut(|i| {
        let mut taken = Vec::new();
        i.events.retain(|e| match e {
            egui::Event::Key {
                key,
                pressed,
                modifiers,
                repeat,
                ..
            } if keymap.is_bound(*key, *modifiers) || (!*pressed && *key == Key::Space) => {
                taken.push(KeyPress {
                    key: *key,
                    modifiers: *modifiers,
                    pressed: *pressed,
                    repeat: *repeat,
                });
                false
            }
            _ => true,
        });
        taken
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_parse_and_print() {
        let b = KeyBinding::parse("Ctrl+Shift+Z").expect("parse");
        assert!(b.ctrl && b.shift && !b.alt && b.key == Key::Z);
        assert_eq!(b.to_config_string(), "Ctrl+Shift+Z");
        assert_eq!(
            KeyBinding::parse("?").map(|b| b.key),
            Some(Key::Questionmark)
        );
        assert_eq!(
            KeyBinding::parse("Ctrl++").map(|b| (b.ctrl, b.key)),
            Some((true, Key::Plus))
        );
        assert!(KeyBinding::parse("Hyper+Q").is_none());
        for action in Action::all() {
            assert_eq!(Action::parse(&action.name()), Some(action));
            for k in action.default_keys() {
                assert!(KeyBinding::parse(k).is_some(), "{k}");
            }
        }
    }

    #[test]
    fn modifiers_must_match_exactly() {
        let map = Keymap::default();
        assert_eq!(
            map.actions_for(Key::A, Modifiers::NONE),
            vec![Action::PreviousImage]
        );
        assert_eq!(
            map.actions_for(Key::A, Modifiers::SHIFT),
            vec![Action::AcceptAllVisible]
        );
        assert_eq!(
            map.actions_for(Key::Z, Modifiers::COMMAND),
            vec![Action::Undo]
        );
        assert_eq!(
            map.actions_for(Key::Z, Modifiers::COMMAND | Modifiers::SHIFT),
            vec![Action::Redo]
        );
        assert_eq!(
            map.actions_for(Key::Questionmark, Modifiers::SHIFT),
            vec![Action::Help]
        );
        // One key, one action: the arrows navigate, Alt+arrows nudge.
        assert_eq!(
            map.actions_for(Key::ArrowLeft, Modifiers::NONE),
            vec![Action::PreviousImage]
        );
        assert_eq!(
            map.actions_for(Key::ArrowLeft, Modifiers::ALT),
            vec![Action::NudgeLeft]
        );
        assert_eq!(
            map.actions_for(Key::ArrowLeft, Modifiers::ALT | Modifiers::SHIFT),
            vec![Action::NudgeLeftFar]
        );
        assert!(map.actions_for(Key::ArrowLeft, Modifiers::SHIFT).is_empty());
    }

    #[test]
    fn the_defaults_have_no_conflicts_and_rebinding_refuses_one() {
        let mut map = Keymap::default();
        for action in Action::all() {
            for &k in map.keys(action) {
                assert_eq!(map.conflict(action, k), None, "{action:?} {k:?}");
            }
        }
        let ctrl_z = KeyBinding::parse("Ctrl+Z").expect("parse");
        let err = map
            .set_keys(Action::Redo, vec![ctrl_z])
            .expect_err("Undo has it");
        assert_eq!((err.action, err.other), (Action::Redo, Action::Undo));
        let msg = err.to_string();
        assert!(msg.contains("Undo") && msg.contains("Redo"), "{msg}");
        // No key is shared: an arrow is navigation's only.
        let left = KeyBinding::parse("Left").expect("parse");
        assert_eq!(
            map.conflict(Action::NudgeLeft, left),
            Some(Action::PreviousImage)
        );
        let n = KeyBinding::parse("J").expect("parse");
        map.set_keys(Action::NextImage, vec![n]).expect("J is free");
        assert_eq!(
            map.actions_for(Key::J, Modifiers::NONE),
            vec![Action::NextImage]
        );
        map.reset(Action::NextImage)
            .expect("defaults are free again");
        assert_eq!(
            map.label(Action::NextImage),
            Keymap::default().label(Action::NextImage)
        );
        // `?` is hit with or without Shift: a plain `?` conflicts with Help's.
        let q = KeyBinding::from_press(Key::Questionmark, Modifiers::NONE);
        assert_eq!(map.conflict(Action::Fit, q), Some(Action::Help));
    }

    #[test]
    fn conflicts_in_the_file_are_named_and_the_editing_action_loses_the_key() {
        // The shortcuts file an earlier Loupe wrote: the arrows both navigate and nudge.
        let old = "next_image = [\"D\", \"Right\"]\nnudge_right = [\"Right\"]\n\
                   fit = [\"K\"]\nzoom_in = [\"K\"]\n";
        let (map, warnings) = Keymap::from_toml(old);
        assert_eq!(
            map.actions_for(Key::ArrowRight, Modifiers::NONE),
            vec![Action::NextImage]
        );
        assert_eq!(
            map.actions_for(Key::ArrowRight, Modifiers::ALT),
            vec![Action::NudgeRight],
            "the nudge gets its default back"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let first = &warnings[0].0;
        assert!(
            first.contains("next_image")
                && first.contains("nudge_right")
                && first.contains("Right"),
            "{first}"
        );
        // Two non-editing actions: the later one in the keymap loses.
        assert!(warnings[1].0.contains("fit") && warnings[1].0.contains("zoom_in"));
        assert_eq!(map.actions_for(Key::K, Modifiers::NONE), vec![Action::Fit]);
        for action in Action::all() {
            for &k in map.keys(action) {
                assert_eq!(map.conflict(action, k), None, "{action:?} {k:?}");
            }
        }
    }

    #[test]
    fn the_file_overrides_defaults_and_round_trips() {
        let (map, warnings) =
            Keymap::from_toml("next_image = [\"J\"]\nbogus = [\"X\"]\nundo = [\"Ctrl+???\"]\n");
        assert_eq!(warnings.len(), 2);
        assert_eq!(
            map.actions_for(Key::J, Modifiers::NONE),
            vec![Action::NextImage]
        );
        assert!(map.actions_for(Key::D, Modifiers::NONE).is_empty());
        assert_eq!(
            map.actions_for(Key::Z, Modifiers::COMMAND),
            vec![Action::Undo]
        );
        let (again, warnings) = Keymap::from_toml(&map.to_toml());
        assert!(warnings.is_empty());
        assert_eq!(again.to_toml(), map.to_toml());
        // Only what was changed is pinned; the defaults are comments.
        let text = map.to_toml();
        assert!(text.contains("\nnext_image = [\"J\"]\n"), "{text}");
        assert!(text.contains("\n# undo = [\"Ctrl+Z\"]\n"), "{text}");
        assert!(
            Keymap::default()
                .to_toml()
                .lines()
                .all(|l| l.is_empty() || l.starts_with('#'))
        );
    }
}

//! What panels, the canvas and the keyboard ask for. They never change the project themselves:
//! they push a `Command`, and the session applies all of them after the frame's UI is drawn
//! (`Session::apply`), which is also where undo/redo and store writes happen.

use std::path::PathBuf;

use uuid::Uuid;

use super::classes::PickerTarget;
use crate::formats::Format;
use crate::model::BBox;
use crate::store::ImageFilter;

/// One request from the UI.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    // Navigation.
    NextImage,
    PreviousImage,
    /// The next image of the list with proposals left.
    NextWithProposals,
    NextUnreviewed,
    NextFlagged,
    /// Show the image at this row of the filtered list.
    ShowRow(usize),
    /// Stacks: the next or previous frame (PageDown/PageUp, Ctrl+wheel), the first or last.
    NextFrame,
    PreviousFrame,
    FirstFrame,
    LastFrame,
    /// Play or pause the stack's frames (cine).
    ToggleCine,
    /// Copy the selected box to the next frame (same track) and show that frame.
    CopyBoxToNextFrame,
    /// Propose the boxes of the selected box's track on the frames between its keyframes.
    Interpolate,

    // Selection.
    Select(Option<Uuid>),
    SelectNextBox,
    SelectPreviousBox,

    // Box edits (each is one undo step and one store write).
    /// A new box of the current class.
    CreateBox(BBox),
    /// A new box of the current class from four extreme clicks.
    CreateFourClickBox(BBox),
    /// Drop the four-click points placed so far (Escape).
    CancelClicks,
    /// New geometry for a box (move or resize); `what` names it for undo.
    SetBBox {
        id: Uuid,
        bbox: BBox,
        what: &'static str,
    },
    /// Move the selected box by whole pixels.
    Nudge {
        dx: f64,
        dy: f64,
    },
    /// Set the class of the selected box, or of new boxes.
    SetClass {
        target: PickerTarget,
        class: Uuid,
    },
    /// The class at this position (0-based) for the selection, or for new boxes.
    ClassAt(usize),
    /// Create a class, then use it for the target.
    CreateClass {
        name: String,
        target: PickerTarget,
    },
    /// Delete the selected box; a proposal is rejected instead.
    DeleteSelected,
    /// Delete one box (or reject it if it is a proposal).
    Delete(Uuid),
    /// Accept one proposal.
    Accept(Uuid),
    AcceptSelected,
    AcceptAllVisible,
    /// Accept every visible proposal, mark the image done, show the next.
    AcceptAndNext,
    /// Approve the selected label, or every label of the image and go to the next.
    ApproveLabels,
    /// Open the return dialog for the selected label, or every label of the image.
    ReturnLabels,
    /// Return these labels with this comment (from the dialog).
    ReturnWith {
        boxes: Vec<uuid::Uuid>,
        comment: String,
    },
    CopyPreviousBoxes,
    /// The images (or, with a box selected, the boxes) most like this one, as a queue.
    MoreLikeThis,
    Undo,
    Redo,

    // View.
    Fit,
    OneToOne,
    Zoom(f32),
    ResetDisplay,
    NextWindowPreset,
    /// Open or close window mode.
    WindowMode,
    /// Show the window at this index of the image's window choices.
    ChooseWindow(usize),
    /// Window mode: put the keyboard in the level field.
    TypeWindow,
    /// A typed window, level and width in measured units (HU).
    SetWindow {
        level: f64,
        width: f64,
    },
    ToggleRuler,
    /// Four-click boxes on or off.
    ToggleFourClick,
    /// Snapping drawn boxes to proposals on or off.
    ToggleSnap,
    ToggleProposals,
    ToggleOutlines,
    ToggleBoxes,
    ToggleHelp,
    /// Open the settings window (an app-level window: the session passes it on).
    OpenSettings,
    FocusSearch,
    OpenClassPicker,

    // Image list and project.
    SetFilter(ImageFilter),
    ToggleFlag,
    OpenProjectDialog,
    NewProjectDialog,
    OpenProject(PathBuf),
    AddImagesDialog,
    AddFolderDialog,
    /// Pick a labels file or folder and import it.
    ImportDialog(Format),
    /// Pick where to export the current labels.
    ExportDialog(Format),
    CloseProject,
    RetryWrites,

    // The data loop (modes, batches, audits, triage, metadata, profile).
    Lead(super::lead::LeadCommand),

    /// Choosing and running a detection model.
    Model(super::model_run::ModelCommand),

    /// Sync with the shared store: sync now, the details window, conflict resolutions.
    Sync(super::sync_status::SyncCommand),
}

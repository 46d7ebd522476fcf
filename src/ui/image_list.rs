//! The image list: filters, search by path, and a virtualised list (only the rows on screen are
//! laid out, so 100k images scroll smoothly) with thumbnails. The filtered order is what
//! "next" and "previous" follow.

use std::ops::Range;
use std::path::Path;

use eframe::egui::{
    self, Align2, Color32, FontId, Rect, RichText, ScrollArea, Sense, Ui, pos2, vec2,
};

use super::classes::ClassTable;
use super::commands::Command;
use super::theme;
use super::thumbs::Thumbnails;
use crate::store::{ImageFilter, ImageRow, ImageStatus};

/// The list panel's state.
#[derive(Default)]
pub struct ImageList {
    /// The filter the rows were listed with.
    pub filter: ImageFilter,
    /// Rows of the current filter, in path order.
    pub rows: Vec<ImageRow>,
    /// Tells the answer to the latest list request from older ones.
    pub generation: u64,
    /// True while a list request is out.
    pub loading: bool,
    search: String,
    tag: String,
    focus_search: bool,
    visible: Range<usize>,
    /// The row to bring into view on the next frame.
    scroll_to: Option<usize>,
    /// What the list shows: one entry per image, or per stack (a range of `rows`).
    pub entries: Vec<Range<usize>>,
}

impl ImageList {
    /// Takes a new listing: the frames of a stack are put together, in frame order, where the
    /// stack's first path falls; each stack becomes one entry.
    pub fn set_rows(&mut self, rows: Vec<ImageRow>) {
        let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(s) = &r.stack {
                first.entry(s.clone()).or_insert(i);
            }
        }
        let mut keyed: Vec<((usize, u32, usize), ImageRow)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let at = r
                    .stack
                    .as_ref()
                    .and_then(|s| first.get(s))
                    .copied()
                    .unwrap_or(i);
                ((at, r.frame, i), r)
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        self.rows = keyed.into_iter().map(|(_, r)| r).collect();
        self.entries.clear();
        let mut i = 0;
        while i < self.rows.len() {
            let mut end = i + 1;
            if let Some(s) = &self.rows[i].stack {
                while end < self.rows.len() && self.rows[end].stack.as_ref() == Some(s) {
                    end += 1;
                }
            }
            self.entries.push(i..end);
            i = end;
        }
    }

    /// The entry (index into `entries`) holding row `row`.
    pub fn entry_of(&self, row: usize) -> Option<usize> {
        self.entries
            .binary_search_by(|e| {
                if row < e.start {
                    std::cmp::Ordering::Greater
                } else if row >= e.end {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .ok()
    }

    /// The rows of the stack holding `row` (just `row` for an image outside any stack).
    pub fn stack_rows(&self, row: usize) -> Range<usize> {
        self.entry_of(row)
            .and_then(|e| self.entries.get(e).cloned())
            .unwrap_or(row..row + 1)
    }
}

fn status_label(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::All => "All images",
        ImageStatus::Unreviewed => "Unreviewed",
        ImageStatus::HasProposals => "Has proposals",
        ImageStatus::Flagged => "Flagged",
        ImageStatus::Missing => "Missing files",
    }
}

impl ImageList {
    /// Puts the keyboard in the search field next frame.
    pub fn focus_search(&mut self) {
        self.focus_search = true;
    }

    /// Brings a row into view (after next/previous).
    pub fn reveal(&mut self, row: usize) {
        self.scroll_to = Some(row);
    }

    /// Draws the panel.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        current_row: Option<usize>,
        classes: &ClassTable,
        thumbs: &mut Thumbnails,
        root: &Path,
        out: &mut Vec<Command>,
    ) {
        let mut filter = self.filter.clone();
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("status-filter")
                .width(118.0)
                .selected_text(status_label(filter.status))
                .show_ui(ui, |ui| {
                    for s in [
                        ImageStatus::All,
                        ImageStatus::Unreviewed,
                        ImageStatus::HasProposals,
                        ImageStatus::Flagged,
                        ImageStatus::Missing,
                    ] {
                        ui.selectable_value(&mut filter.status, s, status_label(s));
                    }
                })
                .response
                .on_hover_text("Show images by review status");
            egui::ComboBox::from_id_salt("class-filter")
                .width(96.0)
                .selected_text(filter.class.as_deref().unwrap_or("Any class"))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut filter.class, None, "Any class");
                    for c in classes.iter() {
                        ui.selectable_value(&mut filter.class, Some(c.name.clone()), &c.name);
                    }
                })
                .response
                .on_hover_text("Show images with boxes of a class");
        });
        ui.horizontal(|ui| {
            let search = ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("Search path…")
                    .desired_width(140.0),
            );
            if std::mem::take(&mut self.focus_search) {
                search.request_focus();
            }
            let tag = ui
                .add(
                    egui::TextEdit::singleline(&mut self.tag)
                        .hint_text("tag or k=v")
                        .desired_width(70.0),
                )
                .on_hover_text(
                    "Show images with a tag, or with metadata KEY=VALUE (e.g. weather=rain)",
                );
            let typed = search.changed() || tag.changed();
            if typed {
                let trimmed = self.search.trim();
                filter.path_contains = (!trimmed.is_empty()).then(|| trimmed.to_owned());
                // "key=value" filters on image metadata, anything else on a tag.
                let tag = self.tag.trim();
                filter.meta = tag
                    .split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .filter(|(k, _)| !k.is_empty());
                filter.tag = (!tag.is_empty() && filter.meta.is_none() && !tag.contains('='))
                    .then(|| tag.to_owned());
            }
        });
        if filter != self.filter {
            out.push(Command::SetFilter(filter));
        }
        let count = if self.loading {
            "listing…".to_owned()
        } else if self.entries.len() < self.rows.len() {
            format!(
                "{} images in {} entries",
                self.rows.len(),
                self.entries.len()
            )
        } else {
            format!("{} images", self.rows.len())
        };
        ui.label(RichText::new(count).small().color(theme::TEXT_WEAK));
        ui.separator();

        let row_height = theme::IMAGE_ROW_HEIGHT;
        let spacing = ui.spacing().item_spacing.y;
        let mut area = ScrollArea::vertical()
            .auto_shrink([false, false])
            .id_salt("image-rows");
        if let Some(row) = self.scroll_to.take().and_then(|r| self.entry_of(r)) {
            // Only scroll when the row is not fully visible already.
            let fully_visible = self.visible.start < row && row + 1 < self.visible.end;
            if !fully_visible {
                let visible_rows = self.visible.len().max(3);
                #[allow(clippy::cast_precision_loss)]
                let top = row.saturating_sub(visible_rows / 2) as f32 * (row_height + spacing);
                area = area.vertical_scroll_offset(top);
            }
        }
        let current_entry = current_row.and_then(|r| self.entry_of(r));
        area.show_rows(ui, row_height, self.entries.len(), |ui, range| {
            self.visible = range.clone();
            for e in range {
                let Some(rows) = self.entries.get(e).cloned() else {
                    break;
                };
                let Some(row) = self.rows.get(rows.start) else {
                    break;
                };
                let stack = (rows.len() > 1).then(|| StackSummary::of(&self.rows[rows.clone()]));
                let (rect, response) =
                    ui.allocate_exact_size(vec2(ui.available_width(), row_height), Sense::click());
                if ui.is_rect_visible(rect) {
                    row_ui(
                        ui,
                        rect,
                        row,
                        stack.as_ref(),
                        Some(e) == current_entry,
                        response.hovered(),
                        thumbs,
                        root,
                    );
                }
                let label = match &stack {
                    Some(s) => s.name.clone(),
                    None => row.path.clone(),
                };
                response.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, label.as_str())
                });
                if response.clicked() {
                    // The stack's frame shown last, else its first.
                    let to = current_row
                        .filter(|r| rows.contains(r))
                        .unwrap_or(rows.start);
                    out.push(Command::ShowRow(to));
                }
            }
        });
        thumbs.end_frame(ui.ctx());
    }
}

/// What a stack's entry says: its name, frame count and totals.
pub struct StackSummary {
    pub name: String,
    pub frames: usize,
    pub boxes: u32,
    pub proposals: u32,
}

impl StackSummary {
    pub fn of(rows: &[ImageRow]) -> StackSummary {
        let first = &rows[0];
        let key = first.stack.as_deref().unwrap_or_default();
        let name = match key.split_once(':') {
            // A multi-frame file: its file name.
            Some(("file", path)) => path.rsplit('/').next().unwrap_or(path).to_owned(),
            // A series: the folder of its first slice, and the series.
            _ => {
                let folder = first
                    .path
                    .rsplit_once('/')
                    .map_or("", |(dir, _)| dir)
                    .rsplit('/')
                    .next()
                    .unwrap_or_default();
                if folder.is_empty() {
                    "series".to_owned()
                } else {
                    format!("{folder} (series)")
                }
            }
        };
        StackSummary {
            name,
            frames: rows.len(),
            boxes: rows.iter().map(|r| r.boxes).sum(),
            proposals: rows.iter().map(|r| r.proposals).sum(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn row_ui(
    ui: &Ui,
    rect: Rect,
    row: &ImageRow,
    stack: Option<&StackSummary>,
    current: bool,
    hovered: bool,
    thumbs: &mut Thumbnails,
    root: &Path,
) {
    let painter = ui.painter_at(rect);
    if current {
        painter.rect_filled(rect, 3.0, theme::selected_row(ui));
    } else if hovered {
        painter.rect_filled(rect, 3.0, theme::hover_row(ui));
    }
    let thumb_rect = Rect::from_min_size(
        rect.min + vec2(4.0, 3.0),
        vec2(rect.height() - 6.0, rect.height() - 6.0),
    );
    painter.rect_filled(thumb_rect, 2.0, Color32::from_gray(0x14));
    if !row.missing
        && let Some(tex) = thumbs.get(row.id, &root.join(&row.path))
    {
        // Keep the aspect ratio inside the square.
        let size = tex.size_vec2();
        let scale = (thumb_rect.width() / size.x).min(thumb_rect.height() / size.y);
        let r = Rect::from_center_size(thumb_rect.center(), size * scale);
        painter.image(
            tex.id(),
            r,
            Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
            Color32::WHITE,
        );
    }
    let text_x = thumb_rect.right() + 8.0;
    let name = match stack {
        Some(s) => s.name.as_str(),
        None => row.path.rsplit('/').next().unwrap_or(&row.path),
    };
    let name_color = if row.missing {
        theme::ERROR
    } else {
        theme::text(ui)
    };
    painter.text(
        pos2(text_x, rect.top() + 6.0),
        Align2::LEFT_TOP,
        name,
        FontId::proportional(13.0),
        name_color,
    );
    let plural = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let (boxes, proposals) = stack.map_or((row.boxes, row.proposals), |s| (s.boxes, s.proposals));
    let mut detail = match stack {
        Some(s) => format!("{} frames · {}", s.frames, plural(boxes, "box", "boxes")),
        None => plural(boxes, "box", "boxes"),
    };
    if proposals > 0 {
        detail.push_str(" · ");
        detail.push_str(&plural(proposals, "proposal", "proposals"));
    }
    if row.missing {
        detail = "file missing".into();
    }
    painter.text(
        pos2(text_x, rect.top() + 24.0),
        Align2::LEFT_TOP,
        detail,
        FontId::proportional(11.0),
        if proposals > 0 {
            theme::PROPOSAL
        } else {
            theme::TEXT_WEAK
        },
    );
}

//! Stacks: images that are frames of one thing a reader scrolls through. A multi-frame DICOM
//! file or a multi-page TIFF is one stack of its frames; the single-frame slices of a DICOM
//! series are one stack, grouped by SeriesInstanceUID and ordered by ImagePositionPatient along
//! the slice normal (InstanceNumber when positions are missing, then the file name).
//!
//! Every frame is an image of the project (a frame of a multi-frame file is addressed as
//! `FILE#frame=N`, see [`imaging::frame_path`]), so boxes belong to a frame and every export,
//! review and evaluation sees frames as images. Stack membership is image meta
//! ([`STACK_KEY`], [`FRAME_KEY`], [`SLICE_KEY`]) written by `add`.

use std::collections::HashMap;

use serde::Serialize;

use crate::imaging::dicom::SliceInfo;
use crate::model::{BBox, DicomRef, FrameRef};
use crate::store::{Bulk, FRAME_KEY, ImageFilter, Project, SLICE_KEY, STACK_KEY, StoreError};

/// A stack `add` found or updated.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StackReport {
    /// `series:UID` or `file:PATH`.
    pub key: String,
    /// `series` (slices of a DICOM series) or `frames` (one multi-frame file).
    pub kind: &'static str,
    /// The modality, for series (`CT`, `MR`, …).
    pub modality: String,
    pub frames: usize,
    /// What ordered the frames: `slice position`, `InstanceNumber`, `file name` or `frame number`.
    pub ordered_by: &'static str,
}

/// A slice left out of its series, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StackConflict {
    pub path: String,
    pub series: String,
    pub reason: String,
}

/// One DICOM slice of a series, as `add` read it.
#[derive(Clone, Debug)]
pub struct Slice {
    pub row: i64,
    pub path: String,
    pub info: SliceInfo,
}

/// What an export says of each image that is a frame of a stack or a DICOM instance, by project
/// path: its stack, place and slice position, the file it came from and, for DICOM, the
/// SeriesInstanceUID, SOPInstanceUID and frame number (read from the file's header; a header
/// that cannot be read leaves the DICOM part out, logged). Images that are neither are absent.
pub fn frame_refs(project: &Project) -> Result<HashMap<String, FrameRef>, StoreError> {
    let rows = project.list_images(&ImageFilter::default())?;
    let root = project.root();
    let mut headers: HashMap<String, Option<SliceInfo>> = HashMap::new();
    let mut refs = HashMap::new();
    for row in rows {
        let (source, index) = crate::imaging::split_frame(std::path::Path::new(&row.path));
        let source = source.to_string_lossy().replace('\\', "/");
        let on_disk = root.join(&source);
        // DICOM files are known by their marker; a file with another image extension is not
        // opened (an export of 100k photos reads no headers).
        let dicom_ext = std::path::Path::new(&source)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"));
        let maybe_dicom = !row.missing
            && (dicom_ext || !crate::imaging::has_image_extension(&on_disk))
            && crate::imaging::dicom::is_dicom(&on_disk);
        let dicom = if maybe_dicom {
            let info = headers.entry(source.clone()).or_insert_with(|| {
                match crate::imaging::dicom::slice_info(&on_disk) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        tracing::warn!("export: no DICOM reference for {source}: {e}");
                        None
                    }
                }
            });
            info.as_ref().map(|info| DicomRef {
                series_instance_uid: info.series.clone(),
                sop_instance_uid: info.sop_instance.clone(),
                frame_number: index.map(|i| i + 1),
            })
        } else {
            None
        };
        if row.stack.is_none() && dicom.is_none() {
            continue;
        }
        refs.insert(
            row.path.clone(),
            FrameRef {
                stack: row.stack.unwrap_or_default(),
                frame: row.frame,
                slice_mm: row.slice_mm,
                source,
                dicom,
            },
        );
    }
    Ok(refs)
}

/// Orientation cosines agree within this (DICOM writers round to 6 decimals or fewer).
const SAME_ORIENTATION: f64 = 1e-3;

/// Orders the slices of one series and finds those whose geometry does not fit it: a size or
/// orientation other than the series' most common one. Returns the ordered members, what
/// ordered them, and the misfits with reasons.
pub fn order_series(mut slices: Vec<Slice>) -> (Vec<Slice>, &'static str, Vec<(Slice, String)>) {
    // The geometry most slices share is the series'.
    let mut counts: HashMap<(u32, u32, Option<[i64; 6]>), usize> = HashMap::new();
    let key = |s: &Slice| {
        (
            s.info.rows,
            s.info.columns,
            s.info
                .orientation
                .map(|o| o.map(|v| (v / SAME_ORIENTATION).round() as i64)),
        )
    };
    for s in &slices {
        *counts.entry(key(s)).or_default() += 1;
    }
    let common = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(k, _)| k);
    let mut misfits = Vec::new();
    if let Some(common) = common {
        let (fit, odd): (Vec<Slice>, Vec<Slice>) =
            slices.into_iter().partition(|s| key(s) == common);
        slices = fit;
        for s in odd {
            let reason = if (s.info.rows, s.info.columns) != (common.0, common.1) {
                format!(
                    "{}x{} pixels, the series' other slices are {}x{}",
                    s.info.columns, s.info.rows, common.1, common.0
                )
            } else {
                "its ImageOrientationPatient differs from the series' other slices".to_owned()
            };
            misfits.push((s, reason));
        }
    }
    let normal = slices.first().and_then(|s| s.info.normal());
    let positioned = normal.is_some()
        && slices
            .iter()
            .all(|s| normal.and_then(|n| s.info.along(n)).is_some());
    let ordered_by = if positioned {
        let n = normal.unwrap_or_default();
        slices.sort_by(|a, b| {
            let (pa, pb) = (a.info.along(n), b.info.along(n));
            pa.partial_cmp(&pb)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.info.instance.cmp(&b.info.instance))
                .then_with(|| a.path.cmp(&b.path))
        });
        "slice position"
    } else if slices.iter().all(|s| s.info.instance.is_some()) {
        slices.sort_by(|a, b| {
            a.info
                .instance
                .cmp(&b.info.instance)
                .then_with(|| a.path.cmp(&b.path))
        });
        "InstanceNumber"
    } else {
        slices.sort_by(|a, b| a.path.cmp(&b.path));
        "file name"
    };
    (slices, ordered_by, misfits)
}

/// Writes the stack meta of one series: its members' order and slice positions, and removes
/// the misfits from it. Returns the report.
pub fn write_series(
    bulk: &mut Bulk<'_>,
    series: &str,
    slices: Vec<Slice>,
    conflicts: &mut Vec<StackConflict>,
) -> Result<Option<StackReport>, StoreError> {
    let key = format!("series:{series}");
    let modality = slices
        .first()
        .map(|s| s.info.modality.clone())
        .unwrap_or_default();
    let (ordered, ordered_by, misfits) = order_series(slices);
    for (s, reason) in misfits {
        for k in [STACK_KEY, FRAME_KEY, SLICE_KEY] {
            bulk.set_meta(s.row, k, "")?;
        }
        conflicts.push(StackConflict {
            path: s.path,
            series: series.to_owned(),
            reason,
        });
    }
    let normal = ordered.first().and_then(|s| s.info.normal());
    for (i, s) in ordered.iter().enumerate() {
        bulk.set_meta(s.row, STACK_KEY, &key)?;
        bulk.set_meta(s.row, FRAME_KEY, &i.to_string())?;
        let along = normal.and_then(|n| s.info.along(n));
        bulk.set_meta(
            s.row,
            SLICE_KEY,
            &along.map(|v| format!("{v:.3}")).unwrap_or_default(),
        )?;
    }
    if ordered.len() < 2 {
        // One slice is an image, not a stack.
        for s in &ordered {
            for k in [STACK_KEY, FRAME_KEY, SLICE_KEY] {
                bulk.set_meta(s.row, k, "")?;
            }
        }
        return Ok(None);
    }
    Ok(Some(StackReport {
        key,
        kind: "series",
        modality,
        frames: ordered.len(),
        ordered_by,
    }))
}

/// The attribute that ties the boxes of one object across the frames of a stack.
pub const TRACK: &str = "track";

/// The name of the run whose proposals keyframe interpolation makes.
pub const INTERPOLATION_RUN: &str = "interpolation";

/// Boxes between keyframes: for each pair of consecutive keyframes (frame, box) of one track,
/// the box of every frame strictly between them, linearly interpolated (corners move
/// linearly). Frames in `skip` (which already hold a box of the track) get none.
pub fn interpolate(keyframes: &[(u32, BBox)], skip: &[u32]) -> Vec<(u32, BBox)> {
    let mut keys: Vec<(u32, BBox)> = keyframes.to_vec();
    keys.sort_by_key(|(f, _)| *f);
    keys.dedup_by_key(|(f, _)| *f);
    let mut out = Vec::new();
    for pair in keys.windows(2) {
        let ((f0, a), (f1, b)) = (pair[0], pair[1]);
        for f in f0 + 1..f1 {
            if skip.contains(&f) {
                continue;
            }
            let t = f64::from(f - f0) / f64::from(f1 - f0);
            let lerp = |x: f64, y: f64| x + (y - x) * t;
            let (x1, y1) = (lerp(a.x, b.x), lerp(a.y, b.y));
            let (x2, y2) = (lerp(a.x2(), b.x2()), lerp(a.y2(), b.y2()));
            out.push((
                f,
                BBox {
                    x: x1,
                    y: y1,
                    w: x2 - x1,
                    h: y2 - y1,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_between_keyframes_move_linearly() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let b = BBox {
            x: 40.0,
            y: 20.0,
            w: 20.0,
            h: 10.0,
        };
        let got = interpolate(&[(4, b), (0, a)], &[2]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 1);
        assert_eq!(
            got[0].1,
            BBox {
                x: 10.0,
                y: 5.0,
                w: 12.5,
                h: 10.0
            }
        );
        assert_eq!(got[1].0, 3);
        assert!(interpolate(&[(0, a)], &[]).is_empty());
    }

    fn slice(path: &str, z: Option<f64>, instance: Option<i64>, size: (u32, u32)) -> Slice {
        Slice {
            row: 0,
            path: path.to_owned(),
            info: SliceInfo {
                frames: 1,
                series: Some("1.2".into()),
                sop_instance: None,
                modality: "CT".into(),
                rows: size.1,
                columns: size.0,
                position: z.map(|z| [0.0, 0.0, z]),
                orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
                instance,
                pixel_spacing: None,
            },
        }
    }

    #[test]
    fn slices_order_by_position_then_instance_then_name() {
        let (o, by, odd) = order_series(vec![
            slice("c", Some(5.0), Some(1), (8, 8)),
            slice("a", Some(-2.5), Some(3), (8, 8)),
            slice("b", Some(0.0), Some(2), (8, 8)),
        ]);
        assert_eq!(by, "slice position");
        assert!(odd.is_empty());
        assert_eq!(
            o.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let (o, by, _) = order_series(vec![
            slice("x", None, Some(2), (8, 8)),
            slice("y", None, Some(1), (8, 8)),
        ]);
        assert_eq!(by, "InstanceNumber");
        assert_eq!(o[0].path, "y");
        let (o, by, _) = order_series(vec![
            slice("q", None, None, (8, 8)),
            slice("p", None, Some(1), (8, 8)),
        ]);
        assert_eq!(by, "file name");
        assert_eq!(o[0].path, "p");
    }

    #[test]
    fn a_slice_of_another_size_is_left_out() {
        let (o, _, odd) = order_series(vec![
            slice("a", Some(0.0), None, (8, 8)),
            slice("b", Some(1.0), None, (8, 8)),
            slice("odd", Some(2.0), None, (10, 8)),
        ]);
        assert_eq!(o.len(), 2);
        assert_eq!(odd.len(), 1);
        assert!(odd[0].1.contains("10x8"), "{}", odd[0].1);
    }
}

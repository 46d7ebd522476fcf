//! DICOM files (CT, MR, X-ray, …) through dicom-rs: header probing, and decoding of the first
//! frame into 16-bit grayscale (or 8-bit RGB for colour images) with the modality LUT applied,
//! so window/level works on real modality values (Hounsfield units for CT).
//!
//! The 16-bit pixels hold `(value - offset) / scale`; [`GrayMapping`] records `offset` and
//! `scale` so the app can show and accept modality values, and the windows the file suggests.
//! `MONOCHROME1` images (where higher values are darker) are inverted on decode, and the
//! mapping says so.

use std::io::Read;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder};
use image::{DynamicImage, ImageBuffer, Luma};

use super::{ImageError, ImageInfo, decode_err};

/// How stored 16-bit gray values relate to the file's modality values, and the display windows
/// the file suggests (centre and width, in modality units).
#[derive(Clone, Debug, PartialEq)]
pub struct GrayMapping {
    /// Modality value of stored 0.
    pub offset: f64,
    /// Modality units per stored step (1 unless the range did not fit 16 bits).
    pub scale: f64,
    /// `MONOCHROME1`: stored values were flipped (`65535 - v`) so that brighter is higher.
    pub inverted: bool,
    /// Windows named in the file (Window Center/Width, with their explanations).
    pub windows: Vec<DicomWindow>,
    /// What the values are, for display ("HU" for CT).
    pub unit: &'static str,
    /// The file's Modality ("CT", "MR", "CR", …), empty when it names none.
    pub modality: String,
    /// SeriesInstanceUID: the slices of one series share a window/level.
    pub series: Option<String>,
    /// Millimetres between pixel centres, (row spacing, column spacing): PixelSpacing, else
    /// ImagerPixelSpacing (projection radiographs), when the file gives it.
    pub pixel_spacing: Option<(f64, f64)>,
}

/// One window the file suggests.
#[derive(Clone, Debug, PartialEq)]
pub struct DicomWindow {
    pub name: String,
    /// Named in the file (Window Center/Width), not one of the standard presets.
    pub from_file: bool,
    /// In modality units.
    pub center: f64,
    pub width: f64,
}

impl GrayMapping {
    /// The modality value of a stored 16-bit value.
    pub fn value(&self, stored: f64) -> f64 {
        let v = if self.inverted {
            f64::from(u16::MAX) - stored
        } else {
            stored
        };
        self.offset + v * self.scale
    }

    /// The stored value of a modality value (not clamped).
    pub fn stored(&self, value: f64) -> f64 {
        let v = (value - self.offset) / self.scale;
        if self.inverted {
            f64::from(u16::MAX) - v
        } else {
            v
        }
    }

    /// A window in stored units, as (low, high).
    pub fn stored_window(&self, w: &DicomWindow) -> (f64, f64) {
        let a = self.stored(w.center - w.width / 2.0);
        let b = self.stored(w.center + w.width / 2.0);
        (a.min(b), a.max(b))
    }
}

/// Standard clinical CT windows (name, level, width in HU), offered after the file's own, in
/// the order the window keys number them. Values as radiology references give them
/// (e.g. Radiopaedia's "Windowing (CT)"): brain L40 W80, subdural L75 W215, stroke L40 W40,
/// soft tissue L40 W400, lung L-600 W1500, mediastinum L50 W350, bone L400 W1800, liver
/// L30 W150.
pub const CT_WINDOWS: &[(&str, f64, f64)] = &[
    ("brain", 40.0, 80.0),
    ("subdural", 75.0, 215.0),
    ("stroke", 40.0, 40.0),
    ("soft tissue", 40.0, 400.0),
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("liver", 30.0, 150.0),
];

/// The CT window shown when the file names none of its own.
pub const CT_DEFAULT_WINDOW: &str = "soft tissue";

/// True when the file starts like a DICOM Part 10 file ("DICM" after the 128-byte preamble).
pub fn is_dicom(path: &Path) -> bool {
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// Counts the bytes read through it, shared with whoever holds the other `Rc`.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// VRs whose explicit-VR length field is 4 bytes (after 2 reserved bytes); dicom-rs reads an
/// unknown VR as UN, which is one of them.
fn long_length(vr: [u8; 2]) -> bool {
    const SHORT: [&[u8; 2]; 21] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
        b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    ];
    !SHORT.iter().any(|s| **s == vr)
}

/// Refuses a file that declares an element longer than the bytes left in it, before dicom-rs
/// reads it: the parser reserves and zero-fills a declared length before reading the value, so
/// a 10 KB file declaring a 3 GB element took 3 GB of memory (found by fuzzing; the inputs are
/// in tests/data/fuzz-regressions/dicom). The file meta group is walked here; the data set
/// through dicom-rs's own token reader, checking each element's and item's length as its
/// header arrives, before its value is read. `header_only` stops at the pixel data.
fn check_lengths(path: &Path, header_only: bool) -> Result<(), ImageError> {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_parser::dataset::{DataSetReader, DataToken};
    use std::io::{Seek, SeekFrom};
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut head = vec![0u8; usize::try_from(total.min(1 << 16)).unwrap_or(1 << 16)];
    file.read_exact(&mut head).map_err(io)?;
    let too_long = |what: String, len: u64, left: u64| {
        decode_err(
            path,
            format!(
                "not a readable DICOM file: {what} declares {len} bytes but only {left} remain (damaged or truncated)"
            ),
        )
    };
    // The file meta group: explicit VR little endian, after the preamble and "DICM".
    let mut at = 132usize;
    let mut ts = String::new();
    let mut group_end: Option<usize> = None;
    let mut previous: Option<u16> = None;
    while at + 8 <= head.len() {
        let group = u16::from_le_bytes([head[at], head[at + 1]]);
        let element = u16::from_le_bytes([head[at + 2], head[at + 3]]);
        if group != 0x0002 {
            break;
        }
        // Elements come in ascending order, each once: a repeated or out-of-order one (a
        // second group length, say) means the group is damaged, and dicom-object would start
        // the data set somewhere else than this walk does (a fuzzed 2.5 kB file made it reserve
        // 1.4 GB that way).
        if previous.is_some_and(|p| element <= p) {
            return Err(decode_err(
                path,
                format!(
                    "not a readable DICOM file: file meta element (0002,{element:04X}) follows (0002,{:04X}) (repeated or out of order: damaged)",
                    previous.unwrap_or_default()
                ),
            ));
        }
        previous = Some(element);
        let vr = [head[at + 4], head[at + 5]];
        let (len, header) = if long_length(vr) {
            let Some(b) = head.get(at + 8..at + 12) else {
                break;
            };
            (u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])), 12)
        } else {
            (
                u64::from(u16::from_le_bytes([head[at + 6], head[at + 7]])),
                8,
            )
        };
        let left = total.saturating_sub((at + header) as u64);
        if len > left {
            return Err(too_long(
                format!("meta element ({group:04X},{element:04X})"),
                len,
                left,
            ));
        }
        let start = at + header;
        let end = start + usize::try_from(len).unwrap_or(usize::MAX);
        if (group, element) == (0x0002, 0x0000)
            && len == 4
            && let Some(v) = head.get(start..end)
        {
            let declared = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            group_end = end.checked_add(usize::try_from(declared).unwrap_or(usize::MAX));
        }
        if (group, element) == (0x0002, 0x0010)
            && let Some(v) = head.get(start..end)
        {
            ts = String::from_utf8_lossy(v)
                .trim_end_matches(['\0', ' '])
                .to_owned();
        }
        at = end;
    }
    // A meta group the walk cannot follow to its declared end, or without a transfer syntax,
    // is damaged: dicom-object would read on from its declared length and trust the data set's
    // lengths unchecked (a fuzzed 856-byte file made it reserve 800 MB that way).
    if let Some(end) = group_end
        && at != end
    {
        return Err(decode_err(
            path,
            format!(
                "not a readable DICOM file: its file meta group declares it ends at byte {end}, its elements end at byte {at} (damaged)"
            ),
        ));
    }
    if ts.is_empty() {
        return Err(decode_err(
            path,
            "not a readable DICOM file: no Transfer Syntax UID in its file meta group (damaged)",
        ));
    }
    let data_start = at as u64;
    let Some(syntax) = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(&ts) else {
        // An unknown transfer syntax: dicom-object refuses it without reading the data set.
        return Ok(());
    };
    if syntax.uid() == "1.2.840.10008.1.2.1.99" {
        // Deflated: lengths are of the inflated stream, not bounded by the file's size.
        return Ok(());
    }
    file.seek(SeekFrom::Start(data_start)).map_err(io)?;
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let source = Counting {
        inner: file,
        read: std::rc::Rc::clone(&read),
    };
    let Ok(tokens) = DataSetReader::new_with_ts(source, syntax) else {
        return Ok(());
    };
    let left =
        |read: &std::rc::Rc<std::cell::Cell<u64>>| total.saturating_sub(data_start + read.get());
    // Where each open sequence of defined length ends (bytes read from the data set's start):
    // an item may not run past its sequence. dicom-object reads such an item to its own
    // declared end and parses whatever follows as its elements (a fuzzed 11 kB file made it
    // reserve 4 GB for one of those).
    let mut sequences: Vec<Option<(u64, dicom_object::Tag)>> = Vec::new();
    for token in tokens {
        match token {
            // A data set this walk cannot read is refused here: dicom-object would fail on it
            // too, but only after reserving what the damaged lengths declare.
            Err(e) => {
                return Err(decode_err(
                    path,
                    format!("not a readable DICOM file: its data set is damaged ({e})"),
                ));
            }
            Ok(DataToken::SequenceStart { tag, len }) => {
                sequences.push(len.get().map(|l| (read.get() + u64::from(l), tag)));
            }
            Ok(DataToken::SequenceEnd) => {
                sequences.pop();
            }
            Ok(DataToken::ElementHeader(h)) => {
                if header_only && h.tag == tags::PIXEL_DATA {
                    break;
                }
                if let Some(len) = h.len.get()
                    && u64::from(len) > left(&read)
                {
                    return Err(too_long(
                        format!("element ({:04X},{:04X})", h.tag.0, h.tag.1),
                        u64::from(len),
                        left(&read),
                    ));
                }
            }
            Ok(DataToken::PixelSequenceStart) if header_only => break,
            Ok(DataToken::ItemStart { len }) => {
                if let Some(len) = len.get()
                    && u64::from(len) > left(&read)
                {
                    return Err(too_long("an item".to_owned(), u64::from(len), left(&read)));
                }
                if let (Some(len), Some(Some((end, tag)))) = (len.get(), sequences.last())
                    && read.get() + u64::from(len) > *end
                {
                    return Err(too_long(
                        format!("an item of sequence ({:04X},{:04X})", tag.0, tag.1),
                        u64::from(len),
                        end.saturating_sub(read.get()),
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn open(path: &Path, header_only: bool) -> Result<DefaultDicomObject, ImageError> {
    check_lengths(path, header_only)?;
    let mut options = OpenFileOptions::new();
    if header_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options
        .open_file(path)
        .map_err(|e| decode_err(path, format!("not a readable DICOM file: {e}")))
}

fn uint(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: dicom_object::Tag,
    name: &str,
) -> Result<u32, ImageError> {
    obj.element(tag)
        .map_err(|_| decode_err(path, format!("DICOM file has no {name}")))?
        .to_int::<u32>()
        .map_err(|e| decode_err(path, format!("DICOM {name} is not a number: {e}")))
}

/// Compressed pixel data may decode to more bytes than the file holds, but not without bound:
/// a frame may claim at most this many times the file's size, or this floor, whichever is more.
const MAX_DECODE_EXPANSION: u64 = 1000;
const MIN_DECODE_BUDGET: u64 = 64 << 20;

/// Refuses a header whose declared frames (rows x columns x samples x bits allocated) do not
/// fit the pixel data before anything is allocated for them: dicom-rs reserves the declared
/// size first, so an 856-byte file declaring a big image took 850 MB and a second to refuse
/// (found by fuzzing). Uncompressed data must hold every frame; compressed data may expand up
/// to [`MAX_DECODE_EXPANSION`] times the file.
fn check_declared_size(
    obj: &DefaultDicomObject,
    path: &Path,
    frames: u32,
) -> Result<(), ImageError> {
    let optional = |tag, default| match obj.element(tag) {
        Ok(e) => e.to_int::<u32>().map(u64::from).unwrap_or(default),
        Err(_) => default,
    };
    let rows = optional(tags::ROWS, 0);
    let columns = optional(tags::COLUMNS, 0);
    let samples = optional(tags::SAMPLES_PER_PIXEL, 1).max(1);
    let bits = optional(tags::BITS_ALLOCATED, 8).max(1);
    // dicom-rs asserts 1 <= Bits Stored <= 32 when it builds its rescale table, a panic outside
    // the decoder (found by fuzzing): refused here with the values.
    let stored = optional(tags::BITS_STORED, bits.min(32));
    if stored == 0 || stored > 32 || stored > bits {
        return Err(decode_err(
            path,
            format!(
                "DICOM Bits Stored {stored} does not fit Bits Allocated {bits} (1 to 32, at most Bits Allocated)"
            ),
        ));
    }
    let frame_bytes = rows
        .saturating_mul(columns)
        .saturating_mul(samples)
        .saturating_mul(bits)
        .div_ceil(8);
    let declared = frame_bytes.saturating_mul(u64::from(frames));
    let Ok(pixel_data) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let described = format!(
        "{frames} frame(s) of {columns} x {rows} pixels, {samples} sample(s) of {bits} bits"
    );
    if pixel_data.value().fragments().is_none() {
        let held = pixel_data.to_bytes().map_or(0, |b| b.len() as u64);
        if declared > held {
            return Err(decode_err(
                path,
                format!(
                    "DICOM pixel data holds {held} bytes; the header declares {described} \
                     ({declared} bytes)"
                ),
            ));
        }
    } else {
        let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
        let budget = file_len
            .saturating_mul(MAX_DECODE_EXPANSION)
            .max(MIN_DECODE_BUDGET);
        if frame_bytes > budget {
            return Err(decode_err(
                path,
                format!(
                    "DICOM header declares {described} ({frame_bytes} bytes a frame) from \
                     {file_len} bytes of file: more than {MAX_DECODE_EXPANSION} times the file, \
                     refused before decoding"
                ),
            ));
        }
    }
    Ok(())
}

/// Rows and columns from the header (pixel data is not read).
pub fn probe(path: &Path) -> Result<ImageInfo, ImageError> {
    let obj = open(path, true)?;
    let width = uint(&obj, path, tags::COLUMNS, "Columns")?;
    let height = uint(&obj, path, tags::ROWS, "Rows")?;
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(ImageInfo {
        width,
        height,
        raw_width: width,
        raw_height: height,
        orientation: 1,
    })
}

/// Decodes the first frame: grayscale to 16 bits with its [`GrayMapping`], colour to RGB8.
pub fn decode(path: &Path) -> Result<(DynamicImage, Option<GrayMapping>), ImageError> {
    decode_frame(path, 0)
}

/// Where one file sits in a stack: its frame count, series and slice geometry (header only).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceInfo {
    /// NumberOfFrames (1 when absent).
    pub frames: u32,
    pub series: Option<String>,
    /// SOPInstanceUID: the instance itself.
    pub sop_instance: Option<String>,
    pub modality: String,
    pub rows: u32,
    pub columns: u32,
    /// ImagePositionPatient: the centre of the first pixel, in mm, patient coordinates.
    pub position: Option<[f64; 3]>,
    /// ImageOrientationPatient: row and column direction cosines.
    pub orientation: Option<[f64; 6]>,
    pub instance: Option<i64>,
    pub pixel_spacing: Option<(f64, f64)>,
}

impl SliceInfo {
    /// The slice normal (row direction x column direction), when the orientation is known.
    pub fn normal(&self) -> Option<[f64; 3]> {
        let o = self.orientation?;
        let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        Some([
            r[1] * c[2] - r[2] * c[1],
            r[2] * c[0] - r[0] * c[2],
            r[0] * c[1] - r[1] * c[0],
        ])
    }

    /// The position along `normal` (mm): what orders the slices of a series.
    pub fn along(&self, normal: [f64; 3]) -> Option<f64> {
        let p = self.position?;
        Some(p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2])
    }
}

fn floats<const N: usize>(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<[f64; N]> {
    let values = obj.element(tag).ok()?.to_multi_float64().ok()?;
    let array: [f64; N] = values.get(..N)?.try_into().ok()?;
    array.iter().all(|v| v.is_finite()).then_some(array)
}

/// Reads what places a file in a stack, from its header.
pub fn slice_info(path: &Path) -> Result<SliceInfo, ImageError> {
    let obj = open(path, true)?;
    let columns = uint(&obj, path, tags::COLUMNS, "Columns")?;
    let rows = uint(&obj, path, tags::ROWS, "Rows")?;
    let frames = match obj.element(tags::NUMBER_OF_FRAMES) {
        Ok(e) => e
            .to_int::<u32>()
            .map_err(|e| decode_err(path, format!("DICOM NumberOfFrames is not a number: {e}")))?,
        Err(_) => 1,
    };
    if frames == 0 {
        return Err(decode_err(path, "DICOM NumberOfFrames is 0"));
    }
    Ok(SliceInfo {
        frames,
        series: text(&obj, tags::SERIES_INSTANCE_UID),
        sop_instance: text(&obj, tags::SOP_INSTANCE_UID),
        modality: text(&obj, tags::MODALITY).unwrap_or_default(),
        rows,
        columns,
        position: floats::<3>(&obj, tags::IMAGE_POSITION_PATIENT),
        orientation: floats::<6>(&obj, tags::IMAGE_ORIENTATION_PATIENT),
        instance: obj
            .element(tags::INSTANCE_NUMBER)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok()),
        pixel_spacing: spacing(&obj, tags::PIXEL_SPACING),
    })
}

/// Decodes frame `frame` (from 0) like [`decode`].
pub fn decode_frame(
    path: &Path,
    frame: u32,
) -> Result<(DynamicImage, Option<GrayMapping>), ImageError> {
    let obj = open(path, false)?;
    let frames = match obj.element(tags::NUMBER_OF_FRAMES) {
        Ok(e) => e.to_int::<u32>().unwrap_or(1).max(1),
        Err(_) => 1,
    };
    if frame >= frames {
        return Err(decode_err(
            path,
            format!("frame {} asked, the file has {frames}", frame + 1),
        ));
    }
    check_declared_size(&obj, path, frames)?;
    // dicom-rs's decoders can panic on damaged compressed data (its RLE decoder indexes past
    // a segment's end: found by fuzzing); that is a refused file, not a crash.
    let pixels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(frame)
    }))
    .map_err(|panic| {
        decode_err(
            path,
            format!(
                "cannot decode DICOM pixel data: the decoder failed ({})",
                crate::panic_message(&panic)
            ),
        )
    })?
    .map_err(|e| decode_err(path, format!("cannot decode DICOM pixel data: {e}")))?;
    let (width, height) = (pixels.columns(), pixels.rows());
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    if pixels.samples_per_pixel() != 1 {
        // Colour: decoders hand back interleaved RGB (JPEG baseline converts YBR for us).
        let photometric = pixels.photometric_interpretation();
        if pixels.samples_per_pixel() != 3
            || !matches!(
                photometric,
                PhotometricInterpretation::Rgb | PhotometricInterpretation::YbrFull422
            )
        {
            return Err(decode_err(
                path,
                format!(
                    "DICOM colour images with {} samples per pixel in {photometric} are not supported",
                    pixels.samples_per_pixel()
                ),
            ));
        }
        let rgb: Vec<u8> = pixels
            .to_vec_frame(0)
            .map_err(|e| decode_err(path, format!("cannot read DICOM colour pixels: {e}")))?;
        let buf = image::RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| decode_err(path, "DICOM colour pixel data has the wrong size"))?;
        return Ok((DynamicImage::ImageRgb8(buf), None));
    }
    // Modality values (rescale slope/intercept or modality LUT applied), no VOI transform.
    let values: Vec<f64> = pixels
        .to_vec_frame(0)
        .map_err(|e| decode_err(path, format!("cannot read DICOM pixel values: {e}")))?;
    let expected = usize::try_from(u64::from(width) * u64::from(height)).unwrap_or(usize::MAX);
    if values.len() < expected {
        return Err(decode_err(
            path,
            format!(
                "DICOM pixel data holds {} values, {width}x{height} needs {expected}",
                values.len()
            ),
        ));
    }
    let (min, max) = values[..expected]
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !min.is_finite() {
        return Err(decode_err(path, "DICOM pixel values are not finite"));
    }
    // Integral values keep one stored step per unit whenever the range fits in 16 bits.
    let offset = if min < 0.0 { min.floor() } else { 0.0 };
    let span = max - offset;
    let scale = if span > f64::from(u16::MAX) {
        span / f64::from(u16::MAX)
    } else {
        1.0
    };
    let inverted = *pixels.photometric_interpretation() == PhotometricInterpretation::Monochrome1;
    let data: Vec<u16> = values[..expected]
        .iter()
        .map(|&v| {
            let s = ((v - offset) / scale)
                .round()
                .clamp(0.0, f64::from(u16::MAX));
            // In range after the clamp.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let s = s as u16;
            if inverted { u16::MAX - s } else { s }
        })
        .collect();
    let windows = pixels
        .window()
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .filter(|w| w.width > 0.0 && w.center.is_finite() && w.width.is_finite())
        .enumerate()
        .map(|(i, w)| DicomWindow {
            name: window_name(&obj, i),
            from_file: true,
            center: w.center,
            width: w.width,
        })
        .collect();
    let modality = obj
        .element(tags::MODALITY)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let unit = if modality == "CT" { "HU" } else { "" };
    let mut windows: Vec<DicomWindow> = windows;
    if unit == "HU" {
        // The usual CT windows, after the file's own.
        for (name, center, width) in CT_WINDOWS {
            windows.push(DicomWindow {
                name: (*name).to_owned(),
                from_file: false,
                center: *center,
                width: *width,
            });
        }
    }
    let series = text(&obj, tags::SERIES_INSTANCE_UID);
    let pixel_spacing =
        spacing(&obj, tags::PIXEL_SPACING).or_else(|| spacing(&obj, tags::IMAGER_PIXEL_SPACING));
    let mapping = GrayMapping {
        offset,
        scale,
        inverted,
        windows,
        unit,
        modality,
        series,
        pixel_spacing,
    };
    let buf = ImageBuffer::<Luma<u16>, _>::from_raw(width, height, data)
        .ok_or_else(|| decode_err(path, "DICOM pixel buffer has the wrong size"))?;
    Ok((DynamicImage::ImageLuma16(buf), Some(mapping)))
}

/// The window (centre, width in modality units) a 16-bit DICOM image is shown to a model in:
/// `wanted` names one of the file's windows or a standard CT window ("lung"), or gives
/// "LEVEL/WIDTH"; without it, the file's own first window (soft tissue for CT without one),
/// else the image's full range.
pub fn model_window(
    m: &GrayMapping,
    pixels: &[u16],
    wanted: Option<&str>,
) -> Result<(f64, f64), String> {
    if let Some(w) = wanted.map(str::trim).filter(|w| !w.is_empty()) {
        if let Some((c, width)) = w.split_once('/')
            && let (Ok(c), Ok(width)) = (c.trim().parse::<f64>(), width.trim().parse::<f64>())
        {
            if width >= 1.0 && c.is_finite() && width.is_finite() {
                return Ok((c, width));
            }
            return Err(format!("window {w}: the width must be at least 1"));
        }
        return m
            .windows
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(w))
            .map(|x| (x.center, x.width))
            .ok_or_else(|| {
                let names: Vec<&str> = m.windows.iter().map(|x| x.name.as_str()).collect();
                format!(
                    "no window called {w:?} in this file (it has: {}); give LEVEL/WIDTH instead",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            });
    }
    let own = m.windows.iter().find(|x| x.from_file).or_else(|| {
        m.windows
            .iter()
            .find(|x| x.name == CT_DEFAULT_WINDOW && !x.from_file)
    });
    if let Some(x) = own {
        return Ok((x.center, x.width));
    }
    let (lo, hi) = pixels
        .iter()
        .fold((u16::MAX, u16::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return Err("the image has no pixels".into());
    }
    let (a, b) = (m.value(f64::from(lo)), m.value(f64::from(hi)));
    let (a, b) = (a.min(b), a.max(b));
    // The linear function maps [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2] onto the output range.
    let width = (b - a + 1.0).max(1.0);
    Ok((a + 0.5 + (width - 1.0) / 2.0, width))
}

/// 16-bit DICOM pixels to 8 bits through a window, with DICOM's linear VOI function
/// (PS3.3 C.11.2.1.2.1, as pydicom's `apply_windowing` computes it) on modality values,
/// rounded to the nearest level; `MONOCHROME1` images stay as displayed (brighter is higher).
pub fn to_8bit(
    buf: &ImageBuffer<Luma<u16>, Vec<u16>>,
    m: &GrayMapping,
    center: f64,
    width: f64,
) -> image::GrayImage {
    let lut: Vec<u8> = (0..=u16::MAX)
        .map(|stored| {
            let x = m.value(f64::from(stored));
            let y = linear_voi(x, center, width);
            // The file was flipped on decode so that brighter is higher: `value` undid that
            // to get the modality value; the output is shown, so flip back.
            let y = if m.inverted { 255.0 - y } else { y };
            // In 0..=255 by construction.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let y = y.round().clamp(0.0, 255.0) as u8;
            y
        })
        .collect();
    let (w, h) = buf.dimensions();
    let data = buf.as_raw().iter().map(|&v| lut[usize::from(v)]).collect();
    image::GrayImage::from_raw(w, h, data).unwrap_or_else(|| image::GrayImage::new(w, h))
}

/// DICOM's linear VOI LUT function onto 0..=255.
pub fn linear_voi(x: f64, center: f64, width: f64) -> f64 {
    let (c, w) = (center - 0.5, (width - 1.0).max(0.0));
    if x <= c - w / 2.0 {
        0.0
    } else if x > c + w / 2.0 || w == 0.0 {
        255.0
    } else {
        ((x - c) / w + 0.5) * 255.0
    }
}

/// A text element, trimmed; `None` when absent or empty.
fn text(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_owned())
        .filter(|s| !s.is_empty())
}

/// A (row, column) spacing in mm; `None` unless both are positive and finite.
fn spacing(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<(f64, f64)> {
    let values = obj.element(tag).ok()?.to_multi_float64().ok()?;
    match values.as_slice() {
        [row, col, ..] if *row > 0.0 && *col > 0.0 && row.is_finite() && col.is_finite() => {
            Some((*row, *col))
        }
        _ => None,
    }
}

/// "Window Center & Width Explanation" for window `i`, or a numbered name.
fn window_name(obj: &DefaultDicomObject, i: usize) -> String {
    obj.element(tags::WINDOW_CENTER_WIDTH_EXPLANATION)
        .ok()
        .and_then(|e| e.to_multi_str().ok())
        .and_then(|names| names.get(i).map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("DICOM window {}", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> Option<std::path::PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/third_party/dicom")
            .join(name);
        assert!(
            p.exists(),
            "{} not found: run scripts/fetch-testdata.sh (scripts/test.sh does)",
            p.display()
        );
        Some(p)
    }

    #[test]
    fn ct_decodes_to_hounsfield_units_with_its_window() {
        let Some(p) = testdata("CT_small.dcm") else {
            return;
        };
        assert!(is_dicom(&p));
        let info = probe(&p).expect("probe");
        assert_eq!((info.width, info.height), (128, 128));
        let (img, mapping) = decode(&p).expect("decode");
        let mapping = mapping.expect("grayscale");
        let DynamicImage::ImageLuma16(buf) = img else {
            panic!("16-bit gray expected");
        };
        assert_eq!(buf.dimensions(), (128, 128));
        assert_eq!(mapping.unit, "HU");
        assert!(!mapping.inverted);
        // pydicom: CT_small has RescaleSlope 1, RescaleIntercept -1024 and stored values
        // 0..=2436 or so: every stored step is one HU and HU = stored + offset.
        assert!((mapping.scale - 1.0).abs() < f64::EPSILON);
        let raw = open(&p, false).expect("open");
        let decoded = raw.decode_pixel_data().expect("pixels");
        let hu: Vec<f64> = decoded.to_vec_frame(0).expect("values");
        for (i, &v) in hu.iter().enumerate().step_by(97) {
            let (x, y) = (i as u32 % 128, i as u32 / 128);
            let stored = f64::from(buf.get_pixel(x, y)[0]);
            assert!((mapping.value(stored) - v).abs() < 1e-6, "pixel {i}");
        }
        // CT_small names no window of its own: the standard CT windows are offered.
        let names: Vec<&str> = mapping.windows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "brain",
                "subdural",
                "stroke",
                "soft tissue",
                "lung",
                "mediastinum",
                "bone",
                "liver"
            ]
        );
        assert!(mapping.windows.iter().all(|w| !w.from_file));
        assert_eq!(mapping.modality, "CT");
        // pydicom: CT_small's PixelSpacing is [0.661468, 0.661468] and it has a series UID.
        let (row, col) = mapping.pixel_spacing.expect("spacing");
        assert!((row - 0.661468).abs() < 1e-6 && (col - 0.661468).abs() < 1e-6);
        assert!(
            mapping
                .series
                .as_deref()
                .is_some_and(|s| s.starts_with("1.3.6.1"))
        );
    }

    #[test]
    fn mr_decodes_to_16_bit() {
        let Some(p) = testdata("MR_small.dcm") else {
            return;
        };
        let (img, mapping) = decode(&p).expect("decode");
        assert!(matches!(img, DynamicImage::ImageLuma16(_)));
        assert_eq!((img.width(), img.height()), (64, 64));
        let mapping = mapping.expect("grayscale");
        assert_eq!(mapping.unit, "");
        // MR_small: Window Center 600, Window Width 1600.
        assert_eq!(mapping.windows.len(), 1);
        assert!(mapping.windows[0].from_file);
        assert_eq!(mapping.modality, "MR");
        assert!((mapping.windows[0].center - 600.0).abs() < 1e-9);
        assert!((mapping.windows[0].width - 1600.0).abs() < 1e-9);
    }

    #[test]
    fn a_truncated_dicom_file_is_refused_with_its_name() {
        let Some(p) = testdata("CT_small.dcm") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cut = dir.path().join("cut.dcm");
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
        let err = decode(&cut).expect_err("truncated");
        assert!(err.to_string().contains("cut.dcm"), "{err}");
    }

    #[test]
    fn add_finds_dicom_files_with_and_without_an_extension() {
        let (Some(ct), Some(mr)) = (testdata("CT_small.dcm"), testdata("MR_small.dcm")) else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let series = dir.path().join("series");
        std::fs::create_dir(&series).expect("mkdir");
        std::fs::copy(&ct, series.join("IM0001")).expect("copy");
        std::fs::copy(&mr, series.join("mr.dcm")).expect("copy");
        std::fs::write(series.join("notes"), "not an image").expect("write");
        let mut project =
            crate::store::Project::create(&dir.path().join("p.loupe")).expect("project");
        let report =
            crate::ingest::add(&mut project, &[series], &crate::ingest::NoProgress).expect("add");
        assert_eq!(report.added, 2, "{report:?}");
        let mut sizes: Vec<(String, u32, u32)> = project
            .list_images(&crate::store::ImageFilter::default())
            .expect("images")
            .into_iter()
            .map(|r| (r.path, r.width, r.height))
            .collect();
        sizes.sort();
        assert_eq!(
            sizes,
            [
                ("series/IM0001".to_owned(), 128, 128),
                ("series/mr.dcm".to_owned(), 64, 64)
            ]
        );
    }

    #[test]
    fn the_linear_voi_function_is_dicoms() {
        // PS3.3 C.11.2.1.2.1 with c = 40, w = 400: below 40 - 0.5 - 199.5 = -160 is 0,
        // above 40 - 0.5 + 199.5 = 239 is 255, linear between.
        assert!((linear_voi(-160.0, 40.0, 400.0) - 0.0).abs() < 1e-12);
        assert!((linear_voi(-159.0, 40.0, 400.0) - (1.0 / 399.0 + 0.0) * 255.0).abs() < 1e-9);
        assert!((linear_voi(39.5, 40.0, 400.0) - 127.5).abs() < 1e-9);
        assert!((linear_voi(239.0, 40.0, 400.0) - 255.0).abs() < 1e-9);
        assert!((linear_voi(239.5, 40.0, 400.0) - 255.0).abs() < 1e-12);
        // Width 1: a threshold at c - 0.5.
        assert!((linear_voi(0.0, 1.0, 1.0) - 0.0).abs() < 1e-12);
        assert!((linear_voi(1.0, 1.0, 1.0) - 255.0).abs() < 1e-12);
    }

    #[test]
    fn a_ct_reaches_the_model_in_its_soft_tissue_window() {
        let Some(p) = testdata("CT_small.dcm") else {
            return;
        };
        let (img, mapping) = decode(&p).expect("decode");
        let m = mapping.expect("gray");
        let DynamicImage::ImageLuma16(buf) = img else {
            panic!("16-bit");
        };
        assert_eq!(model_window(&m, buf.as_raw(), None), Ok((40.0, 400.0)));
        assert_eq!(
            model_window(&m, buf.as_raw(), Some("LUNG")),
            Ok((-600.0, 1500.0))
        );
        assert_eq!(
            model_window(&m, buf.as_raw(), Some("50/350")),
            Ok((50.0, 350.0))
        );
        assert!(
            model_window(&m, buf.as_raw(), Some("sinus"))
                .expect_err("no such window")
                .contains("soft tissue")
        );
        let gray = to_8bit(&buf, &m, 40.0, 400.0);
        for (i, (&stored, &out)) in buf.as_raw().iter().zip(gray.as_raw()).enumerate() {
            let hu = m.value(f64::from(stored));
            let expected = linear_voi(hu, 40.0, 400.0).round();
            assert!(
                (f64::from(out) - expected).abs() < 1e-9,
                "pixel {i}: {hu} HU"
            );
        }
        // Not the 16-bit values divided by 257 (nearly black): soft tissue is mid-grey.
        let mean = gray.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / 16384.0;
        assert!(mean > 40.0, "{mean}");
    }

    #[test]
    fn mapping_round_trips_and_inverts() {
        let m = GrayMapping {
            offset: -1024.0,
            scale: 1.0,
            inverted: false,
            windows: vec![],
            unit: "HU",
            modality: "CT".into(),
            series: None,
            pixel_spacing: None,
        };
        assert!((m.value(m.stored(40.0)) - 40.0).abs() < 1e-9);
        let inv = GrayMapping {
            inverted: true,
            ..m.clone()
        };
        assert!((inv.value(inv.stored(40.0)) - 40.0).abs() < 1e-9);
        let w = DicomWindow {
            name: "x".into(),
            from_file: true,
            center: 40.0,
            width: 400.0,
        };
        let (lo, hi) = inv.stored_window(&w);
        assert!(lo < hi);
        assert!((hi - lo - 400.0).abs() < 1e-9);
    }
}

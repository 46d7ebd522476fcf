//! Reading image files: header probing (dimensions without a full decode, EXIF orientation),
//! full decoding to 8- or 16-bit pixels, and hashing. DICOM files go through [`dicom`].

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, metadata::Orientation};

pub mod dicom;
pub mod lossless;
pub mod tiles;

pub use dicom::{DicomWindow, GrayMapping};

/// Why an image could not be read. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot decode the image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: image is empty (0x0)")]
    Empty { path: PathBuf },
}

/// What a header tells without decoding pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width and height as displayed, after EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// Stored width and height, before orientation.
    pub raw_width: u32,
    pub raw_height: u32,
    /// EXIF orientation 1..=8 (1 = as stored).
    pub orientation: u8,
}

/// How one frame of a multi-frame file is named among a project's images: the file's path, then
/// `#frame=` and the frame number counted from 1, four digits (`ct/cine.dcm#frame=0003`).
pub const FRAME_MARK: &str = "#frame=";

/// The image path of frame `index` (from 0) of the file at `file`.
pub fn frame_path(file: &str, index: u32) -> String {
    format!("{file}{FRAME_MARK}{:04}", u64::from(index) + 1)
}

/// Splits an image path into its file and frame index (from 0): `a.dcm#frame=0003` is frame 2
/// of `a.dcm`. A path naming a file that exists is that file, whatever its name.
pub fn split_frame(path: &Path) -> (std::borrow::Cow<'_, Path>, Option<u32>) {
    use std::borrow::Cow;
    let Some(text) = path.to_str() else {
        return (Cow::Borrowed(path), None);
    };
    let Some(at) = text.rfind(FRAME_MARK) else {
        return (Cow::Borrowed(path), None);
    };
    let number = &text[at + FRAME_MARK.len()..];
    match number.parse::<u32>() {
        Ok(n) if n >= 1 && !number.starts_with('+') && !path.exists() => {
            (Cow::Owned(PathBuf::from(&text[..at])), Some(n - 1))
        }
        _ => (Cow::Borrowed(path), None),
    }
}

/// The frames of a file: NumberOfFrames of a DICOM file, the pages of a TIFF, 1 otherwise.
pub fn frame_count(path: &Path) -> Result<u32, ImageError> {
    if dicom::is_dicom(path) {
        return dicom::slice_info(path).map(|s| s.frames);
    }
    if tiles::is_tiff(path) {
        return tiff_pages(path);
    }
    Ok(1)
}

fn tiff_decoder(
    path: &Path,
) -> Result<tiff::decoder::Decoder<BufReader<std::fs::File>>, ImageError> {
    let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tiff::decoder::Decoder::new(BufReader::new(file))
        .map_err(|e| decode_err(path, format!("TIFF: {e}")))
}

/// The pages (images) of a TIFF file of the first page's size: the frames of a multi-page
/// stack. The reduced levels of a pyramidal TIFF (smaller pages after the first) are not frames.
fn tiff_pages(path: &Path) -> Result<u32, ImageError> {
    let mut decoder = tiff_decoder(path)?;
    let size = decoder
        .dimensions()
        .map_err(|e| decode_err(path, format!("TIFF: {e}")))?;
    let mut pages = 1u32;
    while decoder.more_images() {
        decoder
            .next_image()
            .map_err(|e| decode_err(path, format!("TIFF page {}: {e}", pages + 1)))?;
        if decoder.dimensions().ok() != Some(size) {
            break;
        }
        pages += 1;
        if pages > 100_000 {
            return Err(decode_err(path, "TIFF has more than 100000 pages"));
        }
    }
    Ok(pages)
}

/// A TIFF decoder at page `index` (from 0), and the page's size.
fn tiff_page(
    path: &Path,
    index: u32,
) -> Result<(tiff::decoder::Decoder<BufReader<std::fs::File>>, u32, u32), ImageError> {
    let page_err = |e: tiff::TiffError| decode_err(path, format!("TIFF page {}: {e}", index + 1));
    let mut decoder = tiff_decoder(path)?;
    decoder.seek_to_image(index as usize).map_err(page_err)?;
    let (width, height) = decoder.dimensions().map_err(page_err)?;
    Ok((decoder, width, height))
}

/// Decodes page `index` (from 0) of a TIFF: 8- or 16-bit gray, RGB or RGBA.
fn decode_tiff_page(path: &Path, index: u32) -> Result<DynamicImage, ImageError> {
    use tiff::decoder::DecodingResult;
    let (mut decoder, width, height) = tiff_page(path, index)?;
    let colour = decoder
        .colortype()
        .map_err(|e| decode_err(path, format!("TIFF page {}: {e}", index + 1)))?;
    let data = decoder
        .read_image()
        .map_err(|e| decode_err(path, format!("TIFF page {}: {e}", index + 1)))?;
    let short = || {
        decode_err(
            path,
            format!("TIFF page {}: pixels do not fill the page", index + 1),
        )
    };
    use tiff::ColorType;
    let img = match (colour, data) {
        (ColorType::Gray(8), DecodingResult::U8(v)) => DynamicImage::ImageLuma8(
            image::ImageBuffer::from_raw(width, height, v).ok_or_else(short)?,
        ),
        (ColorType::Gray(16), DecodingResult::U16(v)) => DynamicImage::ImageLuma16(
            image::ImageBuffer::from_raw(width, height, v).ok_or_else(short)?,
        ),
        (ColorType::RGB(8), DecodingResult::U8(v)) => DynamicImage::ImageRgb8(
            image::ImageBuffer::from_raw(width, height, v).ok_or_else(short)?,
        ),
        (ColorType::RGBA(8), DecodingResult::U8(v)) => DynamicImage::ImageRgba8(
            image::ImageBuffer::from_raw(width, height, v).ok_or_else(short)?,
        ),
        (ColorType::RGB(16), DecodingResult::U16(v)) => DynamicImage::ImageRgb16(
            image::ImageBuffer::from_raw(width, height, v).ok_or_else(short)?,
        ),
        (other, _) => {
            return Err(decode_err(
                path,
                format!("TIFF page {}: {other:?} pages are not supported", index + 1),
            ));
        }
    };
    Ok(img)
}

/// Decodes frame `index` (from 0) of a multi-frame file (DICOM or TIFF).
fn decode_frame(
    path: &Path,
    index: u32,
) -> Result<(DynamicImage, Option<GrayMapping>), ImageError> {
    if dicom::is_dicom(path) {
        return dicom::decode_frame(path, index);
    }
    if tiles::is_tiff(path) {
        return decode_tiff_page(path, index).map(|img| (img, None));
    }
    if index == 0 {
        return decode_raster(path).map(|img| (img, None));
    }
    Err(decode_err(
        path,
        format!("has one frame; frame {} asked", index + 1),
    ))
}

fn orientation_code(o: Orientation) -> u8 {
    match o {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}

fn decode_err(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Reads dimensions and orientation from the file header. Does not decode pixels for PNG, JPEG,
/// TIFF, BMP, GIF or WebP.
pub fn probe(path: &Path) -> Result<ImageInfo, ImageError> {
    if let (file, Some(index)) = split_frame(path) {
        return probe_frame(&file, index);
    }
    if dicom::is_dicom(path) {
        return dicom::probe(path);
    }
    match probe_raster(path) {
        // TIFFs the `image` crate refuses (JPEG tiles in YCbCr, as slide scanners and vips
        // write them) are read as tiles: their size comes from the tile reader.
        Err(e) if tiles::is_tiff(path) => tiles::TiledImage::open_tiff(path)
            .map(|t| ImageInfo {
                width: t.width,
                height: t.height,
                raw_width: t.width,
                raw_height: t.height,
                orientation: 1,
            })
            .map_err(|_| e),
        other => other,
    }
}

fn probe_raster(path: &Path) -> Result<ImageInfo, ImageError> {
    let reader = ImageReader::open(path)
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if reader.format().is_none() {
        return Err(decode_err(path, "unrecognised file format"));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && lossless::file_is_lossless(path) {
        return lossless::probe(path);
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let (raw_width, raw_height) = decoder.dimensions();
    if raw_width == 0 || raw_height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    let orientation = decoder.orientation().map_or(1, orientation_code);
    let (width, height) = if orientation >= 5 {
        (raw_height, raw_width)
    } else {
        (raw_width, raw_height)
    };
    Ok(ImageInfo {
        width,
        height,
        raw_width,
        raw_height,
        orientation,
    })
}

/// The size of frame `index` of a multi-frame file (every frame of a DICOM file has the file's
/// size; a TIFF page has its own).
fn probe_frame(path: &Path, index: u32) -> Result<ImageInfo, ImageError> {
    let frames = frame_count(path)?;
    if index >= frames {
        return Err(decode_err(
            path,
            format!("frame {} asked, the file has {frames}", index + 1),
        ));
    }
    if tiles::is_tiff(path) && index > 0 {
        let (_, width, height) = tiff_page(path, index)?;
        return Ok(ImageInfo {
            width,
            height,
            raw_width: width,
            raw_height: height,
            orientation: 1,
        });
    }
    probe(path)
}

/// Decodes the whole image and applies its EXIF orientation, so pixels match what `probe`
/// reports as width and height.
pub fn decode(path: &Path) -> Result<DynamicImage, ImageError> {
    decode_with_mapping(path).map(|(img, _)| img)
}

/// [`decode`], plus how 16-bit gray values map to modality values for DICOM files.
pub fn decode_with_mapping(path: &Path) -> Result<(DynamicImage, Option<GrayMapping>), ImageError> {
    if let (file, Some(index)) = split_frame(path) {
        return decode_frame(&file, index);
    }
    if dicom::is_dicom(path) {
        return dicom::decode(path);
    }
    decode_raster(path).map(|img| (img, None))
}

/// [`decode`] for a model: a 16-bit DICOM image becomes 8-bit through a window (see
/// [`dicom::model_window`]: `window` names one, else the file's default), as a reader sees it;
/// every other image is as [`decode`] gives it.
pub fn decode_for_model(path: &Path, window: Option<&str>) -> Result<DynamicImage, ImageError> {
    match decode_with_mapping(path)? {
        (DynamicImage::ImageLuma16(buf), Some(m)) => {
            let (center, width) =
                dicom::model_window(&m, buf.as_raw(), window).map_err(|e| decode_err(path, e))?;
            Ok(DynamicImage::ImageLuma8(dicom::to_8bit(
                &buf, &m, center, width,
            )))
        }
        (img, _) => Ok(img),
    }
}

fn decode_raster(path: &Path) -> Result<DynamicImage, ImageError> {
    // The whole file is read once: every decoder needs all of it, and the JPEG checks below
    // look at the bytes before decoding.
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes.as_slice()))
        .with_guessed_format()
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if reader.format().is_none() {
        // Formats without a signature (e.g. TGA) are known by their extension, as
        // `ImageReader::open` does.
        if let Ok(format) = image::ImageFormat::from_path(path) {
            reader.set_format(format);
        }
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        // The JPEG decoder fills a cut-off file with grey instead of failing: refuse it here,
        // so a half-downloaded photo is never labelled as if it were whole.
        if !jpeg_is_complete(&bytes) {
            return Err(decode_err(
                path,
                "truncated JPEG: the file ends before its end-of-image marker",
            ));
        }
        if lossless::is_lossless(&bytes) {
            return lossless::decode(path, &bytes);
        }
        if let Some(img) = decode_jpeg_turbo(path, &bytes, 8)? {
            // The `image` crate's decoder only parses headers here, for the EXIF orientation.
            let orientation = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&bytes))
                .and_then(|mut d| d.orientation())
                .unwrap_or(Orientation::NoTransforms);
            return oriented(path, img, orientation);
        }
        // CMYK and YCCK: the `image` crate converts them to RGB.
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
    oriented(path, img, orientation)
}

fn oriented(
    path: &Path,
    mut img: DynamicImage,
    orientation: Orientation,
) -> Result<DynamicImage, ImageError> {
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(img)
}

/// The most bytes of pixels a JPEG may decode to (the `image` crate's default limit).
const DECODE_LIMIT_BYTES: u64 = 512 << 20;

/// Decodes a JPEG with libjpeg-turbo (the `mozjpeg` crate's decoder is libjpeg-turbo's), to RGB,
/// or to gray for grayscale files. Returns `Ok(None)` for CMYK and YCCK files, which libjpeg does
/// not convert to RGB.
///
/// Why not the `image` crate's decoder (zune-jpeg): its IDCT and colour conversion differ from
/// libjpeg-turbo's by up to 4 levels, and the reference pipelines models are trained and checked
/// with (Pillow, OpenCV) decode with libjpeg-turbo. Its default settings (accurate integer IDCT,
/// fancy upsampling) are Pillow's and OpenCV's, so pixels are bit-identical to theirs.
///
/// `eighths` scales the output by `eighths / 8` (8: full size); libjpeg still reads every
/// entropy-coded block, so a scaled decode checks the whole file at a fraction of the cost.
fn decode_jpeg_turbo(
    path: &Path,
    bytes: &[u8],
    eighths: u8,
) -> Result<Option<DynamicImage>, ImageError> {
    use mozjpeg::ColorSpace;
    // libjpeg reports a fatal error through `error_exit`, which the mozjpeg crate turns into an
    // unwind carrying the message (with `resume_unwind`, so no panic message is printed). Catch
    // it: a corrupt file is an error naming the file, never a crash.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Option<DynamicImage>> {
        let mut decompress = mozjpeg::Decompress::new_mem(bytes)?;
        decompress.scale(eighths);
        let too_large = || std::io::Error::other("image dimensions exceed 32 bits");
        let width = u32::try_from(decompress.width()).map_err(|_| too_large())?;
        let height = u32::try_from(decompress.height()).map_err(|_| too_large())?;
        let mismatch = || std::io::Error::other("decoded pixels do not fill the image");
        // The output size (scaled when `eighths` < 8).
        let output_size = |w: usize, h: usize| -> std::io::Result<(u32, u32)> {
            Ok((
                u32::try_from(w).map_err(|_| too_large())?,
                u32::try_from(h).map_err(|_| too_large())?,
            ))
        };
        // The `image` crate's default allocation limit, kept so a header claiming a huge image
        // is refused as it was before rather than exhausting memory.
        let channels = if decompress.color_space() == ColorSpace::JCS_GRAYSCALE {
            1
        } else {
            3
        };
        let samples = u64::from(width) * u64::from(height) * channels;
        if samples > DECODE_LIMIT_BYTES {
            return Err(std::io::Error::other(format!(
                "{width}x{height} needs {} MiB, more than the {} MiB limit",
                samples >> 20,
                DECODE_LIMIT_BYTES >> 20
            )));
        }
        match decompress.color_space() {
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => Ok(None),
            ColorSpace::JCS_GRAYSCALE => {
                let mut started = decompress.grayscale()?;
                let (w, h) = output_size(started.width(), started.height())?;
                let pixels = started.read_scanlines::<u8>()?;
                started.finish()?;
                let img = image::GrayImage::from_raw(w, h, pixels).ok_or_else(mismatch)?;
                Ok(Some(DynamicImage::ImageLuma8(img)))
            }
            _ => {
                let mut started = decompress.rgb()?;
                let (w, h) = output_size(started.width(), started.height())?;
                let pixels = started.read_scanlines::<u8>()?;
                started.finish()?;
                let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(mismatch)?;
                Ok(Some(DynamicImage::ImageRgb8(img)))
            }
        }
    });
    match decoded {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(decode_err(path, format!("JPEG: {e}"))),
        Err(payload) => {
            let message = crate::panic_message(&payload);
            let message = message
                .strip_prefix("libjpeg fatal error: ")
                .unwrap_or(&message);
            Err(decode_err(path, format!("JPEG: {message}")))
        }
    }
}

/// Walks a JPEG's markers (skipping segment payloads and entropy-coded scan data) and says
/// whether it reaches the end-of-image marker. Data after the marker (phones append videos to
/// "motion photos") does not matter; a file that is not a JPEG counts as complete.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let n = bytes.len();
    let mut i = 2;
    loop {
        // A marker: one or more 0xFF, then its code.
        while i < n && bytes[i] != 0xFF {
            i += 1;
        }
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return false;
        }
        let code = bytes[i];
        i += 1;
        match code {
            0xD9 => return true,
            // Restart markers, TEM and stuffed zeros carry no length.
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if i + 2 > n {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        if len < 2 || i + len > n {
            return false;
        }
        i += len;
        if code == 0xDA {
            // Scan data runs to the next marker that is not a stuffed zero or a restart.
            loop {
                let Some(off) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return false;
                };
                let j = i + off;
                match bytes.get(j + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => i = j + 2,
                    Some(_) => {
                        i = j;
                        break;
                    }
                }
            }
        }
    }
}

/// Images above this many pixels are checked by their header alone in [`verify`]: decoding
/// them whole would cost seconds and gigabytes each.
pub const VERIFY_DECODE_MAX_PIXELS: u64 = 100_000_000;

/// [`probe`], plus a check that the pixels decode: a file whose header is fine but whose data
/// is cut off or corrupt is refused here, when it is added, rather than when someone opens it.
/// JPEGs are decoded at 1/8 scale (every block is still read); images over
/// [`VERIFY_DECODE_MAX_PIXELS`] are checked by their header only.
pub fn verify(path: &Path) -> Result<ImageInfo, ImageError> {
    let info = probe(path)?;
    if u64::from(info.raw_width) * u64::from(info.raw_height) > VERIFY_DECODE_MAX_PIXELS {
        return Ok(info);
    }
    if dicom::is_dicom(path) {
        dicom::decode(path)?;
        return Ok(info);
    }
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(&[0xFF, 0xD8]) && !lossless::is_lossless(&bytes) {
        if !jpeg_is_complete(&bytes) {
            return Err(decode_err(
                path,
                "truncated JPEG: the file ends before its end-of-image marker",
            ));
        }
        if decode_jpeg_turbo(path, &bytes, 1)?.is_some() {
            return Ok(info);
        }
    }
    drop(bytes);
    decode_raster(path)?;
    Ok(info)
}

/// blake3 of a file's bytes (hex) and its size.
pub fn hash_file(path: &Path) -> Result<(String, u64), ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().to_hex().to_string(), total))
}

/// File extensions Loupe treats as images when scanning folders.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp", "pgm", "ppm", "pnm", "dcm", "dicom",
];

/// True when the path has an image extension (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, progressive_like_thumbnail: bool) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        if progressive_like_thumbnail {
            // Something after the end-of-image marker, as motion photos have.
            out.extend_from_slice(b"ftypmp42\xFF\xDA\x00\x04junk");
        }
        out
    }

    fn jpeg_with_exif_orientation(w: u32, h: u32, orientation: u8) -> Vec<u8> {
        use image::ImageEncoder;
        let img = image::RgbImage::from_fn(w, h, |x, _| {
            image::Rgb(if x < w / 2 { [250, 0, 0] } else { [0, 0, 250] })
        });
        // A big-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let exif = [
            b'M',
            b'M',
            0,
            42,
            0,
            0,
            0,
            8,
            0,
            1,
            0x01,
            0x12,
            0,
            3,
            0,
            0,
            0,
            1,
            0,
            orientation,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let mut out = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        encoder.set_exif_metadata(exif.to_vec()).expect("exif");
        encoder
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .expect("encode");
        out
    }

    fn decode_bytes(name: &str, bytes: &[u8]) -> Result<DynamicImage, ImageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        decode(&path)
    }

    #[test]
    fn jpegs_decode_with_libjpeg_turbo_keeping_orientation_and_gray() {
        let img =
            decode_bytes("rotated.jpg", &jpeg_with_exif_orientation(64, 32, 6)).expect("decodes");
        // Orientation 6: rotate 90 degrees clockwise, so the red left half is now on top.
        assert_eq!((img.width(), img.height()), (32, 64));
        let rgb = img.to_rgb8();
        assert!(rgb.get_pixel(16, 8)[0] > 200 && rgb.get_pixel(16, 8)[2] < 50);
        assert!(rgb.get_pixel(16, 56)[2] > 200 && rgb.get_pixel(16, 56)[0] < 50);

        let gray = image::GrayImage::from_fn(40, 24, |x, y| image::Luma([(x * 6 + y) as u8]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&gray)
            .expect("encode");
        let img = decode_bytes("gray.jpg", &bytes).expect("decodes");
        assert!(
            matches!(img, DynamicImage::ImageLuma8(_)),
            "{:?}",
            img.color()
        );
        assert_eq!((img.width(), img.height()), (40, 24));
    }

    #[test]
    fn cmyk_jpegs_fall_back_to_the_image_crate() {
        let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
        compress.set_size(16, 8);
        compress.set_quality(95.0);
        let mut started = compress.start_compress(Vec::new()).expect("start");
        // Adobe CMYK JPEGs store inverted values: 255 is no ink, so this is white.
        started
            .write_scanlines(&[255u8; 16 * 8 * 4])
            .expect("scanlines");
        let bytes = started.finish().expect("finish");
        let img = decode_bytes("cmyk.jpg", &bytes).expect("decodes");
        assert_eq!((img.width(), img.height()), (16, 8));
        assert_eq!(img.color(), image::ColorType::Rgb8);
    }

    #[test]
    fn a_corrupt_jpeg_is_an_error_naming_the_file_not_a_crash() {
        let mut bytes = jpeg(64, 48, false);
        // Break the frame header's length: libjpeg stops with a fatal error.
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline frame header");
        bytes[sof + 3] = 3;
        assert!(jpeg_is_complete(&bytes));
        let err = decode_bytes("corrupt.jpg", &bytes)
            .expect_err("corrupt")
            .to_string();
        assert!(
            err.contains("corrupt.jpg") && err.contains("JPEG: "),
            "{err}"
        );

        // A header claiming 60000x60000 pixels is refused before anything is allocated.
        let mut huge = jpeg(64, 48, false);
        let sof = huge
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline frame header");
        huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let err = decode_bytes("huge.jpg", &huge)
            .expect_err("too large")
            .to_string();
        assert!(err.contains("huge.jpg") && err.contains("limit"), "{err}");
    }

    #[test]
    fn whole_jpegs_are_complete_and_cut_ones_are_not() {
        let whole = jpeg(64, 48, false);
        assert!(jpeg_is_complete(&whole));
        assert!(jpeg_is_complete(&jpeg(64, 48, true)));
        for cut in [whole.len() - 2, whole.len() / 2, 200, 3] {
            assert!(!jpeg_is_complete(&whole[..cut]), "cut at {cut}");
        }
        // Not a JPEG: not this check's business.
        assert!(jpeg_is_complete(b"\x89PNG\r\n"));
    }

    #[test]
    fn a_truncated_jpeg_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = jpeg(64, 48, false);
        let ok = dir.path().join("ok.jpg");
        std::fs::write(&ok, &whole).expect("write");
        assert_eq!(decode(&ok).expect("decodes").width(), 64);
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).expect("write");
        let err = decode(&cut).expect_err("truncated").to_string();
        assert!(
            err.contains("cut.jpg") && err.contains("truncated JPEG"),
            "{err}"
        );
        // The header still probes: the file can be added and shows its error when opened.
        assert_eq!(probe(&cut).expect("probe").width, 64);
    }
}

//! Reading image files: header probing (dimensions without a full decode, EXIF orientation),
//! full decoding to 8- or 16-bit pixels, and hashing. DICOM files go through [`dicom`].

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, metadata::Orientation};

pub mod dicom;

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
    #[error("{path}: not a supported image: {reason}")]
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
    if dicom::is_dicom(path) {
        return dicom::probe(path);
    }
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

/// Decodes the whole image and applies its EXIF orientation, so pixels match what `probe`
/// reports as width and height.
pub fn decode(path: &Path) -> Result<DynamicImage, ImageError> {
    decode_with_mapping(path).map(|(img, _)| img)
}

/// [`decode`], plus how 16-bit gray values map to modality values for DICOM files.
pub fn decode_with_mapping(path: &Path) -> Result<(DynamicImage, Option<GrayMapping>), ImageError> {
    if dicom::is_dicom(path) {
        return dicom::decode(path);
    }
    decode_raster(path).map(|img| (img, None))
}

fn decode_raster(path: &Path) -> Result<DynamicImage, ImageError> {
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
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(img)
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

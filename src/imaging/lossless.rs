//! Lossless JPEG (ITU T.81 process 14, the `SOF3` frame): 2- to 16-bit samples, written by
//! libjpeg-turbo 3 (`cjpeg -lossless`), medical and scientific cameras, and DICOM's JPEG
//! Lossless transfer syntaxes. libjpeg-turbo 2, which decodes Loupe's other JPEGs, and the `image`
//! crate's decoder do not read it; the `jpeg-decoder` crate does.

use std::io::Read;
use std::path::Path;

use image::DynamicImage;

use super::{ImageError, ImageInfo, decode_err};

/// How far into a file the frame header is looked for: EXIF, ICC and XMP segments come first.
const HEAD_BYTES: u64 = 1 << 20;

/// The start-of-frame marker code of a JPEG (`0xC0`..=`0xCF` except DHT, JPG and DAC), read from
/// the first bytes of the file, or `None` when the bytes are not a JPEG or end before it.
pub fn frame_marker(bytes: &[u8]) -> Option<u8> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let code = bytes[i + 1];
        if code == 0xFF {
            // Fill byte before a marker.
            i += 1;
            continue;
        }
        if matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC) {
            return Some(code);
        }
        if code == 0xDA || code == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 2 + len;
    }
    None
}

/// True when the frame is lossless (`SOF3`, or the differential and arithmetic lossless frames
/// `SOF7`, `SOF11`, `SOF15`, which are refused by the decoder with their own reason).
pub fn is_lossless(bytes: &[u8]) -> bool {
    matches!(frame_marker(bytes), Some(0xC3 | 0xC7 | 0xCB | 0xCF))
}

/// True when the JPEG at `path` is lossless (reads only its first bytes).
pub fn file_is_lossless(path: &Path) -> bool {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .is_ok()
        && is_lossless(&head)
}

fn decoder_err(path: &Path, e: &jpeg_decoder::Error) -> ImageError {
    decode_err(path, format!("lossless JPEG: {e}"))
}

/// Width and height from the frame header (lossless JPEGs carry no EXIF orientation in
/// practice; one that did would be shown as stored).
pub fn probe(path: &Path) -> Result<ImageInfo, ImageError> {
    let file = std::fs::File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut decoder = jpeg_decoder::Decoder::new(std::io::BufReader::new(file));
    decoder.read_info().map_err(|e| decoder_err(path, &e))?;
    let info = decoder
        .info()
        .ok_or_else(|| decode_err(path, "lossless JPEG: no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
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

/// Decodes to 8-bit gray or RGB, or 16-bit gray for samples of more than 8 bits (values as
/// stored: a 12-bit image holds 0..=4095).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    // The same bound as every other decode (see `DECODE_LIMIT_BYTES`).
    decoder.set_max_decoding_buffer_size(
        usize::try_from(super::DECODE_LIMIT_BYTES).unwrap_or(usize::MAX),
    );
    let pixels = decoder.decode().map_err(|e| decoder_err(path, &e))?;
    let info = decoder
        .info()
        .ok_or_else(|| decode_err(path, "lossless JPEG: no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let short = || decode_err(path, "lossless JPEG: decoded pixels do not fill the image");
    let img = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(width, height, pixels).ok_or_else(short)?,
        ),
        jpeg_decoder::PixelFormat::RGB24 => DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width, height, pixels).ok_or_else(short)?,
        ),
        jpeg_decoder::PixelFormat::L16 => {
            // Native-endian pairs, as the decoder documents.
            let values: Vec<u16> = pixels
                .chunks_exact(2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .collect();
            DynamicImage::ImageLuma16(
                image::ImageBuffer::from_raw(width, height, values).ok_or_else(short)?,
            )
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err(decode_err(
                path,
                "lossless JPEG with four components (CMYK) is not supported",
            ));
        }
    };
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(img)
}

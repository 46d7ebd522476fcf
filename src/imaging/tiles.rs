//! Images too big to decode at once, read as tiles of a pyramid.
//!
//! A tiled TIFF or BigTIFF (what slide scanners and `vips tiffsave --tile --pyramid` write) is
//! read directly, tile by tile: every tiled directory whose size is a reduction of the first is
//! a level. Any other image above the threshold is decoded once, streamed in bands of rows
//! (JPEG, PNG and TIFF strips are never held whole; other formats are decoded whole once),
//! into a tiled pyramid in a cache folder, a BigTIFF written by [`PyramidWriter`], which is then
//! read the same way.
//!
//! Everything here is 8 bits per sample; tiles come out as RGBA (for the GPU) and regions as
//! RGB (for models). Reads are safe from many threads at once: each takes a decoder from a
//! small pool.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};
use parking_lot::Mutex;
use tiff::ColorType;
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};

use super::ImageError;

/// Side of the tiles the pyramid cache writes.
pub const CACHE_TILE: u32 = 256;

/// Images with more pixels than this are read as tiles (64 megapixels).
pub const DEFAULT_THRESHOLD_PIXELS: u64 = 64_000_000;

/// When to read an image as tiles, and where the pyramid cache lives.
#[derive(Clone, Debug, PartialEq)]
pub struct TileSettings {
    /// Above this many pixels an image is tiled.
    pub threshold_pixels: u64,
    /// A side longer than this (the GPU's largest texture) is tiled too.
    pub max_side: u32,
    /// Where pyramids of images that are not tiled TIFFs are written.
    pub cache_dir: PathBuf,
}

impl Default for TileSettings {
    /// The threshold from `LOUPE_TILE_THRESHOLD_MP` (megapixels) if set, else 64 MP; the cache
    /// in `LOUPE_CACHE_DIR` if set, else the OS's cache folder.
    fn default() -> Self {
        let threshold_pixels = std::env::var("LOUPE_TILE_THRESHOLD_MP")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|mp| mp.is_finite() && *mp >= 0.0)
            .map_or(DEFAULT_THRESHOLD_PIXELS, |mp| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let px = (mp * 1e6) as u64;
                px
            });
        Self {
            threshold_pixels,
            max_side: 16_384,
            cache_dir: default_cache_dir(),
        }
    }
}

impl TileSettings {
    /// True when an image of this size is read as tiles.
    pub fn is_tiled(&self, width: u32, height: u32) -> bool {
        u64::from(width) * u64::from(height) > self.threshold_pixels
            || width > self.max_side
            || height > self.max_side
    }
}

/// `LOUPE_CACHE_DIR/pyramids`, else the OS's cache folder for Loupe.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOUPE_CACHE_DIR") {
        return PathBuf::from(dir).join("pyramids");
    }
    directories::ProjectDirs::from("org", "loupe", "loupe").map_or_else(
        || std::env::temp_dir().join("loupe-cache").join("pyramids"),
        |d| d.cache_dir().join("pyramids"),
    )
}

/// One level of a pyramid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileLevel {
    pub width: u32,
    pub height: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    /// Level-0 pixels per pixel of this level, along x and y.
    pub scale_x: f64,
    pub scale_y: f64,
    /// The TIFF directory holding it.
    ifd: usize,
}

impl TileLevel {
    pub fn tiles_across(&self) -> u32 {
        self.width.div_ceil(self.tile_width)
    }

    pub fn tiles_down(&self) -> u32 {
        self.height.div_ceil(self.tile_height)
    }
}

/// The pixels of one tile, cropped to the image (edge tiles are smaller).
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub width: u32,
    pub height: u32,
    /// RGBA, rows top to bottom.
    pub rgba: Vec<u8>,
}

type TiffDecoder = Decoder<BufReader<File>>;

/// A tiled pyramid on disk, read tile by tile.
pub struct TiledImage {
    path: PathBuf,
    /// Level 0's size.
    pub width: u32,
    pub height: u32,
    /// Finest first.
    levels: Vec<TileLevel>,
    /// Idle decoders with the directory each has loaded.
    pool: Mutex<Vec<(usize, TiffDecoder)>>,
}

impl std::fmt::Debug for TiledImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiledImage")
            .field("path", &self.path)
            .field("levels", &self.levels)
            .finish_non_exhaustive()
    }
}

fn decode_err(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    // Tile offset tables of big slides pass tiff's 1 MiB default.
    limits.ifd_value_size = 256 << 20;
    limits
}

fn open_decoder(path: &Path) -> Result<TiffDecoder, ImageError> {
    let file = File::open(path).map_err(io_err(path))?;
    guarded(path, || {
        Decoder::new(BufReader::with_capacity(1 << 16, file))
            .map(|d| d.with_limits(limits()))
            .map_err(|e| decode_err(path, e))
    })
}

/// Runs a call into the `tiff` crate, whose accessors have `expect`s of their own, turning a
/// panic into an error for this file.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(decode_err(path, crate::panic_message(&p))))
}

/// Samples per pixel of an 8-bit colour type the tile reader converts, or why not.
fn samples_of(color: ColorType) -> Result<usize, String> {
    match color {
        ColorType::Gray(8) => Ok(1),
        ColorType::GrayA(8) => Ok(2),
        ColorType::RGB(8) | ColorType::YCbCr(8) => Ok(3),
        ColorType::RGBA(8) => Ok(4),
        other => Err(format!(
            "{other:?} is not supported for tiled reading (8-bit gray, RGB or RGBA only)"
        )),
    }
}

/// JPEG-compressed TIFF tiles (what vips and slide scanners write) come out of the `tiff`
/// crate as YCbCr; JFIF's full-range conversion makes them RGB.
fn ycbcr_to_rgb(data: &mut [u8]) {
    for p in data.chunks_exact_mut(3) {
        let y = f32::from(p[0]);
        let cb = f32::from(p[1]) - 128.0;
        let cr = f32::from(p[2]) - 128.0;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        p[0] = clamp(y + 1.402 * cr);
        p[1] = clamp(y - 0.344_136 * cb - 0.714_136 * cr);
        p[2] = clamp(y + 1.772 * cb);
    }
}

/// True when `path` starts like a TIFF or BigTIFF.
pub fn is_tiff(path: &Path) -> bool {
    let mut head = [0u8; 4];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && matches!(head, [b'I', b'I', 42 | 43, 0] | [b'M', b'M', 0, 42 | 43])
}

impl TiledImage {
    /// Opens a tiled TIFF and finds its levels. Errors when the first directory is not tiled
    /// 8-bit gray, RGB or RGBA.
    pub fn open_tiff(path: &Path) -> Result<Self, ImageError> {
        let mut decoder = open_decoder(path)?;
        let mut levels: Vec<TileLevel> = Vec::new();
        let mut ifd = 0usize;
        loop {
            let level = guarded(path, || {
                let (w, h) = decoder.dimensions().map_err(|e| decode_err(path, e))?;
                let color = decoder.colortype().map_err(|e| decode_err(path, e))?;
                let tiled = decoder.get_chunk_type() == ChunkType::Tile;
                Ok((w, h, samples_of(color), tiled, decoder.chunk_dimensions()))
            })?;
            let (w, h, samples, tiled, (tw, th)) = level;
            if ifd == 0 {
                if let Err(why) = samples {
                    return Err(decode_err(path, why));
                }
                if !tiled {
                    return Err(decode_err(path, "the TIFF is stored in strips, not tiles"));
                }
                if w == 0 || h == 0 {
                    return Err(ImageError::Empty {
                        path: path.to_path_buf(),
                    });
                }
            }
            let (w0, h0) = levels.first().map_or((w, h), |l| (l.width, l.height));
            let smaller = levels.last().is_none_or(|l| w < l.width && h < l.height);
            // A reduction keeps the aspect ratio (within the rounding of each halving); other
            // directories (a label or macro photo in a slide) are not levels.
            let same_shape = (f64::from(w0) / f64::from(w) - f64::from(h0) / f64::from(h)).abs()
                < 0.02 * f64::from(w0) / f64::from(w);
            if tiled && samples.is_ok() && w > 0 && h > 0 && smaller && same_shape {
                levels.push(TileLevel {
                    width: w,
                    height: h,
                    tile_width: tw.max(1),
                    tile_height: th.max(1),
                    scale_x: f64::from(w0) / f64::from(w),
                    scale_y: f64::from(h0) / f64::from(h),
                    ifd,
                });
            }
            if !decoder.more_images() {
                break;
            }
            ifd += 1;
            guarded(path, || {
                decoder.next_image().map_err(|e| decode_err(path, e))
            })?;
        }
        let Some(first) = levels.first().copied() else {
            return Err(decode_err(path, "no tiled level found"));
        };
        Ok(Self {
            path: path.to_path_buf(),
            width: first.width,
            height: first.height,
            levels,
            pool: Mutex::new(vec![(ifd, decoder)]),
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finest first.
    pub fn levels(&self) -> &[TileLevel] {
        &self.levels
    }

    /// The level to show at `zoom` screen pixels per image pixel: the coarsest one that is still
    /// at least as fine as the screen.
    pub fn level_for_zoom(&self, zoom: f64) -> usize {
        let wanted = 1.0 / zoom.max(1e-9);
        let mut best = 0;
        for (i, l) in self.levels.iter().enumerate() {
            if l.scale_x <= wanted * 1.001 {
                best = i;
            }
        }
        best
    }

    fn with_decoder<T>(
        &self,
        ifd: usize,
        f: impl FnOnce(&mut TiffDecoder) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let taken = {
            let mut pool = self.pool.lock();
            let at = pool
                .iter()
                .position(|(i, _)| *i == ifd)
                .or_else(|| pool.len().checked_sub(1));
            at.map(|i| pool.swap_remove(i))
        };
        let (mut at_ifd, mut decoder) = match taken {
            Some(found) => found,
            None => (0, open_decoder(&self.path)?),
        };
        if at_ifd != ifd {
            guarded(&self.path, || {
                decoder
                    .seek_to_image(ifd)
                    .map_err(|e| decode_err(&self.path, e))
            })?;
            at_ifd = ifd;
        }
        let result = guarded(&self.path, || f(&mut decoder));
        if result.is_ok() {
            let mut pool = self.pool.lock();
            if pool.len() < 8 {
                pool.push((at_ifd, decoder));
            }
        }
        result
    }

    /// Reads one tile of `level` as RGBA, cropped to the level's size.
    pub fn read_tile(&self, level: usize, tx: u32, ty: u32) -> Result<Tile, ImageError> {
        let Some(l) = self.levels.get(level).copied() else {
            return Err(decode_err(&self.path, format!("no level {level}")));
        };
        if tx >= l.tiles_across() || ty >= l.tiles_down() {
            return Err(decode_err(
                &self.path,
                format!("no tile ({tx}, {ty}) at level {level}"),
            ));
        }
        let path = &self.path;
        self.with_decoder(l.ifd, |d| {
            let color = d.colortype().map_err(|e| decode_err(path, e))?;
            let samples = samples_of(color).map_err(|e| decode_err(path, e))?;
            let index = ty * l.tiles_across() + tx;
            let (cw, ch) = d.chunk_data_dimensions(index);
            let mut data = match d.read_chunk(index).map_err(|e| decode_err(path, e))? {
                DecodingResult::U8(v) => v,
                _ => return Err(decode_err(path, "tile is not 8-bit")),
            };
            if color == ColorType::YCbCr(8) {
                ycbcr_to_rgb(&mut data);
            }
            let pixels = cw as usize * ch as usize;
            if data.len() < pixels * samples {
                return Err(decode_err(
                    path,
                    format!("tile ({tx}, {ty}) of level {level} is short"),
                ));
            }
            Ok(Tile {
                width: cw,
                height: ch,
                rgba: to_rgba(&data[..pixels * samples], samples),
            })
        })
    }

    /// The pixels of `width` x `height` at (`x`, `y`) of `level`, as RGB (the part outside
    /// the level is black).
    pub fn read_region(
        &self,
        level: usize,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<RgbImage, ImageError> {
        let Some(l) = self.levels.get(level).copied() else {
            return Err(decode_err(&self.path, format!("no level {level}")));
        };
        let mut out = RgbImage::new(width, height);
        if width == 0 || height == 0 || x >= l.width || y >= l.height {
            return Ok(out);
        }
        let x1 = (x + width).min(l.width);
        let y1 = (y + height).min(l.height);
        for ty in y / l.tile_height..y1.div_ceil(l.tile_height) {
            for tx in x / l.tile_width..x1.div_ceil(l.tile_width) {
                let tile = self.read_tile(level, tx, ty)?;
                let (ox, oy) = (tx * l.tile_width, ty * l.tile_height);
                for row in 0..tile.height {
                    let iy = oy + row;
                    if iy < y || iy >= y1 {
                        continue;
                    }
                    for col in 0..tile.width {
                        let ix = ox + col;
                        if ix < x || ix >= x1 {
                            continue;
                        }
                        let s = ((row * tile.width + col) * 4) as usize;
                        out.put_pixel(
                            ix - x,
                            iy - y,
                            image::Rgb([tile.rgba[s], tile.rgba[s + 1], tile.rgba[s + 2]]),
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// The finest level whose longest side is at most `max_side` (else the coarsest), read
    /// whole, with its level-0 pixels per pixel (x, y).
    pub fn overview(&self, max_side: u32) -> Result<(RgbImage, f64, f64), ImageError> {
        let index = self
            .levels
            .iter()
            .position(|l| l.width.max(l.height) <= max_side)
            .unwrap_or(self.levels.len() - 1);
        let l = self.levels[index];
        let img = self.read_region(index, 0, 0, l.width, l.height)?;
        Ok((img, l.scale_x, l.scale_y))
    }
}

fn to_rgba(data: &[u8], samples: usize) -> Vec<u8> {
    match samples {
        4 => data.to_vec(),
        3 => data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        2 => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        _ => data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
    }
}

fn to_rgb(data: &[u8], samples: usize) -> Vec<u8> {
    match samples {
        3 => data.to_vec(),
        4 => data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        2 => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        _ => data.iter().flat_map(|&g| [g, g, g]).collect(),
    }
}

/// Opens `path` as tiles: a tiled TIFF with at least two levels (or one small enough to show
/// whole) directly, anything else through the pyramid cache in `settings.cache_dir`, built on
/// the first call (which takes as long as decoding the image once).
pub fn open(path: &Path, settings: &TileSettings) -> Result<TiledImage, ImageError> {
    if is_tiff(path)
        && let Ok(tiled) = TiledImage::open_tiff(path)
    {
        let coarsest = tiled.levels.last().map_or(0, |l| l.width.max(l.height));
        if coarsest <= 4 * CACHE_TILE {
            return Ok(tiled);
        }
        tracing::debug!(path = %path.display(), "tiled TIFF without a pyramid: building one");
    }
    let cached = cache_path(path, &settings.cache_dir)?;
    if let Ok(tiled) = TiledImage::open_tiff(&cached) {
        return Ok(tiled);
    }
    // One build at a time in this process: the canvas and the thumbnails may ask for the same
    // image at once, and the second should read what the first wrote.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock();
    if let Ok(tiled) = TiledImage::open_tiff(&cached) {
        return Ok(tiled);
    }
    build_pyramid(path, &cached)?;
    TiledImage::open_tiff(&cached)
}

/// Where the pyramid of `path` is cached: named by the file's path, size and modification time,
/// so an edited file gets a new pyramid.
pub fn cache_path(path: &Path, cache_dir: &Path) -> Result<PathBuf, ImageError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut hasher = blake3::Hasher::new();
    hasher.update(canonical.to_string_lossy().as_bytes());
    hasher.update(&meta.len().to_le_bytes());
    hasher.update(&modified.to_le_bytes());
    let key = hasher.finalize().to_hex();
    Ok(cache_dir.join(format!("{}.tif", &key[..32])))
}

/// Builds a tiled BigTIFF pyramid of `source` at `dest` (written beside it and renamed into
/// place, so a half-written pyramid is never read).
pub fn build_pyramid(source: &Path, dest: &Path) -> Result<(), ImageError> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let partial = dest.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut bands = band_source(source)?;
        let (w, h) = bands.size();
        let mut writer = PyramidWriter::create(&partial, w, h, CACHE_TILE)?;
        let mut builder = PyramidBuilder::new(&writer);
        let mut band = Vec::new();
        loop {
            band.clear();
            let rows = bands.next_band(&mut band)?;
            if rows == 0 {
                break;
            }
            builder.push(&mut writer, 0, &band, rows)?;
        }
        builder.finish(&mut writer)?;
        writer.finish()
    })();
    match result {
        Ok(()) => std::fs::rename(&partial, dest).map_err(io_err(dest)),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Rows of an image, a band at a time, as RGB.
trait BandSource {
    fn size(&self) -> (u32, u32);
    /// Appends the next rows to `out` (RGB, whole rows) and returns how many; 0 at the end.
    fn next_band(&mut self, out: &mut Vec<u8>) -> Result<u32, ImageError>;
}

fn band_source(path: &Path) -> Result<Box<dyn BandSource>, ImageError> {
    let info = super::probe(path)?;
    if info.orientation == 1 {
        if is_tiff(path)
            && let Ok(src) = TiffBands::open(path)
        {
            return Ok(Box::new(src));
        }
        let format = image::ImageReader::open(path)
            .ok()
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.format());
        if let Some(format) = format {
            match format {
                image::ImageFormat::Jpeg => {
                    if let Ok(src) = JpegBands::open(path) {
                        return Ok(Box::new(src));
                    }
                }
                image::ImageFormat::Png => {
                    if let Ok(src) = PngBands::open(path) {
                        return Ok(Box::new(src));
                    }
                }
                _ => {}
            }
        }
    }
    // Anything else is decoded whole once (with orientation), without the usual size limit.
    let mut reader = image::ImageReader::open(path)
        .map_err(io_err(path))?
        .with_guessed_format()
        .map_err(io_err(path))?;
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
    img.apply_orientation(orientation);
    Ok(Box::new(WholeBands {
        image: img.into_rgb8(),
        next_row: 0,
    }))
}

struct WholeBands {
    image: RgbImage,
    next_row: u32,
}

impl BandSource for WholeBands {
    fn size(&self) -> (u32, u32) {
        self.image.dimensions()
    }

    fn next_band(&mut self, out: &mut Vec<u8>) -> Result<u32, ImageError> {
        let (w, h) = self.image.dimensions();
        let rows = CACHE_TILE.min(h - self.next_row);
        let row_bytes = w as usize * 3;
        let start = self.next_row as usize * row_bytes;
        out.extend_from_slice(&self.image.as_raw()[start..start + rows as usize * row_bytes]);
        self.next_row += rows;
        Ok(rows)
    }
}

struct JpegBands {
    path: PathBuf,
    width: u32,
    height: u32,
    rows_read: u32,
    started: mozjpeg::decompress::DecompressStarted<BufReader<File>>,
}

impl JpegBands {
    fn open(path: &Path) -> Result<Self, ImageError> {
        let work = || -> std::io::Result<Self> {
            let decompress = mozjpeg::Decompress::new_path(path)?;
            let width = u32::try_from(decompress.width()).map_err(std::io::Error::other)?;
            let height = u32::try_from(decompress.height()).map_err(std::io::Error::other)?;
            if matches!(
                decompress.color_space(),
                mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
            ) {
                return Err(std::io::Error::other("CMYK"));
            }
            Ok(Self {
                path: path.to_path_buf(),
                width,
                height,
                rows_read: 0,
                started: decompress.rgb()?,
            })
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|p| decode_err(path, crate::panic_message(&p)))?
            .map_err(|e| decode_err(path, e))
    }
}

impl BandSource for JpegBands {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn next_band(&mut self, out: &mut Vec<u8>) -> Result<u32, ImageError> {
        let rows = CACHE_TILE.min(self.height - self.rows_read);
        if rows == 0 {
            return Ok(0);
        }
        let start = out.len();
        out.resize(start + rows as usize * self.width as usize * 3, 0);
        let started = &mut self.started;
        let dest = &mut out[start..];
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            started.read_scanlines_into::<u8>(dest).map(|s| s.len())
        }))
        .map_err(|p| decode_err(&self.path, crate::panic_message(&p)))?
        .map_err(|e| decode_err(&self.path, e))?;
        let got = u32::try_from(read / (self.width as usize * 3)).unwrap_or(0);
        if got == 0 {
            return Err(decode_err(&self.path, "JPEG ended early"));
        }
        out.truncate(start + got as usize * self.width as usize * 3);
        self.rows_read += got;
        Ok(got)
    }
}

struct PngBands {
    path: PathBuf,
    reader: png::Reader<BufReader<File>>,
    width: u32,
    height: u32,
    rows_read: u32,
    samples: usize,
}

impl PngBands {
    fn open(path: &Path) -> Result<Self, ImageError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mut decoder = png::Decoder::new(BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        decoder.set_limits(png::Limits { bytes: usize::MAX });
        let reader = decoder.read_info().map_err(|e| decode_err(path, e))?;
        let (color, _) = reader.output_color_type();
        let samples = color.samples();
        let info = reader.info();
        Ok(Self {
            path: path.to_path_buf(),
            width: info.width,
            height: info.height,
            rows_read: 0,
            samples,
            reader,
        })
    }
}

impl BandSource for PngBands {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn next_band(&mut self, out: &mut Vec<u8>) -> Result<u32, ImageError> {
        let mut got = 0;
        while got < CACHE_TILE && self.rows_read < self.height {
            let row = self
                .reader
                .next_row()
                .map_err(|e| decode_err(&self.path, e))?
                .ok_or_else(|| decode_err(&self.path, "PNG ended early"))?;
            let data = row.data();
            let n = self.width as usize * self.samples;
            out.extend_from_slice(&to_rgb(&data[..n.min(data.len())], self.samples));
            got += 1;
            self.rows_read += 1;
        }
        Ok(got)
    }
}

/// A TIFF's first directory, a row of chunks (tiles or strips) at a time.
struct TiffBands {
    path: PathBuf,
    decoder: TiffDecoder,
    width: u32,
    height: u32,
    samples: usize,
    ycbcr: bool,
    chunk: (u32, u32),
    tiled: bool,
    next_chunk_row: u32,
}

impl TiffBands {
    fn open(path: &Path) -> Result<Self, ImageError> {
        let mut decoder = open_decoder(path)?;
        let (width, height, samples, ycbcr, tiled, chunk) = guarded(path, || {
            let (w, h) = decoder.dimensions().map_err(|e| decode_err(path, e))?;
            let color = decoder.colortype().map_err(|e| decode_err(path, e))?;
            let samples = samples_of(color).map_err(|e| decode_err(path, e))?;
            Ok((
                w,
                h,
                samples,
                color == ColorType::YCbCr(8),
                decoder.get_chunk_type() == ChunkType::Tile,
                decoder.chunk_dimensions(),
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            decoder,
            width,
            height,
            samples,
            ycbcr,
            chunk: (chunk.0.max(1), chunk.1.max(1)),
            tiled,
            next_chunk_row: 0,
        })
    }
}

impl BandSource for TiffBands {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn next_band(&mut self, out: &mut Vec<u8>) -> Result<u32, ImageError> {
        let (cw, ch) = self.chunk;
        let first_row = self.next_chunk_row * ch;
        if first_row >= self.height {
            return Ok(0);
        }
        let rows = ch.min(self.height - first_row);
        let width = self.width as usize;
        let start = out.len();
        out.resize(start + rows as usize * width * 3, 0);
        let across = if self.tiled {
            self.width.div_ceil(cw)
        } else {
            1
        };
        let path = self.path.clone();
        for tx in 0..across {
            let index = self.next_chunk_row * across + tx;
            let decoder = &mut self.decoder;
            let (dw, dh, data) = guarded(&path, || {
                let (dw, dh) = decoder.chunk_data_dimensions(index);
                match decoder
                    .read_chunk(index)
                    .map_err(|e| decode_err(&path, e))?
                {
                    DecodingResult::U8(v) => Ok((dw, dh, v)),
                    _ => Err(decode_err(&path, "not 8-bit")),
                }
            })?;
            let mut rgb = to_rgb(&data, self.samples);
            if self.ycbcr {
                ycbcr_to_rgb(&mut rgb);
            }
            let x0 = if self.tiled { (tx * cw) as usize } else { 0 };
            for r in 0..dh.min(rows) as usize {
                let src = &rgb[r * dw as usize * 3..(r + 1) * dw as usize * 3];
                let dst = start + (r * width + x0) * 3;
                let n = src.len().min((width - x0) * 3);
                out[dst..dst + n].copy_from_slice(&src[..n]);
            }
        }
        self.next_chunk_row += 1;
        Ok(rows)
    }
}

/// The sizes of a pyramid's levels: halved (rounding up) until the longest side fits a tile.
pub fn pyramid_sizes(width: u32, height: u32, tile: u32) -> Vec<(u32, u32)> {
    let mut sizes = vec![(width, height)];
    while let Some(&(w, h)) = sizes.last()
        && w.max(h) > tile
    {
        sizes.push((w.div_ceil(2), h.div_ceil(2)));
    }
    sizes
}

/// Writes a tiled, uncompressed RGB BigTIFF pyramid: tiles in any order, then one directory
/// per level (level 0 first, the others marked as reduced-resolution images).
pub struct PyramidWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    tile: u32,
    levels: Vec<WriterLevel>,
}

struct WriterLevel {
    width: u32,
    height: u32,
    offsets: Vec<u64>,
}

impl PyramidWriter {
    /// Starts a pyramid of a `width` x `height` image in `tile` x `tile` tiles (a multiple of
    /// 16, as TIFF requires).
    pub fn create(path: &Path, width: u32, height: u32, tile: u32) -> Result<Self, ImageError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // Byte order, BigTIFF, offset size 8, 0, then the first directory's offset (patched).
        let mut header = Vec::with_capacity(16);
        header.extend_from_slice(b"II");
        header.extend_from_slice(&43u16.to_le_bytes());
        header.extend_from_slice(&8u16.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());
        out.write_all(&header).map_err(io_err(path))?;
        let levels = pyramid_sizes(width, height, tile)
            .into_iter()
            .map(|(w, h)| WriterLevel {
                width: w,
                height: h,
                offsets: vec![0; (w.div_ceil(tile) * h.div_ceil(tile)) as usize],
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            out,
            pos: 16,
            tile,
            levels,
        })
    }

    /// The levels' sizes, finest first.
    pub fn level_sizes(&self) -> Vec<(u32, u32)> {
        self.levels.iter().map(|l| (l.width, l.height)).collect()
    }

    pub fn tile(&self) -> u32 {
        self.tile
    }

    /// Writes one tile: `tile` x `tile` RGB pixels (pad edge tiles).
    pub fn write_tile(
        &mut self,
        level: usize,
        tx: u32,
        ty: u32,
        rgb: &[u8],
    ) -> Result<(), ImageError> {
        let tile = self.tile;
        let Some(l) = self.levels.get_mut(level) else {
            return Err(decode_err(&self.path, format!("no level {level}")));
        };
        let across = l.width.div_ceil(tile);
        let index = (ty * across + tx) as usize;
        let expected = (tile * tile * 3) as usize;
        if rgb.len() != expected || index >= l.offsets.len() {
            return Err(decode_err(&self.path, "tile of the wrong size or place"));
        }
        l.offsets[index] = self.pos;
        self.out.write_all(rgb).map_err(io_err(&self.path))?;
        self.pos += expected as u64;
        Ok(())
    }

    /// Writes the directories and closes the file.
    pub fn finish(mut self) -> Result<(), ImageError> {
        let tile_bytes = u64::from(self.tile) * u64::from(self.tile) * 3;
        let mut first_ifd = 0u64;
        let mut previous_next_field: Option<u64> = None;
        let count = self.levels.len();
        for i in 0..count {
            // The offset and byte-count arrays go before the directory.
            let n = self.levels[i].offsets.len() as u64;
            let offsets_at = self.pos;
            let mut arrays = Vec::with_capacity((n * 16) as usize);
            for o in &self.levels[i].offsets {
                arrays.extend_from_slice(&o.to_le_bytes());
            }
            let counts_at = offsets_at + n * 8;
            for _ in 0..n {
                arrays.extend_from_slice(&tile_bytes.to_le_bytes());
            }
            // BitsPerSample's three shorts fit in the entry itself.
            self.out.write_all(&arrays).map_err(io_err(&self.path))?;
            self.pos += arrays.len() as u64;
            // Directories start on a word boundary.
            if self.pos % 2 == 1 {
                self.out.write_all(&[0]).map_err(io_err(&self.path))?;
                self.pos += 1;
            }
            let ifd_at = self.pos;
            let l = &self.levels[i];
            let array_or_inline = |at: u64| if n == 1 { None } else { Some(at) };
            let mut entries: Vec<[u8; 20]> = Vec::new();
            let mut entry = |tag: u16, kind: u16, count: u64, value: [u8; 8]| {
                let mut e = [0u8; 20];
                e[0..2].copy_from_slice(&tag.to_le_bytes());
                e[2..4].copy_from_slice(&kind.to_le_bytes());
                e[4..12].copy_from_slice(&count.to_le_bytes());
                e[12..20].copy_from_slice(&value);
                entries.push(e);
            };
            const SHORT: u16 = 3;
            const LONG: u16 = 4;
            const LONG8: u16 = 16;
            let long = |v: u32| {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&v.to_le_bytes());
                b
            };
            let short = |v: u16| {
                let mut b = [0u8; 8];
                b[..2].copy_from_slice(&v.to_le_bytes());
                b
            };
            entry(254, LONG, 1, long(u32::from(i > 0)));
            entry(256, LONG, 1, long(l.width));
            entry(257, LONG, 1, long(l.height));
            entry(258, SHORT, 3, [8, 0, 8, 0, 8, 0, 0, 0]);
            entry(259, SHORT, 1, short(1));
            entry(262, SHORT, 1, short(2));
            entry(277, SHORT, 1, short(3));
            entry(284, SHORT, 1, short(1));
            entry(322, LONG, 1, long(self.tile));
            entry(323, LONG, 1, long(self.tile));
            match array_or_inline(offsets_at) {
                Some(at) => entry(324, LONG8, n, at.to_le_bytes()),
                None => entry(324, LONG8, 1, l.offsets[0].to_le_bytes()),
            }
            match array_or_inline(counts_at) {
                Some(at) => entry(325, LONG8, n, at.to_le_bytes()),
                None => entry(325, LONG8, 1, tile_bytes.to_le_bytes()),
            }
            let mut ifd = Vec::with_capacity(8 + entries.len() * 20 + 8);
            ifd.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            for e in &entries {
                ifd.extend_from_slice(e);
            }
            let next_field_at = ifd_at + ifd.len() as u64;
            ifd.extend_from_slice(&0u64.to_le_bytes());
            self.out.write_all(&ifd).map_err(io_err(&self.path))?;
            self.pos += ifd.len() as u64;
            match previous_next_field {
                None => first_ifd = ifd_at,
                Some(field) => self.patch(field, ifd_at)?,
            }
            previous_next_field = Some(next_field_at);
        }
        self.patch(8, first_ifd)?;
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))?;
        Ok(())
    }

    fn patch(&mut self, at: u64, value: u64) -> Result<(), ImageError> {
        let path = self.path.clone();
        self.out.flush().map_err(io_err(&path))?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(at)).map_err(io_err(&path))?;
        file.write_all(&value.to_le_bytes())
            .map_err(io_err(&path))?;
        file.seek(SeekFrom::Start(self.pos))
            .map_err(io_err(&path))?;
        Ok(())
    }
}

/// Turns bands of level-0 rows into the tiles of every level, halving as it goes: memory is a
/// band of tile rows per level, whatever the image's size.
struct PyramidBuilder {
    tile: u32,
    sizes: Vec<(u32, u32)>,
    /// Per level: rows waiting to fill a row of tiles, and the next tile row's index.
    pending: Vec<(Vec<u8>, u32, u32)>,
}

impl PyramidBuilder {
    fn new(writer: &PyramidWriter) -> Self {
        let sizes = writer.level_sizes();
        Self {
            tile: writer.tile(),
            pending: sizes.iter().map(|_| (Vec::new(), 0, 0)).collect(),
            sizes,
        }
    }

    /// Adds `rows` RGB rows of `level`.
    fn push(
        &mut self,
        writer: &mut PyramidWriter,
        level: usize,
        data: &[u8],
        rows: u32,
    ) -> Result<(), ImageError> {
        let Some(&(width, _)) = self.sizes.get(level) else {
            return Ok(());
        };
        let row_bytes = width as usize * 3;
        let (buf, count, _) = &mut self.pending[level];
        buf.extend_from_slice(&data[..rows as usize * row_bytes]);
        *count += rows;
        while self.pending[level].1 >= self.tile {
            let take = self.tile as usize * row_bytes;
            let band: Vec<u8> = self.pending[level].0.drain(..take).collect();
            self.pending[level].1 -= self.tile;
            self.emit(writer, level, &band, self.tile)?;
        }
        Ok(())
    }

    /// Writes a row of tiles of `level` from `rows` rows (the last row of tiles may be short),
    /// and passes the halved rows to the next level.
    fn emit(
        &mut self,
        writer: &mut PyramidWriter,
        level: usize,
        band: &[u8],
        rows: u32,
    ) -> Result<(), ImageError> {
        let (width, _) = self.sizes[level];
        let tile = self.tile as usize;
        let ty = self.pending[level].2;
        self.pending[level].2 += 1;
        let row_bytes = width as usize * 3;
        let mut buf = vec![0u8; tile * tile * 3];
        for tx in 0..width.div_ceil(self.tile) {
            buf.fill(0);
            let x0 = tx as usize * tile;
            let cols = tile.min(width as usize - x0);
            for r in 0..rows as usize {
                let src = &band[r * row_bytes + x0 * 3..r * row_bytes + (x0 + cols) * 3];
                buf[r * tile * 3..r * tile * 3 + cols * 3].copy_from_slice(src);
            }
            writer.write_tile(level, tx, ty, &buf)?;
        }
        if level + 1 < self.sizes.len() {
            let (half, half_rows) = halve_rows(band, width, rows);
            self.push(writer, level + 1, &half, half_rows)?;
        }
        Ok(())
    }

    /// Writes the rows left at every level, finest first (each feeds the next).
    fn finish(&mut self, writer: &mut PyramidWriter) -> Result<(), ImageError> {
        for level in 0..self.sizes.len() {
            let rows = self.pending[level].1;
            if rows > 0 {
                let band = std::mem::take(&mut self.pending[level].0);
                self.pending[level].1 = 0;
                self.emit(writer, level, &band, rows)?;
            }
        }
        Ok(())
    }
}

/// Halves RGB rows in both directions (2x2 mean, the last row or column repeated when odd).
fn halve_rows(band: &[u8], width: u32, rows: u32) -> (Vec<u8>, u32) {
    let (w, h) = (width as usize, rows as usize);
    let (nw, nh) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = Vec::with_capacity(nw * nh * 3);
    for y in 0..nh {
        let y0 = 2 * y;
        let y1 = (2 * y + 1).min(h - 1);
        for x in 0..nw {
            let x0 = 2 * x;
            let x1 = (2 * x + 1).min(w - 1);
            for c in 0..3 {
                let at = |yy: usize, xx: usize| u32::from(band[(yy * w + xx) * 3 + c]);
                let sum = at(y0, x0) + at(y0, x1) + at(y1, x0) + at(y1, x1);
                out.push(u8::try_from((sum + 2) / 4).unwrap_or(u8::MAX));
            }
        }
    }
    (out, u32::try_from(nh).unwrap_or(0))
}

/// Writes `image` as a tiled pyramid (for tests and benchmarks).
pub fn write_pyramid(image: &RgbImage, path: &Path, tile: u32) -> Result<(), ImageError> {
    let (w, h) = image.dimensions();
    let mut writer = PyramidWriter::create(path, w, h, tile)?;
    let mut builder = PyramidBuilder::new(&writer);
    let row_bytes = w as usize * 3;
    for (i, chunk) in image.as_raw().chunks(row_bytes * tile as usize).enumerate() {
        let _ = i;
        let rows = u32::try_from(chunk.len() / row_bytes).unwrap_or(0);
        builder.push(&mut writer, 0, chunk, rows)?;
    }
    builder.finish(&mut writer)?;
    writer.finish()
}

/// The pixels a model reads from an image: a decoded image, or regions of a tiled one.
pub enum RegionSource {
    Decoded(DynamicImage),
    Tiled(TiledImage),
}

impl RegionSource {
    /// Opens `path` for a model: tiled when `settings` say the image is big (without decoding
    /// it whole), else decoded as [`super::decode_for_model`] does.
    pub fn open(
        path: &Path,
        window: Option<&str>,
        settings: &TileSettings,
    ) -> Result<Self, ImageError> {
        if !super::dicom::is_dicom(path) {
            let info = super::probe(path)?;
            if settings.is_tiled(info.width, info.height) {
                return open(path, settings).map(RegionSource::Tiled);
            }
        }
        super::decode_for_model(path, window).map(RegionSource::Decoded)
    }

    /// Width and height (level 0).
    pub fn size(&self) -> (u32, u32) {
        match self {
            RegionSource::Decoded(img) => (img.width(), img.height()),
            RegionSource::Tiled(t) => (t.width, t.height),
        }
    }

    /// The pixels of a rectangle at full resolution.
    pub fn region(
        &self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<DynamicImage, ImageError> {
        match self {
            RegionSource::Decoded(img) => Ok(img.crop_imm(x, y, width, height)),
            RegionSource::Tiled(t) => t
                .read_region(0, x, y, width, height)
                .map(DynamicImage::ImageRgb8),
        }
    }

    /// [`whole`](Self::whole), without copying a decoded image.
    pub fn into_whole(self, max_side: u32) -> Result<(DynamicImage, f64, f64), ImageError> {
        match self {
            RegionSource::Decoded(img) => Ok((img, 1.0, 1.0)),
            tiled @ RegionSource::Tiled(_) => tiled.whole(max_side),
        }
    }

    /// The whole image, downscaled when tiled (a level no longer than `max_side`, where the
    /// pyramid has one), with level-0 pixels per pixel (x, y).
    pub fn whole(&self, max_side: u32) -> Result<(DynamicImage, f64, f64), ImageError> {
        match self {
            RegionSource::Decoded(img) => Ok((img.clone(), 1.0, 1.0)),
            RegionSource::Tiled(t) => t
                .overview(max_side)
                .map(|(img, sx, sy)| (DynamicImage::ImageRgb8(img), sx, sy)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x % 251) as u8,
                (y % 241) as u8,
                ((x / 7 + y / 5) % 256) as u8,
            ])
        })
    }

    #[test]
    fn level_sizes_halve_until_one_tile() {
        assert_eq!(
            pyramid_sizes(2000, 1500, 256),
            vec![(2000, 1500), (1000, 750), (500, 375), (250, 188)]
        );
        assert_eq!(pyramid_sizes(100, 50, 256), vec![(100, 50)]);
    }

    #[test]
    fn a_written_pyramid_reads_back_tile_by_tile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.tif");
        let img = pattern(700, 500);
        write_pyramid(&img, &path, 256).expect("write");
        assert!(is_tiff(&path));
        let tiled = TiledImage::open_tiff(&path).expect("open");
        let sizes: Vec<(u32, u32)> = tiled.levels().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, vec![(700, 500), (350, 250), (175, 125)]);
        // An edge tile is cropped to the image.
        let tile = tiled.read_tile(0, 2, 1).expect("tile");
        assert_eq!((tile.width, tile.height), (700 - 512, 500 - 256));
        let px = |x: u32, y: u32| {
            let s = ((y * tile.width + x) * 4) as usize;
            [
                tile.rgba[s],
                tile.rgba[s + 1],
                tile.rgba[s + 2],
                tile.rgba[s + 3],
            ]
        };
        let want = img.get_pixel(512 + 10, 256 + 20).0;
        assert_eq!(px(10, 20), [want[0], want[1], want[2], 255]);
        // A region across four tiles is exactly the image's pixels.
        let region = tiled.read_region(0, 200, 200, 150, 120).expect("region");
        assert_eq!(
            region,
            image::imageops::crop_imm(&img, 200, 200, 150, 120).to_image()
        );
        // Level 1 is the 2x2 mean.
        let l1 = tiled.read_region(1, 0, 0, 2, 1).expect("level 1");
        let mean = |c: usize| {
            let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|&(x, y)| u32::from(img.get_pixel(x, y).0[c]))
                .sum();
            ((s + 2) / 4) as u8
        };
        assert_eq!(l1.get_pixel(0, 0).0, [mean(0), mean(1), mean(2)]);
        assert!(tiled.read_tile(0, 3, 0).is_err());
        assert_eq!(tiled.level_for_zoom(1.0), 0);
        assert_eq!(tiled.level_for_zoom(0.5), 1);
        assert_eq!(tiled.level_for_zoom(0.3), 1);
        assert_eq!(tiled.level_for_zoom(0.01), 2);
    }

    #[test]
    fn other_formats_go_through_the_pyramid_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = pattern(900, 600);
        let settings = TileSettings {
            threshold_pixels: 100_000,
            max_side: 16_384,
            cache_dir: dir.path().join("cache"),
        };
        for name in ["big.png", "big.jpg", "big.bmp"] {
            let path = dir.path().join(name);
            img.save(&path).expect("save");
            let tiled = open(&path, &settings).expect("open");
            assert_eq!((tiled.width, tiled.height), (900, 600), "{name}");
            assert_eq!(tiled.levels().len(), 3, "{name}");
            let region = tiled.read_region(0, 300, 280, 40, 30).expect("region");
            let decoded = crate::imaging::decode(&path).expect("decode").into_rgb8();
            assert_eq!(
                region,
                image::imageops::crop_imm(&decoded, 300, 280, 40, 30).to_image(),
                "{name}"
            );
            // The second open reads the cache.
            assert!(
                cache_path(&path, &settings.cache_dir)
                    .expect("key")
                    .is_file()
            );
        }
        // A strip TIFF streams too.
        let path = dir.path().join("strips.tif");
        img.save(&path).expect("save");
        let tiled = open(&path, &settings).expect("open tiff");
        assert_eq!(tiled.read_region(0, 0, 0, 900, 600).expect("all"), img);
    }

    #[test]
    fn regions_for_models_come_from_tiles_above_the_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.tif");
        let img = pattern(600, 400);
        write_pyramid(&img, &path, 128).expect("write");
        let settings = TileSettings {
            threshold_pixels: 1000,
            max_side: 16_384,
            cache_dir: dir.path().join("cache"),
        };
        let source = RegionSource::open(&path, None, &settings).expect("open");
        assert!(matches!(source, RegionSource::Tiled(_)));
        assert_eq!(source.size(), (600, 400));
        let region = source.region(10, 20, 300, 200).expect("region").into_rgb8();
        assert_eq!(
            region,
            image::imageops::crop_imm(&img, 10, 20, 300, 200).to_image()
        );
        let (whole, sx, _) = source.whole(200).expect("whole");
        assert_eq!((whole.width(), sx), (150, 4.0));
        // Below the threshold it is decoded as before.
        let settings = TileSettings {
            threshold_pixels: 10_000_000,
            ..settings
        };
        assert!(matches!(
            RegionSource::open(&path, None, &settings).expect("open"),
            RegionSource::Decoded(_)
        ));
        // The directory is not a cache folder: nothing was written there.
        assert!(!dir.path().join("cache").exists());
    }
}

//! Turning a decoded image into the model's input tensor, and remembering how to map boxes back.
//!
//! Resizing uses `fast_image_resize` with the descriptor's [`ResizeFilter`], except for
//! `opencv-linear`, a port of OpenCV's fixed-point kernel ([`super::cv_resize`]). The default,
//! `bilinear`, interpolates between the 2x2 nearest source pixels without antialiasing, as
//! OpenCV's `INTER_LINEAR` does and so as Python pipelines built on `cv2.resize` saw in training
//! and evaluation. It runs on 16-bit samples and rounds to 8 bits once at the end: the 8-bit path
//! of `fast_image_resize` rounds between its horizontal and vertical passes, which put one pixel
//! in 6 to 20 % one level away from OpenCV's on the rapid_layout pages, against 4 to 13 % this
//! way. Normalisation is a per-channel lookup table: with 8-bit pixels there are only 256
//! possible values per channel.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use ndarray::Array4;

use super::InferenceError;
use super::descriptor::{ChannelOrder, ModelDescriptor, ResizeFilter, ResizeMode};
use crate::model::BBox;

/// How input-tensor pixels relate to original image pixels:
/// `pos_in_input = pos_in_image * scale + pad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputTransform {
    pub scale_x: f64,
    pub scale_y: f64,
    pub pad_x: f64,
    pub pad_y: f64,
    /// The original image's size, for clipping.
    pub image_width: u32,
    pub image_height: u32,
    /// The size of the image inside the input, before padding.
    pub resized_width: u32,
    pub resized_height: u32,
}

impl InputTransform {
    /// Where the image goes inside a `input_width` x `input_height` input, and at what size.
    /// Letterbox rounding follows ultralytics' `LetterBox` so boxes line up with its exports.
    pub fn new(
        mode: ResizeMode,
        image_width: u32,
        image_height: u32,
        input_width: u32,
        input_height: u32,
    ) -> Self {
        let (iw, ih) = (f64::from(image_width), f64::from(image_height));
        let (tw, th) = (f64::from(input_width), f64::from(input_height));
        match mode {
            ResizeMode::Stretch => Self {
                scale_x: tw / iw,
                scale_y: th / ih,
                pad_x: 0.0,
                pad_y: 0.0,
                image_width,
                image_height,
                resized_width: input_width,
                resized_height: input_height,
            },
            ResizeMode::Letterbox | ResizeMode::Pad => {
                let ratio = (tw / iw).min(th / ih);
                let (new_w, new_h) = resized_size(ratio, iw, ih, input_width, input_height);
                let (pad_x, pad_y) = if mode == ResizeMode::Letterbox {
                    // ultralytics: `top = round(dh / 2 - 0.1)`, likewise left.
                    (
                        ((tw - f64::from(new_w)) / 2.0 - 0.1).round(),
                        ((th - f64::from(new_h)) / 2.0 - 0.1).round(),
                    )
                } else {
                    (0.0, 0.0)
                };
                Self {
                    scale_x: ratio,
                    scale_y: ratio,
                    pad_x,
                    pad_y,
                    image_width,
                    image_height,
                    resized_width: new_w,
                    resized_height: new_h,
                }
            }
        }
    }

    /// Maps corners `[x0, y0, x1, y1]` from input pixels to image pixels and clips them to the
    /// image.
    pub fn image_from_input(&self, xyxy_in_input: [f32; 4]) -> BBox {
        let [x0, y0, x1, y1] = xyxy_in_input.map(f64::from);
        let to_x = |x: f64| (x - self.pad_x) / self.scale_x;
        let to_y = |y: f64| (y - self.pad_y) / self.scale_y;
        BBox::from_corners(to_x(x0), to_y(y0), to_x(x1), to_y(y1))
            .clipped(f64::from(self.image_width), f64::from(self.image_height))
    }
}

/// ultralytics: `new_unpad = int(round(w * r)), int(round(h * r))`, kept inside the input.
fn resized_size(ratio: f64, iw: f64, ih: f64, input_width: u32, input_height: u32) -> (u32, u32) {
    let side = |v: f64, max: u32| {
        // The product is positive and at most `max` (plus rounding), so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rounded = (v * ratio).round().max(1.0) as u32;
        rounded.min(max)
    };
    (side(iw, input_width), side(ih, input_height))
}

/// An image ready for the model: the NCHW tensor and the transform back to image pixels.
#[derive(Debug)]
pub struct PreparedInput {
    /// `[1, 3, input_height, input_width]`, standard layout.
    pub tensor: Array4<f32>,
    pub transform: InputTransform,
}

/// Resizes, pads and normalises `image` for the model described by `descriptor`.
///
/// Images with an alpha channel lose it (as with OpenCV's `imread`); 16-bit images are reduced
/// to 8 bits; grayscale images are repeated into all three channels.
pub fn prepare(
    image: &DynamicImage,
    descriptor: &ModelDescriptor,
) -> Result<PreparedInput, InferenceError> {
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 {
        return Err(InferenceError::Preprocess(format!(
            "the image is empty ({width}x{height})"
        )));
    }
    let (in_w, in_h) = (descriptor.input_width, descriptor.input_height);
    let transform = InputTransform::new(descriptor.resize, width, height, in_w, in_h);
    let (new_w, new_h) = (transform.resized_width, transform.resized_height);

    // Grayscale stays one channel through the resize: a third of the work, same result.
    let converted;
    let (pixels, pixel_type, channels): (&[u8], PixelType, usize) = match image {
        DynamicImage::ImageLuma8(gray) => (gray.as_raw(), PixelType::U8, 1),
        DynamicImage::ImageRgb8(rgb) => (rgb.as_raw(), PixelType::U8x3, 3),
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLumaA16(_) => {
            converted = DynamicImage::ImageLuma8(image.to_luma8());
            (converted.as_bytes(), PixelType::U8, 1)
        }
        _ => {
            converted = DynamicImage::ImageRgb8(image.to_rgb8());
            (converted.as_bytes(), PixelType::U8x3, 3)
        }
    };

    let resized;
    let resized_pixels: &[u8] = if (new_w, new_h) == (width, height) {
        pixels
    } else {
        resized = resize(
            pixels,
            (width, height),
            (new_w, new_h),
            pixel_type,
            descriptor.resize_filter,
        )?;
        &resized
    };

    let luts = channel_luts(descriptor);
    let (in_w, in_h) = (in_w as usize, in_h as usize);
    let (new_w, new_h) = (new_w as usize, new_h as usize);
    // Pads are whole pixels by construction (rounded, or 0).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (pad_x, pad_y) = (transform.pad_x as usize, transform.pad_y as usize);
    let pad_value = usize::from(descriptor.pad_value);

    let mut tensor = Array4::<f32>::zeros((1, 3, in_h, in_w));
    let plane_len = in_w * in_h;
    let data = tensor
        .as_slice_mut()
        .expect("a freshly made array is in standard layout");
    for (plane_index, plane) in data.chunks_exact_mut(plane_len).enumerate() {
        let lut = &luts[plane_index];
        // The source channel feeding this plane of the model input.
        let source_channel = match (channels, descriptor.channel_order) {
            (1, _) => 0,
            (_, ChannelOrder::Rgb) => plane_index,
            (_, ChannelOrder::Bgr) => 2 - plane_index,
        };
        let padded = new_w < in_w || new_h < in_h;
        if padded {
            plane.fill(lut[pad_value]);
        }
        for (y, src_row) in resized_pixels
            .chunks_exact(new_w * channels)
            .take(new_h)
            .enumerate()
        {
            let start = (y + pad_y) * in_w + pad_x;
            let dst_row = &mut plane[start..start + new_w];
            for (dst, px) in dst_row.iter_mut().zip(src_row.chunks_exact(channels)) {
                *dst = lut[usize::from(px[source_channel])];
            }
        }
    }
    Ok(PreparedInput { tensor, transform })
}

/// Resizes 8-bit `pixels` (`pixel_type` is `U8` or `U8x3`) from `from` to `to` (width, height).
fn resize(
    pixels: &[u8],
    (width, height): (u32, u32),
    (new_w, new_h): (u32, u32),
    pixel_type: PixelType,
    filter: ResizeFilter,
) -> Result<Vec<u8>, InferenceError> {
    let err = |e: &dyn std::fmt::Display| InferenceError::Preprocess(e.to_string());
    let alg = match filter {
        ResizeFilter::OpencvLinear => {
            let channels = if pixel_type == PixelType::U8 { 1 } else { 3 };
            return Ok(super::cv_resize::resize_linear(
                pixels,
                (width as usize, height as usize),
                (new_w as usize, new_h as usize),
                channels,
            ));
        }
        ResizeFilter::Bilinear => ResizeAlg::Interpolation(FilterType::Bilinear),
        ResizeFilter::BilinearAntialias => ResizeAlg::Convolution(FilterType::Bilinear),
        ResizeFilter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        ResizeFilter::Nearest => ResizeAlg::Nearest,
    };
    let options = ResizeOptions::new().resize_alg(alg);
    if filter != ResizeFilter::Bilinear {
        // The antialiased filters round to 8 bits between passes, as Pillow (whose algorithm
        // `fast_image_resize` follows) does; nearest does no arithmetic.
        let src = ImageRef::new(width, height, pixels, pixel_type).map_err(|e| err(&e))?;
        let mut dst = Image::new(new_w, new_h, pixel_type);
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| err(&e))?;
        return Ok(dst.into_vec());
    }
    // `bilinear`: samples scaled to 16 bits (`v << 8`, so the intermediate rounding between the
    // passes is 1/256 of a level), then rounded to 8 bits once.
    let wide_type = if pixel_type == PixelType::U8 {
        PixelType::U16
    } else {
        PixelType::U16x3
    };
    let mut wide = Image::new(width, height, wide_type);
    for (out, &v) in wide.buffer_mut().chunks_exact_mut(2).zip(pixels) {
        out.copy_from_slice(&(u16::from(v) << 8).to_ne_bytes());
    }
    let mut dst = Image::new(new_w, new_h, wide_type);
    Resizer::new()
        .resize(&wide, &mut dst, &options)
        .map_err(|e| err(&e))?;
    Ok(dst
        .buffer()
        .chunks_exact(2)
        .map(|c| {
            let v = u32::from(u16::from_ne_bytes([c[0], c[1]]));
            // At most (65280 + 128) >> 8 = 255: an interpolation never exceeds its inputs.
            u8::try_from((v + 128) >> 8).unwrap_or(u8::MAX)
        })
        .collect())
}

/// `lut[plane][pixel] = (pixel * scale - mean[plane]) / std[plane]`.
///
/// The product is taken in `f32` and the rest in `f64`, rounded to `f32` at the end, as NumPy
/// computes `(img.astype("float32") * scale - mean) / std` with float64 `mean` and `std` (the
/// form of most Python preprocessing).
fn channel_luts(descriptor: &ModelDescriptor) -> [[f32; 256]; 3] {
    let mut luts = [[0.0f32; 256]; 3];
    for (plane, lut) in luts.iter_mut().enumerate() {
        let mean = f64::from(descriptor.mean[plane]);
        let std = f64::from(descriptor.std[plane]);
        for (value, out) in lut.iter_mut().enumerate() {
            #[allow(clippy::cast_precision_loss)] // value <= 255
            let scaled = f64::from(value as f32 * descriptor.pixel_scale);
            #[allow(clippy::cast_possible_truncation)] // rounding to the tensor's f32 is the point
            let normalised = ((scaled - mean) / std) as f32;
            *out = normalised;
        }
    }
    luts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::descriptor::DecoderKind;
    use image::{GrayImage, Rgb, RgbImage};

    fn descriptor(mode: ResizeMode, w: u32, h: u32) -> ModelDescriptor {
        ModelDescriptor {
            resize: mode,
            ..ModelDescriptor::new(DecoderKind::Yolov8, w, h)
        }
    }

    #[test]
    fn letterbox_matches_ultralytics_rounding() {
        // 810x1080 (bus.jpg) into 640x640: ratio 0.5926, new 480x640, pad 80 left.
        let t = InputTransform::new(ResizeMode::Letterbox, 810, 1080, 640, 640);
        assert!((t.scale_x - 640.0 / 1080.0).abs() < 1e-12);
        assert_eq!((t.resized_width, t.resized_height), (480, 640));
        assert!((t.pad_x - 80.0).abs() < 1e-12);
        assert!(t.pad_y.abs() < 1e-12);
        // Odd padding: 7 pixels to split -> 3 on the left (round(3.5 - 0.1)).
        let t = InputTransform::new(ResizeMode::Letterbox, 633, 640, 640, 640);
        assert_eq!((t.resized_width, t.resized_height), (633, 640));
        assert!((t.pad_x - 3.0).abs() < 1e-12);
    }

    #[test]
    fn pad_and_stretch_transforms() {
        let t = InputTransform::new(ResizeMode::Pad, 200, 100, 64, 64);
        assert_eq!((t.resized_width, t.resized_height), (64, 32));
        assert_eq!((t.pad_x, t.pad_y), (0.0, 0.0));
        let t = InputTransform::new(ResizeMode::Stretch, 200, 100, 64, 64);
        assert_eq!((t.resized_width, t.resized_height), (64, 64));
        assert!((t.scale_x - 0.32).abs() < 1e-12);
        assert!((t.scale_y - 0.64).abs() < 1e-12);
    }

    #[test]
    fn boxes_map_back_and_clip() {
        let t = InputTransform::new(ResizeMode::Letterbox, 810, 1080, 640, 640);
        let b = t.image_from_input([80.0, 0.0, 560.0, 640.0]);
        assert!((b.x).abs() < 1e-9 && (b.y).abs() < 1e-9, "{b:?}");
        assert!(
            (b.w - 810.0).abs() < 1e-6 && (b.h - 1080.0).abs() < 1e-6,
            "{b:?}"
        );
        // Boxes reaching into the padding are clipped to the image.
        let b = t.image_from_input([0.0, -10.0, 100.0, 700.0]);
        assert!(b.x.abs() < 1e-9 && b.y.abs() < 1e-9 && (b.y2() - 1080.0).abs() < 1e-9);
    }

    #[test]
    fn letterbox_pads_and_normalises() {
        // A 4x2 red image into an 8x8 input: resized to 8x4, 2 rows of padding above and below.
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 2, Rgb([255, 0, 0])));
        let d = ModelDescriptor {
            pad_value: 0,
            ..descriptor(ResizeMode::Letterbox, 8, 8)
        };
        let p = prepare(&img, &d).expect("prepares");
        assert_eq!(p.tensor.shape(), &[1, 3, 8, 8]);
        assert!((p.transform.pad_y - 2.0).abs() < 1e-12);
        for x in 0..8 {
            assert!(
                p.tensor[[0, 0, 0, x]].abs() < 1e-6,
                "padding row is pad_value"
            );
            assert!(
                (p.tensor[[0, 0, 3, x]] - 1.0).abs() < 1e-6,
                "red plane is 255/255"
            );
            assert!(p.tensor[[0, 1, 3, x]].abs() < 1e-6, "green plane is 0");
            assert!(p.tensor[[0, 0, 6, x]].abs() < 1e-6, "bottom padding");
        }
    }

    #[test]
    fn bgr_order_mean_and_std_apply_per_model_channel() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([255, 0, 51])));
        let d = ModelDescriptor {
            channel_order: ChannelOrder::Bgr,
            mean: [0.1, 0.2, 0.3],
            std: [0.5, 0.5, 0.5],
            ..descriptor(ResizeMode::Stretch, 2, 2)
        };
        let p = prepare(&img, &d).expect("prepares");
        // Plane 0 is blue (51 -> 0.2), plane 2 is red (255 -> 1.0).
        assert!((p.tensor[[0, 0, 0, 0]] - (0.2 - 0.1) / 0.5).abs() < 1e-6);
        assert!((p.tensor[[0, 1, 0, 0]] - (0.0 - 0.2) / 0.5).abs() < 1e-6);
        assert!((p.tensor[[0, 2, 0, 0]] - (1.0 - 0.3) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn grayscale_fills_all_planes() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(10, 5, image::Luma([102])));
        let p = prepare(&img, &descriptor(ResizeMode::Stretch, 6, 6)).expect("prepares");
        for c in 0..3 {
            assert!((p.tensor[[0, c, 5, 5]] - 0.4).abs() < 1e-6);
        }
    }

    /// A deterministic RGB test pattern with detail at the pixel scale.
    fn pattern(width: u32, height: u32) -> RgbImage {
        let mut state = 0x2545_f491_u32;
        RgbImage::from_fn(width, height, |_, _| {
            let mut next = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            };
            Rgb([next(), next(), next()])
        })
    }

    /// The tensor of `image` stretched to `w` x `h` with `filter`, in pixel levels (no scaling,
    /// RGB order).
    fn levels(image: &DynamicImage, filter: ResizeFilter, w: u32, h: u32) -> Array4<f32> {
        let d = ModelDescriptor {
            resize_filter: filter,
            pixel_scale: 1.0,
            ..descriptor(ResizeMode::Stretch, w, h)
        };
        prepare(image, &d).expect("prepares").tensor
    }

    /// Bilinear interpolation with OpenCV's geometry (`x = (dx + 0.5) * scale - 0.5`, edges
    /// clamped), in f64: what `bilinear` should compute before its one rounding.
    fn exact_bilinear(image: &RgbImage, w: u32, h: u32) -> Vec<[f64; 3]> {
        let taps = |out: u32, from: u32, to: u32| {
            let pos = (f64::from(out) + 0.5) * f64::from(from) / f64::from(to) - 0.5;
            let floor = pos.floor();
            let last = f64::from(from - 1);
            if floor < 0.0 {
                (0, 0, 0.0)
            } else if floor >= last {
                (from - 1, from - 1, 0.0)
            } else {
                // `floor` is in 0..from - 1 here.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let i = floor as u32;
                (i, i + 1, pos - floor)
            }
        };
        let mut out = Vec::new();
        for y in 0..h {
            let (y0, y1, fy) = taps(y, image.height(), h);
            for x in 0..w {
                let (x0, x1, fx) = taps(x, image.width(), w);
                let px = |x, y, c| f64::from(image.get_pixel(x, y).0[c]);
                out.push([0, 1, 2].map(|c| {
                    let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                    let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                    top * (1.0 - fy) + bottom * fy
                }));
            }
        }
        out
    }

    #[test]
    fn bilinear_rounds_once_like_exact_interpolation() {
        // Shrinking by non-integer factors, as documents into layout models, and growing.
        for (src_w, src_h, w, h) in [(61, 87, 29, 40), (37, 23, 60, 50), (50, 40, 49, 13)] {
            let image = pattern(src_w, src_h);
            let got = levels(
                &DynamicImage::ImageRgb8(image.clone()),
                ResizeFilter::Bilinear,
                w,
                h,
            );
            let want = exact_bilinear(&image, w, h);
            let mut off_by_one = 0;
            for (i, want) in want.iter().enumerate() {
                let (y, x) = (i / w as usize, i % w as usize);
                for (c, want) in want.iter().enumerate() {
                    let got = f64::from(got[[0, c, y, x]]);
                    let diff = (got - (want + 0.5).floor()).abs();
                    assert!(
                        diff <= 1.0,
                        "{src_w}x{src_h} -> {w}x{h} ({x}, {y}) {c}: {got} vs {want}"
                    );
                    if diff > 0.0 {
                        // Only where the exact value is within 1/256 of a rounding boundary.
                        assert!(
                            (want.fract() - 0.5).abs() < 1.0 / 256.0,
                            "({x}, {y}) {c}: {got} vs {want}"
                        );
                        off_by_one += 1;
                    }
                }
            }
            // Rounding to 8 bits between the passes puts about 1 pixel in 10 one level off.
            assert!(
                off_by_one * 200 <= want.len() * 3,
                "{off_by_one} off by one"
            );
        }
    }

    #[test]
    fn opencv_linear_is_bilinear_truncated() {
        // OpenCV's fixed-point kernel lands within one level of the exact interpolation, and
        // below its rounding more often than above (it truncates twice).
        let image = pattern(61, 87);
        let (w, h) = (29, 40);
        let got = levels(
            &DynamicImage::ImageRgb8(image.clone()),
            ResizeFilter::OpencvLinear,
            w,
            h,
        );
        let (mut below, mut above) = (0, 0);
        for (i, want) in exact_bilinear(&image, w, h).iter().enumerate() {
            let (y, x) = (i / w as usize, i % w as usize);
            for (c, want) in want.iter().enumerate() {
                let got = f64::from(got[[0, c, y, x]]);
                assert!((got - want).abs() < 1.0, "({x}, {y}) {c}: {got} vs {want}");
                let rounded = (want + 0.5).floor();
                below += usize::from(got < rounded);
                above += usize::from(got > rounded);
            }
        }
        assert!(below > above, "{below} below, {above} above");
    }

    #[test]
    fn filters_differ_when_shrinking() {
        // Halving a row: `bilinear` averages the two nearest source pixels; the antialiased
        // filters also weigh the neighbours the output pixel covers.
        let row = RgbImage::from_fn(4, 1, |x, _| {
            let v = [10, 21, 100, 200][x as usize];
            Rgb([v, v, v])
        });
        let image = DynamicImage::ImageRgb8(row);
        let at = |filter| {
            let t = levels(&image, filter, 2, 1);
            [t[[0, 0, 0, 0]], t[[0, 0, 0, 1]]]
        };
        assert_eq!(at(ResizeFilter::Bilinear), [16.0, 150.0]);
        // OpenCV's weights are 1024 of 2048 each here: (10 + 21) / 2 = 15.5 rounds up to 16.
        assert_eq!(at(ResizeFilter::OpencvLinear), [16.0, 150.0]);
        assert_eq!(at(ResizeFilter::Nearest), [21.0, 200.0]);
        let antialiased = at(ResizeFilter::BilinearAntialias);
        // (10 * 0.75 + 21 * 0.75 + 100 * 0.25) / 1.75 = 27.6
        assert_eq!(antialiased[0], 28.0, "{antialiased:?}");
        assert_ne!(at(ResizeFilter::Lanczos3), at(ResizeFilter::Bilinear));
    }

    #[test]
    fn grayscale_and_rgb_resize_alike() {
        let gray = GrayImage::from_fn(45, 31, |x, y| {
            image::Luma([((x * 37 + y * 91) % 256) as u8])
        });
        let rgb = DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(gray.clone()).to_rgb8());
        for filter in [
            ResizeFilter::Bilinear,
            ResizeFilter::OpencvLinear,
            ResizeFilter::BilinearAntialias,
        ] {
            let a = levels(&DynamicImage::ImageLuma8(gray.clone()), filter, 20, 17);
            let b = levels(&rgb, filter, 20, 17);
            assert_eq!(a, b, "{filter:?}");
        }
    }
}

//! Turning a decoded image into the model's input tensor, and remembering how to map boxes back.
//!
//! Resizing uses `fast_image_resize` with fixed-support bilinear interpolation, which is what
//! OpenCV's `INTER_LINEAR` does and so what Python pipelines built on `cv2.resize` saw in
//! training and evaluation. Normalisation is a per-channel lookup table: with 8-bit pixels there
//! are only 256 possible values per channel.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use ndarray::Array4;

use super::InferenceError;
use super::descriptor::{ChannelOrder, ModelDescriptor, ResizeMode};
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
        let src = ImageRef::new(width, height, pixels, pixel_type)
            .map_err(|e| InferenceError::Preprocess(e.to_string()))?;
        let mut dst = Image::new(new_w, new_h, pixel_type);
        let options =
            ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| InferenceError::Preprocess(e.to_string()))?;
        resized = dst.into_vec();
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

/// `lut[plane][pixel] = (pixel * scale - mean[plane]) / std[plane]`.
fn channel_luts(descriptor: &ModelDescriptor) -> [[f32; 256]; 3] {
    let mut luts = [[0.0f32; 256]; 3];
    for (plane, lut) in luts.iter_mut().enumerate() {
        for (value, out) in lut.iter_mut().enumerate() {
            #[allow(clippy::cast_precision_loss)] // value <= 255
            let pixel = value as f32;
            *out =
                (pixel * descriptor.pixel_scale - descriptor.mean[plane]) / descriptor.std[plane];
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
}

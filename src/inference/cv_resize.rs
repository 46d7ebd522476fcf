//! OpenCV's bilinear resize of 8-bit images (`cv2.resize(img, size)`, `INTER_LINEAR`),
//! reproduced bit for bit, for models whose reference preprocessing used OpenCV.
//!
//! OpenCV does not interpolate exactly: it turns each weight into an 11-bit integer, keeps the
//! horizontal pass in integers scaled by 2048, and in the vertical pass drops 4 bits from each
//! row before a 16-bit high-half multiply (`VResizeLinearVec_32s8u`), truncating twice before its
//! final rounding. The result is on average 0.04 to 0.12 levels darker than exact interpolation
//! and one level off it on a few percent of pixels, enough to move a detector's low scores by
//! several thousandths. This port follows `resizeGeneric_` with `HResizeLinear<uchar, int,
//! short, 2048>` and `VResizeLinear<uchar, int, short, FixedPtCast<int, uchar, 22>>` in
//! `modules/imgproc/src/resize.cpp`, whose vector code and scalar fallback compute the same
//! values. OpenCV turns an exact 2x reduction in both directions into `INTER_AREA`; with
//! weights of exactly 1/2 the formulas below give the same 2x2 average
//! (`(a + b + c + d + 2) >> 2`), so that case needs nothing special.

/// `INTER_RESIZE_COEF_BITS`: weights are integers out of `1 << 11`.
const COEF_SCALE: f32 = 2048.0;

/// The two source columns (or rows) an output column (or row) mixes, and their weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    sources: [usize; 2],
    /// Out of 2048.
    weights: [i32; 2],
}

/// `saturate_cast<short>(v)`: round half to even (`cvRound`), then clamp.
fn to_coefficient(v: f32) -> i32 {
    // The clamp makes the cast exact whatever `v` is.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = v.round_ties_even().clamp(-32768.0, 32767.0) as i32;
    rounded
}

/// OpenCV's taps for `dst_len` outputs from `src_len` inputs along one axis.
///
/// `fx = (float)((d + 0.5) * scale - 0.5)`, `sx = floor(fx)`, `fx -= sx`, with `scale` the
/// inverse of `dst_len / src_len` as OpenCV computes it. Along x, positions before the first
/// source column or at or after the last take that column whole (OpenCV sets `fx = 0`); along y,
/// OpenCV keeps the fraction and clamps the two row indices (`sy` and `sy + 1`) instead, which
/// `clamp_rows` selects.
fn taps(src_len: usize, dst_len: usize, clamp_rows: bool) -> Vec<Tap> {
    // Image sides fit in f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let scale = 1.0 / (dst_len as f64 / src_len as f64);
    let last = src_len - 1;
    (0..dst_len)
        .map(|d| {
            // OpenCV computes in double and stores the position as float.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let position = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let floor = position.floor();
            let mut fraction = position - floor;
            // `floor` is a small whole number (|floor| <= src_len), so the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            let floor = floor as i64;
            let clip = |i: i64| usize::try_from(i.max(0)).unwrap_or(0).min(last);
            let sources = if clamp_rows {
                // `clip(sy + k, 0, height)`; the fraction stays.
                [clip(floor), clip(floor + 1)]
            } else if floor < 0 {
                fraction = 0.0;
                [0, clip(1)]
            } else if clip(floor) == last {
                // OpenCV's `xmax` columns: `S[sx] * ONE`.
                fraction = 0.0;
                [last, last]
            } else {
                [clip(floor), clip(floor + 1)]
            };
            let weights = [
                to_coefficient((1.0 - fraction) * COEF_SCALE),
                to_coefficient(fraction * COEF_SCALE),
            ];
            Tap { sources, weights }
        })
        .collect()
}

/// Resizes interleaved 8-bit `pixels` with `channels` samples per pixel from `width` x `height`
/// to `new_width` x `new_height`, exactly as `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`.
///
/// # Panics
///
/// If `pixels` is shorter than `width * height * channels` or a size is zero; callers check.
pub fn resize_linear(
    pixels: &[u8],
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    channels: usize,
) -> Vec<u8> {
    assert!(width > 0 && height > 0 && new_width > 0 && new_height > 0);
    let row_len = width * channels;
    assert!(
        pixels.len() >= row_len * height,
        "pixels do not fill the image"
    );

    // Per output sample (column and channel): the two source sample indices and weights.
    let columns: Vec<(usize, usize, i32, i32)> = taps(width, new_width, false)
        .into_iter()
        .flat_map(|tap| {
            let [first, second] = tap.sources;
            (0..channels).map(move |c| {
                (
                    first * channels + c,
                    second * channels + c,
                    tap.weights[0],
                    tap.weights[1],
                )
            })
        })
        .collect();
    let rows = taps(height, new_height, true);

    let out_row_len = new_width * channels;
    let horizontal = |y: usize, out: &mut [i32]| {
        let src = &pixels[y * row_len..(y + 1) * row_len];
        for (o, &(i0, i1, a0, a1)) in out.iter_mut().zip(&columns) {
            *o = i32::from(src[i0]) * a0 + i32::from(src[i1]) * a1;
        }
    };
    // The horizontal pass of the two source rows in use, and which rows they are. Consecutive
    // outputs often share a row (always when enlarging), so a pass is reused as OpenCV does.
    let mut buffers = [vec![0i32; out_row_len], vec![0i32; out_row_len]];
    let mut held: [Option<usize>; 2] = [None, None];

    let mut out = vec![0u8; out_row_len * new_height];
    for (dst, tap) in out.chunks_exact_mut(out_row_len).zip(&rows) {
        let wanted = tap.sources;
        // Put the pass of `wanted[k]` in `buffers[k]`, reusing what is already there.
        if held[0] == Some(wanted[1]) || held[1] == Some(wanted[0]) {
            buffers.swap(0, 1);
            held.swap(0, 1);
        }
        for k in 0..2 {
            if held[k] != Some(wanted[k]) {
                if k == 1 && wanted[1] == wanted[0] {
                    let (first, second) = buffers.split_at_mut(1);
                    second[0].copy_from_slice(&first[0]);
                } else {
                    horizontal(wanted[k], &mut buffers[k]);
                }
                held[k] = Some(wanted[k]);
            }
        }
        let [b0, b1] = tap.weights;
        for ((d, &s0), &s1) in dst.iter_mut().zip(&buffers[0]).zip(&buffers[1]) {
            // `((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2`, saturated as
            // `v_rshr_pack_u` does (with weights summing to 2048 it never exceeds 255).
            let v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
            *d = u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole computation for one output sample, written out as OpenCV's scalar code does it,
    /// to check the table-driven version against.
    fn by_formula(src: &[u8], (w, h): (usize, usize), (dw, dh): (usize, usize)) -> Vec<u8> {
        let scale_x = 1.0 / (dw as f64 / w as f64);
        let scale_y = 1.0 / (dh as f64 / h as f64);
        let mut out = Vec::new();
        for dy in 0..dh {
            let fy = ((dy as f64 + 0.5) * scale_y - 0.5) as f32;
            let sy = fy.floor();
            let fy = fy - sy;
            let sy = sy as i64;
            let row = |k: i64| (sy + k).clamp(0, h as i64 - 1) as usize;
            let beta = [
                ((1.0 - fy) * 2048.0).round_ties_even() as i32,
                (fy * 2048.0).round_ties_even() as i32,
            ];
            for dx in 0..dw {
                let fx = ((dx as f64 + 0.5) * scale_x - 0.5) as f32;
                let mut sx = fx.floor() as i64;
                let mut fx = fx - fx.floor();
                if sx < 0 {
                    sx = 0;
                    fx = 0.0;
                }
                if sx >= w as i64 - 1 {
                    sx = w as i64 - 1;
                    fx = 0.0;
                }
                let a0 = ((1.0 - fx) * 2048.0).round_ties_even() as i32;
                let a1 = (fx * 2048.0).round_ties_even() as i32;
                let sx = sx as usize;
                let s = |y: usize| {
                    let at = |x: usize| i32::from(src[y * w + x.min(w - 1)]);
                    at(sx) * a0 + at(sx + 1) * a1
                };
                let (s0, s1) = (s(row(0)), s(row(1)));
                let v = (((beta[0] * (s0 >> 4)) >> 16) + ((beta[1] * (s1 >> 4)) >> 16) + 2) >> 2;
                out.push(v as u8);
            }
        }
        out
    }

    #[test]
    fn weights_follow_opencv() {
        let tap = |sources, weights| Tap { sources, weights };
        // 4 -> 3: scale 4/3, positions 0.1667, 1.5, 2.8333; 0.1667 * 2048 = 341.3.
        assert_eq!(
            taps(4, 3, false),
            [
                tap([0, 1], [1707, 341]),
                tap([1, 2], [1024, 1024]),
                tap([2, 3], [341, 1707])
            ]
        );
        // 2 -> 4: positions -0.25, 0.25, 0.75, 1.25. Columns outside take the edge whole...
        assert_eq!(
            taps(2, 4, false),
            [
                tap([0, 1], [2048, 0]),
                tap([0, 1], [1536, 512]),
                tap([0, 1], [512, 1536]),
                tap([1, 1], [2048, 0])
            ]
        );
        // ...rows keep the fraction and clamp both indices: -0.25 is rows -1 and 0 at 0.75.
        assert_eq!(
            taps(2, 4, true),
            [
                tap([0, 0], [512, 1536]),
                tap([0, 1], [1536, 512]),
                tap([0, 1], [512, 1536]),
                tap([1, 1], [1536, 512])
            ]
        );
    }

    #[test]
    fn hand_computed_values() {
        // 2x1 to 4x1 (positions as above). At 0.25: S = 100 * 512 = 51200, S >> 4 = 3200,
        // 2048 * 3200 >> 16 = 100, (100 + 2) >> 2 = 25. At 0.75: 153600 -> 9600 -> 300 -> 75.
        assert_eq!(
            resize_linear(&[0, 100], (2, 1), (4, 1), 1),
            [0, 25, 75, 100]
        );
        // 3 to 2 (positions 0.25 and 1.75) of [1, 2, 4], exactly 1.25 and 3.5:
        // 1 * 1536 + 2 * 512 = 2560 -> 160 -> 5 -> (5 + 2) >> 2 = 1, and
        // 2 * 512 + 4 * 1536 = 7168 -> 448 -> 14 -> (14 + 2) >> 2 = 4.
        assert_eq!(resize_linear(&[1, 2, 4], (3, 1), (2, 1), 1), [1, 4]);
        // 2 to 3 of [0, 255]: the middle is at 0.5, 255 * 1024 = 261120 -> 16320 -> 510 -> 128.
        assert_eq!(resize_linear(&[0, 255], (2, 1), (3, 1), 1), [0, 128, 255]);
        // Rows: 1x2 to 1x3 of [1, 2] (positions -0.1667, 0.5, 1.1667). The top row mixes row 0
        // with itself: (341 * 128 >> 16) + (1707 * 128 >> 16) = 0 + 3, (3 + 2) >> 2 = 1. The
        // middle: (1024 * 128 >> 16) + (1024 * 256 >> 16) = 2 + 4, (6 + 2) >> 2 = 2.
        assert_eq!(resize_linear(&[1, 2], (1, 2), (1, 3), 1), [1, 2, 2]);
    }

    #[test]
    fn a_flat_image_stays_flat() {
        // The two truncated terms still add up to the value.
        for v in [0u8, 1, 7, 128, 254, 255] {
            assert_eq!(resize_linear(&[v], (1, 1), (3, 3), 1), [v; 9]);
            assert_eq!(resize_linear(&[v; 20], (5, 4), (2, 3), 1), [v; 6]);
        }
    }

    /// Outputs of `cv2.resize(src, size, interpolation=cv2.INTER_LINEAR)` with opencv-python
    /// 5.0.0, recorded so the test does not need OpenCV. Rounding the exact interpolation once
    /// gives 1 of the 20 shrunk samples and 16 of the 130 enlarged ones one level higher.
    #[test]
    fn matches_recorded_opencv_output() {
        #[rustfmt::skip]
        let src: [u8; 63] = [
            66, 233, 63, 96, 213, 22, 150, 71, 224,
            188, 19, 46, 135, 252, 238, 138, 246, 254,
            217, 2, 153, 209, 176, 207, 65, 82, 253,
            81, 252, 26, 67, 171, 134, 241, 21, 98,
            135, 98, 78, 73, 29, 74, 5, 60, 92,
            159, 8, 105, 188, 177, 249, 50, 167, 171,
            91, 236, 158, 31, 42, 244, 167, 206, 204,
        ];
        #[rustfmt::skip]
        let shrunk: [u8; 20] = [
            128, 67, 228, 137, 196, 133, 148, 175, 109, 170,
            124, 72, 47, 44, 78, 130, 128, 93, 148, 191,
        ];
        #[rustfmt::skip]
        let enlarged: [u8; 130] = [
            66, 156, 194, 76, 83, 132, 213, 81, 71, 144, 89, 141, 224,
            133, 123, 101, 58, 93, 153, 234, 169, 142, 145, 162, 201, 240,
            195, 98, 28, 68, 122, 178, 233, 231, 188, 126, 185, 227, 254,
            215, 101, 36, 136, 183, 197, 180, 200, 155, 70, 85, 165, 253,
            128, 148, 143, 77, 99, 134, 173, 163, 167, 169, 74, 93, 152,
            100, 153, 162, 56, 59, 85, 121, 115, 130, 149, 63, 63, 96,
            136, 113, 90, 80, 79, 65, 36, 68, 54, 12, 52, 79, 96,
            153, 87, 46, 93, 136, 153, 140, 185, 141, 47, 117, 145, 151,
            128, 119, 115, 127, 122, 117, 116, 206, 191, 109, 165, 185, 186,
            91, 169, 218, 164, 80, 34, 42, 182, 214, 170, 197, 205, 204,
        ];
        assert_eq!(resize_linear(&src, (9, 7), (5, 4), 1), shrunk);
        assert_eq!(resize_linear(&src, (9, 7), (13, 10), 1), enlarged);
    }

    #[test]
    fn the_table_driven_version_matches_the_formula_in_every_direction() {
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        for &(w, h, dw, dh) in &[
            (17, 13, 5, 7),
            (5, 7, 17, 13),
            (31, 9, 31, 20),
            (8, 8, 4, 4),
            (9, 7, 4, 3),
            (1, 5, 6, 2),
            (621, 20, 608, 30),
            (3, 3, 1, 1),
        ] {
            let gray: Vec<u8> = (0..w * h).map(|_| next()).collect();
            assert_eq!(
                resize_linear(&gray, (w, h), (dw, dh), 1),
                by_formula(&gray, (w, h), (dw, dh)),
                "{w}x{h} -> {dw}x{dh}"
            );
            // Three channels: each plane resized alone gives the same as interleaved.
            let rgb: Vec<u8> = (0..w * h * 3).map(|_| next()).collect();
            let out = resize_linear(&rgb, (w, h), (dw, dh), 3);
            for c in 0..3 {
                let plane: Vec<u8> = rgb.iter().skip(c).step_by(3).copied().collect();
                let want = by_formula(&plane, (w, h), (dw, dh));
                let got: Vec<u8> = out.iter().skip(c).step_by(3).copied().collect();
                assert_eq!(got, want, "{w}x{h} -> {dw}x{dh} channel {c}");
            }
        }
    }
}

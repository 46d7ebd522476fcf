//! Our own wgpu pipeline for the image under the boxes: 8-bit RGBA with brightness/contrast,
//! and 16-bit grayscale (an `R16Uint` texture, all 16 bits) with window/level. Textures are
//! created and filled on the decoding threads; the paint callback only binds and draws.

use std::sync::Arc;

use eframe::egui::{self, Rect};
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, ScreenDescriptor, wgpu};

/// One mip level of CPU pixels, rows top to bottom, no padding.
#[derive(Clone, Debug, PartialEq)]
pub struct Level<T> {
    pub width: u32,
    pub height: u32,
    pub data: Vec<T>,
}

/// Decoded pixels ready for upload, with their mip chain (level 0 first).
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// 8-bit RGBA, 4 bytes per pixel.
    Rgba8(Vec<Level<u8>>),
    /// 16-bit grayscale, one `u16` per pixel.
    Gray16(Vec<Level<u16>>),
}

impl Pixels {
    /// Width and height of level 0.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Pixels::Rgba8(l) => l.first().map_or((0, 0), |l| (l.width, l.height)),
            Pixels::Gray16(l) => l.first().map_or((0, 0), |l| (l.width, l.height)),
        }
    }
}

/// Which shader draws an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelKind {
    Rgba8,
    Gray16,
}

/// The uniform block both shaders read (see `shaders/*.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Uniforms {
    /// The image quad in normalised device coordinates of the canvas: left, top, right, bottom.
    pub rect: [f32; 4],
    /// RGBA: brightness, contrast. Gray16: window low, window high.
    pub adjust: [f32; 4],
    /// Gray16: the mip level to read.
    pub extra: [f32; 4],
}

impl Uniforms {
    /// Places `image_on_screen` inside the `canvas` viewport.
    pub fn placed(canvas: Rect, image_on_screen: Rect) -> Self {
        let ndc_x = |x: f32| (x - canvas.min.x) / canvas.width().max(1.0) * 2.0 - 1.0;
        let ndc_y = |y: f32| 1.0 - (y - canvas.min.y) / canvas.height().max(1.0) * 2.0;
        Self {
            rect: [
                ndc_x(image_on_screen.min.x),
                ndc_y(image_on_screen.min.y),
                ndc_x(image_on_screen.max.x),
                ndc_y(image_on_screen.max.y),
            ],
            adjust: [0.0, 1.0, 0.0, 0.0],
            extra: [0.0; 4],
        }
    }
}

/// An image on the GPU: its texture, uniform buffer and bind group.
pub struct GpuImage {
    pub kind: PixelKind,
    pub width: u32,
    pub height: u32,
    pub mip_levels: u32,
    bind_group: wgpu::BindGroup,
    uniforms: wgpu::Buffer,
    _texture: wgpu::Texture,
}

/// Device handles and layouts shared with the decoding threads (cheap to clone).
#[derive(Clone)]
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    rgba_layout: wgpu::BindGroupLayout,
    gray_layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    /// The largest texture side the device takes.
    pub max_side: u32,
}

/// Pipelines kept in egui's callback resources for the paint callback.
struct Pipelines {
    rgba: wgpu::RenderPipeline,
    gray: wgpu::RenderPipeline,
}

fn uniform_entry() -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn texture_entry(sample_type: wgpu::TextureSampleType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 1,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type,
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        count: None,
    }
}

fn pipeline(
    device: &wgpu::Device,
    label: &str,
    source: &str,
    layout: &wgpu::BindGroupLayout,
    format: wgpu::TextureFormat,
) -> wgpu::RenderPipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState {
            topology: wgpu::PrimitiveTopology::TriangleStrip,
            ..wgpu::PrimitiveState::default()
        },
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format,
                blend: None,
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    })
}

impl GpuContext {
    /// Builds the pipelines and registers them with egui's renderer.
    pub fn new(render_state: &egui_wgpu::RenderState) -> Self {
        let device = &render_state.device;
        let rgba_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("loupe image rgba"),
            entries: &[
                uniform_entry(),
                texture_entry(wgpu::TextureSampleType::Float { filterable: true }),
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let gray_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("loupe image gray16"),
            entries: &[
                uniform_entry(),
                texture_entry(wgpu::TextureSampleType::Uint),
            ],
        });
        let format = render_state.target_format;
        let pipelines = Pipelines {
            rgba: pipeline(
                device,
                "loupe image rgba",
                include_str!("../../shaders/image_rgba.wgsl"),
                &rgba_layout,
                format,
            ),
            gray: pipeline(
                device,
                "loupe image gray16",
                include_str!("../../shaders/image_gray16.wgsl"),
                &gray_layout,
                format,
            ),
        };
        render_state
            .renderer
            .write()
            .callback_resources
            .insert(pipelines);
        // Magnified pixels stay square (labelling needs to see pixel edges); minified ones
        // are smoothed through the mip chain.
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("loupe image"),
            mag_filter: wgpu::FilterMode::Nearest,
            min_filter: wgpu::FilterMode::Linear,
            mipmap_filter: wgpu::MipmapFilterMode::Linear,
            ..wgpu::SamplerDescriptor::default()
        });
        Self {
            device: device.clone(),
            queue: render_state.queue.clone(),
            rgba_layout,
            gray_layout,
            sampler,
            max_side: device.limits().max_texture_dimension_2d,
        }
    }

    /// Creates a texture with every mip level filled, and its bind group. Called on the
    /// decoding threads.
    pub fn upload(&self, pixels: &Pixels) -> Result<GpuImage, String> {
        let (width, height) = pixels.size();
        if width > self.max_side || height > self.max_side {
            return Err(too_large_message(width, height, self.max_side));
        }
        // Capture validation and memory errors of this upload as an error for this image,
        // instead of wgpu's default handler (which panics).
        let memory_scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation_scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (kind, format, levels) = match pixels {
            Pixels::Rgba8(l) => (PixelKind::Rgba8, wgpu::TextureFormat::Rgba8Unorm, l.len()),
            Pixels::Gray16(l) => (PixelKind::Gray16, wgpu::TextureFormat::R16Uint, l.len()),
        };
        let mip_levels = u32::try_from(levels.max(1)).unwrap_or(1);
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("loupe image"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: mip_levels,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let write = |level: u32, w: u32, h: u32, bytes_per_pixel: u32, data: &[u8]| {
            self.queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: level,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                data,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(w * bytes_per_pixel),
                    rows_per_image: Some(h),
                },
                wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: 1,
                },
            );
        };
        match pixels {
            Pixels::Rgba8(levels) => {
                for (i, l) in (0u32..).zip(levels) {
                    write(i, l.width, l.height, 4, &l.data);
                }
            }
            Pixels::Gray16(levels) => {
                for (i, l) in (0u32..).zip(levels) {
                    write(i, l.width, l.height, 2, bytemuck::cast_slice(&l.data));
                }
            }
        }
        let uniforms = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loupe image uniforms"),
            size: std::mem::size_of::<Uniforms>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: uniforms.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(&view),
            },
        ];
        if kind == PixelKind::Rgba8 {
            entries.push(wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::Sampler(&self.sampler),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("loupe image"),
            layout: match kind {
                PixelKind::Rgba8 => &self.rgba_layout,
                PixelKind::Gray16 => &self.gray_layout,
            },
            entries: &entries,
        });
        let errors = [
            scope_result(validation_scope.pop()),
            scope_result(memory_scope.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(format!("the graphics device refused the image: {e}"));
        }
        Ok(GpuImage {
            kind,
            width,
            height,
            mip_levels,
            bind_group,
            uniforms,
            _texture: texture,
        })
    }
}

/// The error an error scope caught. On native backends the future is ready at once; if it is
/// not, nothing is known and the upload counts as fine.
fn scope_result(
    future: impl std::future::Future<Output = Option<wgpu::Error>>,
) -> Option<wgpu::Error> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(e) => e,
        std::task::Poll::Pending => None,
    }
}

/// The message shown instead of an image the GPU cannot hold.
pub fn too_large_message(width: u32, height: u32, max_side: u32) -> String {
    format!(
        "This image is {width} × {height} pixels; this graphics device shows at most {max_side} pixels per side. \
         Boxes can still be edited, but the picture cannot be shown."
    )
}

/// Draws one image in the canvas: `prepare` writes its uniforms, `paint` draws a quad.
pub struct ImageCallback {
    pub image: Arc<GpuImage>,
    pub uniforms: Uniforms,
}

impl CallbackTrait for ImageCallback {
    fn prepare(
        &self,
        _device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen_descriptor: &ScreenDescriptor,
        _egui_encoder: &mut wgpu::CommandEncoder,
        _resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        queue.write_buffer(&self.image.uniforms, 0, bytemuck::bytes_of(&self.uniforms));
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        let Some(pipelines) = resources.get::<Pipelines>() else {
            return;
        };
        render_pass.set_pipeline(match self.image.kind {
            PixelKind::Rgba8 => &pipelines.rgba,
            PixelKind::Gray16 => &pipelines.gray,
        });
        render_pass.set_bind_group(0, &self.image.bind_group, &[]);
        render_pass.draw(0..4, 0..1);
    }
}

/// The mip level the 16-bit shader should read at `zoom` screen pixels per image pixel: the
/// finest level that is not finer than the screen.
pub fn mip_level_for(zoom_in_pixels: f32, mip_levels: u32) -> u32 {
    if zoom_in_pixels >= 1.0 || mip_levels <= 1 {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let level = (1.0 / zoom_in_pixels).log2().floor().max(0.0) as u32;
    level.min(mip_levels - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::{pos2, vec2};

    #[test]
    fn the_quad_maps_the_canvas_to_ndc() {
        let canvas = Rect::from_min_size(pos2(100.0, 50.0), vec2(200.0, 100.0));
        let u = Uniforms::placed(canvas, canvas);
        assert_eq!(u.rect, [-1.0, 1.0, 1.0, -1.0]);
        let half = Rect::from_min_size(pos2(200.0, 100.0), vec2(100.0, 50.0));
        assert_eq!(Uniforms::placed(canvas, half).rect, [0.0, 0.0, 1.0, -1.0]);
    }

    #[test]
    fn mip_levels_follow_zoom() {
        assert_eq!(mip_level_for(2.0, 5), 0);
        assert_eq!(mip_level_for(0.5, 5), 1);
        assert_eq!(mip_level_for(0.3, 5), 1);
        assert_eq!(mip_level_for(0.01, 5), 4);
        assert_eq!(mip_level_for(0.01, 1), 0);
    }
}

// Draws an 8-bit RGBA image as one quad, with brightness and contrast.
//
// The quad covers `u.rect` (normalised device coordinates of the canvas viewport: left, top,
// right, bottom). Magnified pixels stay sharp (nearest), minified ones use the mip chain.

struct Uniforms {
    rect: vec4<f32>,
    // x: brightness (added, -1..1), y: contrast (multiplier about mid-grey).
    adjust: vec4<f32>,
    // Unused here; the 16-bit shader reads its mip level from x.
    extra: vec4<f32>,
};

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var image: texture_2d<f32>;
@group(0) @binding(2) var image_sampler: sampler;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    // A triangle strip: (0,0), (1,0), (0,1), (1,1).
    let corner = vec2<f32>(f32(index & 1u), f32(index >> 1u));
    var out: VertexOut;
    out.position = vec4<f32>(mix(u.rect.x, u.rect.z, corner.x), mix(u.rect.y, u.rect.w, corner.y), 0.0, 1.0);
    out.uv = corner;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let c = textureSample(image, image_sampler, in.uv);
    let rgb = (c.rgb - vec3<f32>(0.5)) * u.adjust.y + vec3<f32>(0.5) + vec3<f32>(u.adjust.x);
    return vec4<f32>(clamp(rgb, vec3<f32>(0.0), vec3<f32>(1.0)), 1.0);
}

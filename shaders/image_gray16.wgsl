// Draws a 16-bit grayscale image (all 16 bits, in an R16Uint texture) with a window/level:
// values at or below `low` are black, at or above `high` white, linear in between.
//
// Integer textures cannot be filtered, so the fragment reads texels with textureLoad from the
// mip level the CPU chose for the current zoom.

struct Uniforms {
    rect: vec4<f32>,
    // x: window low, y: window high (raw 16-bit values).
    adjust: vec4<f32>,
    // x: mip level to read.
    extra: vec4<f32>,
};

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var image: texture_2d<u32>;

struct VertexOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VertexOut {
    let corner = vec2<f32>(f32(index & 1u), f32(index >> 1u));
    var out: VertexOut;
    out.position = vec4<f32>(mix(u.rect.x, u.rect.z, corner.x), mix(u.rect.y, u.rect.w, corner.y), 0.0, 1.0);
    out.uv = corner;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let level = i32(u.extra.x);
    let size = vec2<i32>(textureDimensions(image, level));
    let texel = clamp(vec2<i32>(floor(in.uv * vec2<f32>(size))), vec2<i32>(0), size - vec2<i32>(1));
    let value = f32(textureLoad(image, texel, level).r);
    let g = clamp((value - u.adjust.x) / max(u.adjust.y - u.adjust.x, 1.0), 0.0, 1.0);
    return vec4<f32>(g, g, g, 1.0);
}

//! The desktop app (egui/eframe, wgpu).

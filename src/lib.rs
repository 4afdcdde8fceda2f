//! kd-wgpu: knowledge distillation on Fashion-MNIST with every kernel in WGSL on wgpu.
//!
//! - [`gpu`]: device, tensors, pipelines, dispatches.
//! - [`ops`]: one module per WGSL kernel family, each with its CPU reference.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod experiment;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod plot;
pub mod progress;
pub mod train;
pub mod web;

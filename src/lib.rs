//! kd-wgpu: knowledge distillation on Fashion-MNIST with every kernel in WGSL on wgpu.
//!
//! The engine, from the bottom up:
//! - [`gpu`]: device, tensors, pipelines, dispatches, tuning;
//! - [`ops`]: one module per WGSL kernel family, each with its CPU reference;
//! - [`model`]: networks as layer lists (Keras's layers), their weights and a CPU reference;
//! - [`train`]: a network's forward and backward passes and losses lowered to plans of
//!   dispatches, and the loop that records and submits them;
//! - [`data`]: Fashion-MNIST, read, checked and downloaded.
//!
//! Around it, the two halves of the program:
//! - [`config`]: the experiment's settings and which results each one changes;
//! - [`run`]: what runs an experiment and writes its metrics;
//! - [`results`]: what reads finished experiments (report, statistics, merge, compare, plots);
//!
//! and [`checkpoint`] (weight files), [`digest`], [`progress`], [`bench`], [`web`].

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod digest;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod progress;
pub mod results;
pub mod run;
pub mod train;
pub mod web;

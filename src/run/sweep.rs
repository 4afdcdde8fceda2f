//! The sweep: distilled students over the --sweep-alpha x --sweep-temperature grid.

use super::fit::Phases;
use super::seeds::StudentSeeds;
use super::shards;
use super::students::StudentSpec;
use super::teacher::Teacher;
use super::weights::{StartingWeights, WeightSaver};
use crate::model::Architecture;
use crate::results::SweepPoint;
use crate::train::Loss;
use anyhow::Result;

impl Phases<'_> {
    /// Distilled students over the --sweep-alpha x --sweep-temperature grid, all from the first
    /// run's initial weights and sample order, so that only alpha and the temperature differ.
    pub fn sweep(
        &self,
        student: &Architecture,
        teacher: &Teacher,
        starting: &StartingWeights,
        saver: &WeightSaver,
    ) -> Result<Vec<SweepPoint>> {
        // The whole grid, or a shard's cells of it.
        let grid: Vec<(f32, f32)> = shards::sweep_cells(self.cfg).into_iter().map(|(_, cell)| cell).collect();
        if grid.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(done) = self.checkpoints.and_then(|c| c.progress().sweep) {
            return Ok(done);
        }
        // The first run's distilled student's start and order.
        let seeds = StudentSeeds::of(self.cfg.seed, 0, false);
        let init = starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seeds.distilled_init));
        println!("Sweep: {} distilled students side by side", grid.len());
        let specs: Vec<StudentSpec> = grid
            .iter()
            .map(|&(alpha, temperature)| StudentSpec {
                name: format!("distilled (alpha {alpha}, T {temperature})"),
                init: init.clone(),
                distill: Some(Loss::Distillation(self.cfg.distill_loss(alpha, temperature))),
                order_seed: seeds.distilled_order,
                save_as: None,
            })
            .collect();
        let outcomes = self.train_students("sweep", student, teacher, &specs, saver)?;
        let points: Vec<SweepPoint> = grid
            .iter()
            .zip(outcomes)
            .map(|(&(alpha, temperature), o)| SweepPoint {
                alpha,
                temperature,
                result: o.student,
                teacher_after_distillation: o.teacher_after,
            })
            .collect();
        if let Some(c) = self.checkpoints {
            c.phase_done("sweep", |p| p.sweep = Some(points.clone()), Vec::new())?;
        }
        Ok(points)
    }
}

//! The students of each run: the distilled and the scratch student trained side by side from
//! paired starts, `--runs` times over seeds (or a shard's share), each saved and evaluated.

use super::fit::{FitJob, JobTeacher, Phases, TrainImages};
use super::scratch_from::EarlierScratch;
use super::seeds::StudentSeeds;
use super::shards;
use super::teacher::Teacher;
use super::weights::{StartingWeights, WeightSaver};
use crate::model::Architecture;
use crate::progress;
use crate::results::{RunResult, StudentPair};
use crate::train::{EpochStats, Loss, Model};
use anyhow::Result;

/// One student to train: its name, starting weights, loss and files to save.
pub struct StudentSpec {
    pub name: String,
    pub init: Vec<f32>,
    /// The distillation loss; None trains on plain cross-entropy (the scratch student).
    pub distill: Option<Loss>,
    pub order_seed: u64,
    /// The student's file, and (co-trained teacher) the file of its teacher after training.
    pub save_as: Option<(String, String)>,
}

/// Mixed into a distilled student's order seed for its feature term's projection.
const PROJECTION_SEED: u64 = 0x7072_6f6a_6563_7469;

/// The frozen teacher's layers (a feature term distils from one of them).
fn teacher_layers(teacher: &Teacher) -> Result<Vec<crate::model::PlacedLayer>> {
    match teacher {
        Teacher::Frozen { model, .. } => Ok(model.arch.walk()),
        Teacher::CoTrained { .. } => anyhow::bail!("a feature term needs a frozen teacher"),
    }
}

/// A trained student's record and, where its teacher trained along, the teacher's after it.
pub struct StudentOutcome {
    pub student: RunResult,
    pub teacher_after: Option<RunResult>,
}

impl Phases<'_> {
    /// Trains the students side by side, saves those with a file name, and evaluates each on
    /// the test set (a distilled one with its combined loss, against its teacher as it ends).
    pub fn train_students(
        &self,
        group: &str,
        student: &Architecture,
        teacher: &Teacher,
        specs: &[StudentSpec],
        saver: &WeightSaver,
    ) -> Result<Vec<StudentOutcome>> {
        let gpu = self.gpu;
        // Dropout and the shifts draw from the student's sample-order seed: paired students
        // draw the same masks and see the same images.
        let shift = self.cfg.student_augment;
        let models = specs
            .iter()
            .map(|s| Model::new(gpu, student, &s.init).map(|m| m.seeded(s.order_seed).augmented(shift)))
            .collect::<Result<Vec<_>>>()?;
        // A co-trained teacher diverges with its student: every distilled student gets a copy.
        let copies = specs
            .iter()
            .map(|s| match (teacher, s.distill) {
                (Teacher::CoTrained { arch, weights }, Some(_)) => Model::new(gpu, arch, weights).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        // A feature term's projection, per distilled student (drawn from its order seed).
        let feature = self.cfg.feature()?;
        let projections = specs
            .iter()
            .map(|s| match (feature, s.distill) {
                (Some(f), Some(_)) if f.project => {
                    let (t, st) = (&teacher_layers(teacher)?[f.teacher_layer], &student.walk()[f.student_layer]);
                    Model::projection(gpu, st.output, t.output.channels(), s.order_seed ^ PROJECTION_SEED).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let jobs: Vec<FitJob> = specs
            .iter()
            .zip(&models)
            .zip(&copies)
            .zip(&projections)
            .map(|(((s, model), copy), projection)| FitJob {
                name: s.name.clone(),
                model,
                loss: s.distill.unwrap_or(Loss::CrossEntropy),
                teacher: match (teacher, copy, s.distill, feature) {
                    (_, Some(copy), _, _) => JobTeacher::CoTrained(copy),
                    (Teacher::Frozen { model, features, train, .. }, None, Some(_), Some(feature)) => {
                        let tables = features.as_ref().map(|f| (f, train));
                        JobTeacher::Features { teacher: model, feature, projection: projection.as_ref(), tables }
                    }
                    (Teacher::Frozen { train, .. }, None, Some(_), None) => JobTeacher::Table(train),
                    _ => JobTeacher::None,
                },
                order_seed: s.order_seed,
                images: match (self.labelled, s.distill) {
                    (None, _) => TrainImages::All,
                    (Some(_), Some(_)) => TrainImages::PartlyLabelled,
                    (Some(subset), None) => TrainImages::Subset(subset),
                },
            })
            .collect();
        let all_epochs = self.fit_together(group, &jobs, self.cfg.student_epochs, "acc")?;
        let mut outcomes = Vec::with_capacity(specs.len());
        for (((spec, model), copy), epochs) in specs.iter().zip(&models).zip(&copies).zip(all_epochs) {
            outcomes.push(self.finish_student(teacher, spec, model, copy.as_ref(), epochs, saver)?);
        }
        Ok(outcomes)
    }

    /// Saves a trained student (and its co-trained teacher) and evaluates them.
    fn finish_student(
        &self,
        teacher: &Teacher,
        spec: &StudentSpec,
        model: &Model,
        copy: Option<&Model>,
        epochs: Vec<EpochStats>,
        saver: &WeightSaver,
    ) -> Result<StudentOutcome> {
        if let Some((file, teacher_file)) = &spec.save_as {
            saver.save(self.gpu, file, model)?;
            if let Some(copy) = copy {
                saver.save(self.gpu, teacher_file, copy)?;
            }
        }
        let teacher_after = match copy {
            Some(copy) => {
                println!("{}: its teacher after distillation", spec.name);
                let test = self.evaluate("teacher after distillation", copy, Loss::CrossEntropy, None, "accuracy")?;
                // Its test logits are what the student's combined loss is measured against.
                let (ce, logits) = (test.stats.loss, test.logits.clone());
                Some((RunResult::from_epochs("teacher after", Vec::new(), test.record(), ce, 0), logits))
            }
            None => None,
        };
        println!("{}: evaluation", spec.name);
        let loss = spec.distill.unwrap_or(Loss::CrossEntropy);
        let test_table = match (&teacher_after, teacher) {
            (Some((_, table)), _) => Some(table),
            (None, Teacher::Frozen { test, .. }) if spec.distill.is_some() => Some(test),
            _ => None,
        };
        let test = self.evaluate(&spec.name, model, loss, test_table, "acc")?;
        // The combined loss is not comparable with plain cross-entropy: report that too.
        let ce = match spec.distill {
            None => test.stats.loss,
            Some(_) => self.test(&spec.name, model, Loss::CrossEntropy, None, None)?.stats.loss,
        };
        let label = if spec.distill.is_some() { "distilled" } else { "scratch" };
        Ok(StudentOutcome {
            student: RunResult::from_epochs(label, epochs, test.record(), ce, self.data.train.samples),
            teacher_after: teacher_after.map(|(r, _)| r),
        })
    }

    /// The distilled and the scratch student, `--runs` times over seeds, with one teacher; the
    /// scratch students from `earlier` where given (`--scratch-from`), not trained again.
    pub fn student_runs(
        &self,
        student: &Architecture,
        teacher: &Teacher,
        starting: &StartingWeights,
        earlier: Option<&EarlierScratch>,
        saver: &WeightSaver,
    ) -> Result<Vec<StudentPair>> {
        let (cfg, runs) = (self.cfg, self.cfg.runs.max(1));
        // All runs, or a shard's share; seeds and file names follow each run's own index.
        let indices = shards::run_indices(cfg);
        let here = indices.len();
        // Runs finished before an interruption.
        let mut pairs = self.checkpoints.map(|c| c.progress().pairs).unwrap_or_default();
        let first = pairs.len();
        // Only whole runs done here set the pace: a run resumed part-way is not one.
        let part_way = self.checkpoints.is_some_and(|c| c.has_pending_training());
        let timed_from = first + usize::from(part_way);
        let mut started = std::time::Instant::now();
        for (k, &r) in indices.iter().enumerate().skip(first) {
            if k == timed_from {
                started = std::time::Instant::now();
            }
            progress::time_left(
                &format!("students' runs: {k} of {here} done"),
                k.saturating_sub(timed_from),
                here - k,
                started.elapsed().as_secs_f64(),
            );
            // With several runs (or --student-init) the two students of a run are paired (see
            // StudentSeeds); a single run keeps the seed program's fresh initialisation of the
            // scratch student (Keras's clone_model).
            let paired = runs > 1 || starting.student_init.is_some();
            let seeds = StudentSeeds::of(cfg.seed, r, paired);
            if runs > 1 {
                println!("Students, run {}/{runs} (seed {})", r + 1, seeds.run);
            }
            let init = |seed| starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seed));
            let (distilled_init, scratch_init) = (init(seeds.distilled_init), init(seeds.scratch_init));
            let suffix = if r == 0 { String::new() } else { format!("-run{}", r + 1) };
            let files = |name: &str| {
                Some((format!("{name}{suffix}.safetensors"), format!("teacher-after-distillation{suffix}.safetensors")))
            };
            let mut specs = vec![StudentSpec {
                name: "distilled student".into(),
                init: distilled_init,
                distill: Some(Loss::Distillation(cfg.distill_loss(cfg.alpha, cfg.temperature))),
                order_seed: seeds.distilled_order,
                save_as: files("student"),
            }];
            if earlier.is_none() {
                specs.push(StudentSpec {
                    name: "scratch student".into(),
                    init: scratch_init,
                    distill: None,
                    order_seed: seeds.scratch_order,
                    save_as: files("scratch"),
                });
            }
            let group = format!("students run {}", r + 1);
            let mut outcomes = self.train_students(&group, student, teacher, &specs, saver)?.into_iter();
            let distilled = outcomes.next().expect("the distilled student");
            let scratch = match earlier {
                Some(earlier) => {
                    println!("scratch student: from {} (run {})", earlier.path().display(), r + 1);
                    earlier.scratch(r).clone()
                }
                None => outcomes.next().expect("the scratch student").student,
            };
            pairs.push(StudentPair {
                seed: seeds.run,
                distilled: distilled.student,
                scratch,
                teacher_after_distillation: distilled.teacher_after,
            });
            if let Some(c) = self.checkpoints {
                c.phase_done(&group, |p| p.pairs = pairs.clone(), Vec::new())?;
            }
        }
        Ok(pairs)
    }
}

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use kd_wgpu::checkpoint;
use kd_wgpu::config::{Config, DistillTeacher, DistillTerm, Shard, WeightFiles};
use kd_wgpu::data::{LoadOptions, UPSTREAM_URL};
use kd_wgpu::gpu::{self, BackendChoice, MatmulVariant, TuneMode};
use kd_wgpu::model::{keras, Architecture, Channels};
use kd_wgpu::results::{self, plot, Report};
use kd_wgpu::run::resume::{self, Interrupted};
use kd_wgpu::run::{self, Checkpointing};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The seed program's settings: every flag's default comes from here.
static DEFAULTS: std::sync::LazyLock<Config> = std::sync::LazyLock::new(Config::default);

/// Knowledge distillation on Fashion-MNIST, every kernel in WGSL on wgpu.
///
/// Without a subcommand: trains the teacher, distils it into the student, trains the student
/// from scratch, and compares them on the test set, as the Keras seed program does.
#[derive(Parser)]
#[command(name = "kd-wgpu", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Print every adapter of --backend (all with `auto`) and exit.
    #[arg(long)]
    list_adapters: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Time every kernel of a training step at the models' real shapes, whole steps, and a
    /// CPU matrix product for scale.
    Bench {
        /// Timed runs per kernel (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Steps per whole-step timing.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Also write the results as JSON.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
    /// Write the students' part of the program (the distilled and the scratch student's
    /// training and evaluation plans in the buffer kernel family, their weights, the teacher's
    /// logits, the data slice) into DIR for the web page in web/. The teacher comes from
    /// --teacher or is trained first.
    ExportWeb {
        /// The export's directory (created if needed).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Put the --metrics-out files of an experiment's shards (--shard I/K) together: print the
    /// report and write the metrics that one process running every run would have given.
    Merge {
        /// The shards' metrics files, one per shard, in any order.
        #[arg(value_name = "SHARD.json", required = true)]
        files: Vec<PathBuf>,
        /// Write the merged metrics as JSON.
        #[arg(long, value_name = "PATH")]
        metrics_out: Option<PathBuf>,
        /// Draw the merged runs' plots, as the experiment's --plot.
        #[arg(long, value_name = "PATH.svg")]
        plot: Option<PathBuf>,
    },
    /// Put several experiments' paired results side by side (the --metrics-out files of
    /// --runs experiments, or merged shards): a Markdown table with a row per experiment, as
    /// README's "When does distillation help?", and with --plot a chart of the same rows.
    Compare {
        /// Each experiment's metrics file, with the row's label before `=` (the file's name
        /// without `.json` where none is given).
        #[arg(value_name = "[LABEL=]METRICS.json", required = true)]
        files: Vec<String>,
        /// Draw each experiment's paired difference with its interval, overall and per class.
        #[arg(long, value_name = "PATH.svg")]
        plot: Option<PathBuf>,
        /// Also compare every other experiment's distilled students with those of the one
        /// labelled LABEL, run by run (where their runs pair: the same seeds and scratch students).
        #[arg(long, value_name = "LABEL")]
        against: Option<String>,
    },
    /// Evaluate saved weights on the test set: cross-entropy loss and accuracy. The network is
    /// the one the file's metadata records.
    Evaluate {
        /// Refuse the file unless it holds this model (with --teacher-channels / --student-channels).
        #[arg(long, value_enum)]
        model: Option<ModelChoice>,
        /// A safetensors weights file (as written by --save-dir or scripts/keras_to_safetensors.py).
        #[arg(long, value_name = "PATH")]
        weights: PathBuf,
        /// Also write the test logits as a float32 (N, 10) .npy file.
        #[arg(long, value_name = "PATH")]
        logits_out: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum ModelChoice {
    Teacher,
    Student,
}

impl ModelChoice {
    fn arch(self, cfg: &Config) -> Result<Architecture> {
        match self {
            ModelChoice::Teacher => cfg.teacher(),
            ModelChoice::Student => cfg.student(),
        }
    }
}

#[derive(Args, Clone)]
struct DeviceArgs {
    /// Graphics API to run on.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    backend: BackendChoice,
    /// Kernel family: auto picks `subgroup` (texture-fed kernels, subgroup matrix product) on
    /// CPU drivers such as lavapipe, `tiled` (buffer-fed kernels) on GPUs.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    matmul: MatmulVariant,
    /// Where a kernel has several entries that give the same bits (the matrix product's tiles),
    /// time them on this device and run the fastest: `cached` times what the cache in
    /// $XDG_CACHE_HOME/kd-wgpu (~/.cache/kd-wgpu) lacks, `full` times everything again, `off`
    /// runs the built-in defaults.
    #[arg(long, value_enum, default_value = "cached", global = true)]
    tune: TuneMode,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Directory holding the four Fashion-MNIST IDX files (.gz or unpacked); the only place looked in when given.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Never download the data set.
    #[arg(long, global = true)]
    offline: bool,
    #[arg(long, default_value_t = DEFAULTS.teacher_epochs, global = true)]
    teacher_epochs: usize,
    #[arg(long, default_value_t = DEFAULTS.student_epochs, global = true)]
    student_epochs: usize,
    #[arg(long, default_value_t = DEFAULTS.batch_size, global = true)]
    batch_size: usize,
    /// Filters of the teacher's two convolutions.
    #[arg(long, value_name = "C1,C2", default_value_t = Channels(DEFAULTS.teacher_channels), global = true)]
    teacher_channels: Channels,
    /// Filters of the students' two convolutions.
    #[arg(long, value_name = "C1,C2", default_value_t = Channels(DEFAULTS.student_channels), global = true)]
    student_channels: Channels,
    /// The teacher's layers from a Keras model file (the JSON of `model.to_json()` for a
    /// Sequential) instead of the seed's network.
    #[arg(long, value_name = "FILE", conflicts_with = "teacher_channels", global = true)]
    teacher_layers: Option<PathBuf>,
    /// The students' layers from a Keras model file, as --teacher-layers.
    #[arg(long, value_name = "FILE", conflicts_with = "student_channels", global = true)]
    student_layers: Option<PathBuf>,
    /// Weight of the hard-label loss in distillation, in [0, 1].
    #[arg(long, default_value_t = DEFAULTS.alpha, allow_negative_numbers = true, global = true)]
    alpha: f32,
    /// Distillation temperature, above 0.
    #[arg(long, default_value_t = DEFAULTS.temperature, allow_negative_numbers = true, global = true)]
    temperature: f32,
    #[arg(long, default_value_t = DEFAULTS.learning_rate, allow_negative_numbers = true, global = true)]
    learning_rate: f32,
    /// `frozen`: distillation as intended, the teacher stays as trained. `trainable`: what the
    /// seed program computes under Keras 3, whose Distiller trains the teacher along with the
    /// student by one Adam (each distilled student gets its own copy of the teacher).
    #[arg(long, value_enum, default_value_t = DEFAULTS.distill_teacher)]
    distill_teacher: DistillTeacher,
    /// A distillation loss, as keras.distillation composes them (repeat for several):
    /// `logits` (KL of the softened distributions times T^2) or `logits:mse` (MSE of the
    /// logits divided by T).
    #[arg(long = "distill", value_name = "SPEC", default_value = "logits", global = true)]
    distill: Vec<DistillTerm>,
    /// Weights of the --distill losses, in order (keras's distillation_loss_weights; default 1 each).
    #[arg(long, value_name = "W,W,..", value_delimiter = ',', allow_negative_numbers = true, global = true)]
    distill_weights: Vec<f32>,
    /// Only N training images, a seeded class-balanced subset, keep their labels: the distilled
    /// student's cross-entropy covers those, its distillation terms every image, and the
    /// scratch student trains on the N alone for as many steps. The teacher keeps all labels.
    #[arg(long, value_name = "N", global = true)]
    labelled: Option<usize>,
    /// Train the teacher on its images moved by up to PIXELS pixels each way (random per image
    /// and step, border 0, as Keras's RandomTranslation on whole pixels).
    #[arg(long, value_name = "PIXELS", default_value_t = DEFAULTS.teacher_augment, global = true)]
    teacher_augment: u32,
    /// The same for both students' training (needs --distill-teacher trainable).
    #[arg(long, value_name = "PIXELS", default_value_t = DEFAULTS.student_augment)]
    student_augment: u32,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = DEFAULTS.seed, global = true)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N", global = true)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_name = "N", global = true)]
    test_limit: Option<usize>,
    /// Keep the file order instead of reshuffling every epoch.
    #[arg(long, global = true)]
    no_shuffle: bool,
    /// Metric readbacks per epoch (progress and NaN checks).
    #[arg(long, default_value_t = DEFAULTS.sync_points, hide = true, global = true)]
    sync_points: usize,
    /// Save teacher.safetensors, student.safetensors (distilled) and scratch.safetensors here,
    /// each when its training ends (the directory is created if needed).
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,
    /// A trained teacher's weights: its training is skipped (it is still evaluated).
    #[arg(long, value_name = "PATH", conflicts_with = "teacher_init", global = true)]
    teacher: Option<PathBuf>,
    /// Keep the frozen teacher's logits tables in this directory and read them back in later
    /// runs of the same teacher weights, images, device and kernel family (the same bits
    /// either way), e.g. ~/.cache/kd-wgpu.
    #[arg(long, value_name = "DIR", global = true)]
    logits_cache: Option<PathBuf>,
    /// Keep the frozen teacher's outputs at a feature term's layer for every training image in
    /// memory, up to this many GiB, so that the students' steps do not run the teacher (the
    /// same bits either way); a larger table, or 0, runs the teacher at every step.
    #[arg(long, value_name = "GIB", default_value_t = DEFAULTS.feature_table_gib, allow_negative_numbers = true, global = true)]
    feature_table_gib: f64,
    /// Take each run's scratch student from this earlier experiment's --metrics-out (the same
    /// seed, student, epochs, batch, learning rate, labels and device) instead of training it
    /// again: it never sees the teacher, so regimes of one student share it.
    #[arg(long, value_name = "METRICS.json", conflicts_with = "student_init")]
    scratch_from: Option<PathBuf>,
    /// Start the teacher's training from these weights instead of random ones.
    #[arg(long, value_name = "PATH")]
    teacher_init: Option<PathBuf>,
    /// Start both students (distilled and scratch) from these weights instead of random ones.
    #[arg(long, value_name = "PATH")]
    student_init: Option<PathBuf>,
    /// Train the distilled and the scratch student N times over seeds, with one teacher, and
    /// report means, deviations and the paired difference with its 95% confidence interval.
    #[arg(long, value_name = "N", default_value_t = 1)]
    runs: usize,
    /// Also distil students over these alphas (comma-separated), from the same teacher.
    #[arg(long, value_name = "A,A,..", value_delimiter = ',', allow_negative_numbers = true)]
    sweep_alpha: Vec<f32>,
    /// Also distil students over these temperatures (comma-separated); with --sweep-alpha, the grid.
    #[arg(long, value_name = "T,T,..", value_delimiter = ',', allow_negative_numbers = true)]
    sweep_temperature: Vec<f32>,
    /// Draw the three runs' loss and accuracy per epoch, test results marked, into an SVG file;
    /// beside it PATH-classes.svg (test accuracy per class) and, with a sweep, PATH-sweep.svg.
    #[arg(long, value_name = "PATH.svg")]
    plot: Option<PathBuf>,
    /// Write the configuration, adapter, per-epoch metrics, test results and phase times as JSON.
    #[arg(long, value_name = "PATH")]
    metrics_out: Option<PathBuf>,
    /// Keep the whole run's state in DIR (created if needed), rewritten at every epoch's end,
    /// every --checkpoint-every minutes, and on Ctrl-C or SIGTERM (which then stop the run).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    checkpoint_dir: Option<PathBuf>,
    /// Go on with the interrupted run whose state is in DIR (same flags as it was started with),
    /// checkpointing into DIR as it goes; it ends with the same figures and weights as a run
    /// never interrupted.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Minutes between state writes within an epoch (with --checkpoint-dir or --resume).
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0, allow_negative_numbers = true)]
    checkpoint_every: f64,
    /// Train only shard I of K of the runs (run r belongs to shard r mod K + 1) and of the
    /// sweep's cells, with a teacher from --teacher; `kd-wgpu merge` puts the shards together.
    #[arg(long, value_name = "I/K")]
    shard: Option<Shard>,
}

impl RunArgs {
    fn config(&self, device: &DeviceArgs) -> Result<Config> {
        let layers = |flag: &str, path: &Option<PathBuf>| {
            path.as_deref().map(|p| keras::read_layers(p).with_context(|| flag.to_string())).transpose()
        };
        Ok(Config {
            backend: device.backend,
            matmul: device.matmul,
            tune: device.tune,
            data: LoadOptions {
                data_dir: self.data_dir.clone(),
                offline: self.offline,
                base_url: UPSTREAM_URL.to_string(),
                progress: true,
            },
            logits_cache: self.logits_cache.clone(),
            feature_table_gib: self.feature_table_gib,
            teacher_epochs: self.teacher_epochs,
            student_epochs: self.student_epochs,
            batch_size: self.batch_size,
            alpha: self.alpha,
            temperature: self.temperature,
            learning_rate: self.learning_rate,
            seed: self.seed,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            shuffle: !self.no_shuffle,
            sync_points: self.sync_points,
            runs: self.runs,
            sweep_alpha: self.sweep_alpha.clone(),
            sweep_temperature: self.sweep_temperature.clone(),
            teacher_channels: self.teacher_channels.0,
            student_channels: self.student_channels.0,
            scratch_from: self.scratch_from.clone(),
            teacher_layers: layers("--teacher-layers", &self.teacher_layers)?,
            student_layers: layers("--student-layers", &self.student_layers)?,
            distill_teacher: self.distill_teacher,
            distill: self.distill.clone(),
            distill_weights: self.distill_weights.clone(),
            labelled: self.labelled,
            shard: self.shard,
            teacher_augment: self.teacher_augment,
            student_augment: self.student_augment,
        })
    }

    fn checkpointing(&self) -> Result<Option<Checkpointing>> {
        let minutes = self.checkpoint_every;
        anyhow::ensure!(
            minutes.is_finite() && minutes >= 0.0,
            "--checkpoint-every {minutes} must be a number of minutes, 0 or more"
        );
        let every = std::time::Duration::from_secs_f64(minutes * 60.0);
        Ok(match (&self.checkpoint_dir, &self.resume) {
            (Some(dir), _) => Some(Checkpointing { dir: dir.clone(), resume: false, every }),
            (None, Some(dir)) => Some(Checkpointing { dir: dir.clone(), resume: true, every }),
            (None, None) => None,
        })
    }

    fn weight_files(&self) -> WeightFiles {
        WeightFiles {
            save_dir: self.save_dir.clone(),
            teacher: self.teacher.clone(),
            teacher_init: self.teacher_init.clone(),
            student_init: self.student_init.clone(),
        }
    }
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    match run_command(cli, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli, started: std::time::Instant) -> Result<()> {
    if cli.list_adapters {
        let adapters = gpu::list_adapters(cli.device.backend);
        if adapters.is_empty() {
            anyhow::bail!(
                "no adapters for backend {:?}; on Debian/Ubuntu without a GPU: apt-get install mesa-vulkan-drivers",
                cli.device.backend
            );
        }
        for a in adapters {
            println!("{a}");
        }
        return Ok(());
    }
    let cfg = cli.run.config(&cli.device)?;
    match cli.command {
        None => run_experiment(&cli.run, &cfg),
        Some(Command::Bench { reps, steps, json }) => {
            anyhow::ensure!(reps > 0 && steps > 0, "--reps and --steps must be at least 1");
            cfg.validate()?;
            if let Some(path) = &json {
                checkpoint::check_writable("--json", path)?;
            }
            let archs = [cfg.teacher()?, cfg.student()?];
            let gpu = gpu::Gpu::new(cli.device.backend, cli.device.matmul)?.tuned(cli.device.tune);
            let feature = cfg.feature()?.map(|f| (f, cfg.distill_loss(cfg.alpha, cfg.temperature)));
            let report = kd_wgpu::bench::run(&gpu, &archs, cfg.batch_size, reps, steps, feature, started)?;
            print!("{}", report.render());
            if let Some(path) = json {
                checkpoint::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
                println!("Wrote {}", path.display());
            }
            Ok(())
        }
        Some(Command::ExportWeb { dir }) => {
            kd_wgpu::web::export(&cfg, cli.run.teacher.as_deref(), &dir)?;
            Ok(())
        }
        Some(Command::Merge { files, metrics_out, plot }) => {
            check_outputs(metrics_out.as_deref(), plot.as_deref())?;
            let merged = results::merge::merge(&files)?;
            print!("{}{}", merged.report.render(), merged.times());
            let json = serde_json::to_string_pretty(&merged.report)?;
            write_outputs(&merged.report, metrics_out.as_deref().map(|p| (p, json.as_bytes())), plot.as_deref())
        }
        Some(Command::Compare { files, plot, against }) => {
            if let Some(path) = &plot {
                check_svg_path(path)?;
            }
            let regimes = results::compare::read_all(&files)?;
            let paired = against.map(|label| results::compare::against(&regimes, &label)).transpose()?;
            print!("{}{}", results::compare::table(&regimes), paired.unwrap_or_default());
            if let Some(path) = plot {
                checkpoint::write_atomic(&path, plot::compare_svg(&regimes)?.as_bytes())?;
                println!("Wrote {}", path.display());
            }
            Ok(())
        }
        Some(Command::Evaluate { model, weights, logits_out }) => {
            if let Some(path) = &logits_out {
                checkpoint::check_writable("--logits-out", path)?;
            }
            let expected = model.map(|m| m.arch(&cfg)).transpose()?;
            run::evaluate_file(&cfg, expected.as_ref(), &weights, logits_out.as_deref())?;
            Ok(())
        }
    }
}

/// The whole experiment, its report, and the files asked for (each checked before any work).
fn run_experiment(args: &RunArgs, cfg: &Config) -> Result<()> {
    check_outputs(args.metrics_out.as_deref(), args.plot.as_deref())?;
    let checkpointing = args.checkpointing()?;
    if checkpointing.is_some() {
        resume::catch_signals()?;
    }
    let report = match run::run_resumable(cfg, &args.weight_files(), checkpointing.as_ref()) {
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            let dir = checkpointing.as_ref().map(|c| c.dir.display().to_string()).unwrap_or_default();
            eprintln!("Stopped by a signal; the run's state is in {dir}. To go on where it stopped, run:");
            eprintln!("  {}", resume::resume_command());
            return Err(e);
        }
        r => r?,
    };
    print!("{}", report.render());
    let json = serde_json::to_string_pretty(&report)?;
    write_outputs(&report, args.metrics_out.as_deref().map(|p| (p, json.as_bytes())), args.plot.as_deref())
}

/// Refuses, before any work, a --metrics-out or --plot path that could not be written at the end.
fn check_outputs(metrics_out: Option<&Path>, plot: Option<&Path>) -> Result<()> {
    if let Some(path) = plot {
        check_svg_path(path)?;
        checkpoint::check_writable("--plot", &plot::sweep_path(path))?;
        checkpoint::check_writable("--plot", &plot::classes_path(path))?;
    }
    if let Some(path) = metrics_out {
        checkpoint::check_writable("--metrics-out", path)?;
    }
    Ok(())
}

/// Refuses a --plot path that is not an SVG file's or cannot be written.
fn check_svg_path(path: &Path) -> Result<()> {
    anyhow::ensure!(
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")),
        "--plot {}: plots are written as SVG; give a path ending in .svg",
        path.display()
    );
    checkpoint::check_writable("--plot", path)
}

/// Writes the metrics (`metrics`: the path and its JSON) and the plots of `report`.
fn write_outputs(report: &Report, metrics: Option<(&Path, &[u8])>, plot: Option<&Path>) -> Result<()> {
    if let Some((path, json)) = metrics {
        checkpoint::write_atomic(path, json)?;
        println!("Wrote {}", path.display());
    }
    if let Some(path) = plot {
        checkpoint::write_atomic(path, plot::curves_svg(report)?.as_bytes())?;
        println!("Wrote {}", path.display());
        let classes = plot::classes_path(path);
        checkpoint::write_atomic(&classes, plot::classes_svg(report)?.as_bytes())?;
        println!("Wrote {}", classes.display());
        if let Some(svg) = plot::sweep_svg(report)? {
            let sweep = plot::sweep_path(path);
            checkpoint::write_atomic(&sweep, svg.as_bytes())?;
            println!("Wrote {}", sweep.display());
        }
    }
    Ok(())
}

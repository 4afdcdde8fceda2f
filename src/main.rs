use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use kd_wgpu::checkpoint;
use kd_wgpu::config::{Config, WeightFiles};
use kd_wgpu::gpu;
use kd_wgpu::model::Architecture;
use kd_wgpu::results::{self, plot, Report};
use kd_wgpu::run::resume::{self, Interrupted};
use kd_wgpu::run::{self, Checkpointing};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

/// The experiment's flags: its settings, its weight files, and what it writes.
#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    weights: WeightFiles,
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
}

impl RunArgs {
    /// The settings, with progress bars for a download (tests leave them off).
    fn config(&self) -> Config {
        let mut cfg = self.config.clone();
        cfg.data.progress = true;
        cfg
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
        let adapters = gpu::list_adapters(cli.run.config.backend);
        if adapters.is_empty() {
            anyhow::bail!(
                "no adapters for backend {:?}; on Debian/Ubuntu without a GPU: apt-get install mesa-vulkan-drivers",
                cli.run.config.backend
            );
        }
        for a in adapters {
            println!("{a}");
        }
        return Ok(());
    }
    let cfg = cli.run.config();
    match cli.command {
        None => run_experiment(&cli.run, &cfg),
        Some(Command::Bench { reps, steps, json }) => {
            anyhow::ensure!(reps > 0 && steps > 0, "--reps and --steps must be at least 1");
            cfg.validate()?;
            if let Some(path) = &json {
                checkpoint::check_writable("--json", path)?;
            }
            let archs = [cfg.teacher()?, cfg.student()?];
            let gpu = cfg.open_gpu()?;
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
            kd_wgpu::web::export(&cfg, cli.run.weights.teacher.as_deref(), &dir)?;
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
    let report = match run::run_resumable(cfg, &args.weights, checkpointing.as_ref()) {
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;
    use std::collections::BTreeMap;

    /// The flag tables of a Markdown file: each flag a row's first cell names (`--name ...`),
    /// with the row's default cell (backticks removed).
    fn flag_rows(path: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut rows = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("| `--")) {
            // Cells split at `|` not escaped as `\|`.
            let line = line.replace("\\|", "\u{1}");
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (names, default) = (cells[1], cells[2].trim_matches('`').replace('\u{1}', "|"));
            for name in names.split('`').skip(1).step_by(2).filter_map(|f| f.strip_prefix("--")) {
                let name = name.split([' ', '=']).next().unwrap().to_string();
                rows.insert(name, default.clone());
            }
        }
        rows
    }

    /// The main command's flags as clap has them: long name to its default (empty if none).
    fn clap_flags() -> BTreeMap<String, (String, bool)> {
        let command = Cli::command();
        command
            .get_arguments()
            .filter_map(|a| {
                let defaults: Vec<String> =
                    a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
                Some((a.get_long()?.to_string(), (defaults.join(","), a.is_hide_set())))
            })
            .filter(|(name, _)| name != "help" && name != "version")
            .collect()
    }

    #[test]
    fn the_flag_tables_name_every_flag_with_its_default() {
        let flags = clap_flags();
        let full = flag_rows("docs/flags.md");
        let missing: Vec<&String> =
            flags.iter().filter(|(n, (_, hidden))| !hidden && !full.contains_key(*n)).map(|(n, _)| n).collect();
        assert!(missing.is_empty(), "docs/flags.md lacks the flags {missing:?}");
        for (file, rows) in [("docs/flags.md", &full), ("README.md", &flag_rows("README.md"))] {
            assert!(rows.len() >= 10, "{file}: its flag table was not found");
            for (name, cell) in rows {
                let Some((default, _)) = flags.get(name) else { panic!("{file} names --{name}, which kd-wgpu lacks") };
                if !default.is_empty() {
                    assert_eq!(
                        cell, default,
                        "{file}: the default of --{name} is {default:?}, the table says {cell:?}"
                    );
                }
            }
        }
    }
}

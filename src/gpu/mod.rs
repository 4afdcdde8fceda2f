//! The GPU context: adapter selection, device creation, the pipeline cache and error capture.
//!
//! Everything that touches wgpu directly lives under `gpu/`; the op modules only build
//! [`Dispatch`]es and the scheduler only records them.

pub mod family;
mod kernel;
pub mod params;
mod tensor;
pub mod texture;
pub mod timing;
pub mod tune;

pub use family::{KernelFamily, TexelFit};
pub use kernel::{grid_1d, tag, Bound, Dispatch, Shader};
pub use tensor::{read_buffer, read_staging, Tensor};
pub use tune::{Force, TuneMode, Tuner};

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The graphics API to run on. `Auto` lets wgpu pick among the platform's primary backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum BackendChoice {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::PRIMARY,
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            BackendChoice::Vulkan | BackendChoice::Auto => {
                "install a Vulkan driver; without a GPU on Debian/Ubuntu, the CPU driver lavapipe: \
                 `apt-get install mesa-vulkan-drivers`"
            }
            BackendChoice::Metal => "Metal exists only on macOS and iOS; try `--backend auto`",
            BackendChoice::Dx12 => "DirectX 12 exists only on Windows 10 and later; try `--backend auto`",
            BackendChoice::Gl => {
                "install an OpenGL ES / EGL driver (Debian/Ubuntu: `apt-get install libegl1 libgles2 \
                 libegl-mesa0`), or try `--backend vulkan`"
            }
        }
    }
}

/// Which kernel family runs: the matrix product of the convolutions (see `ops::matmul`) and,
/// with it, where kernels read their inputs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum MatmulVariant {
    /// Choose from the adapter: `subgroup` on CPU drivers with 8-lane subgroups, else `tiled`.
    Auto,
    /// Workgroup-memory tiling, kernels reading storage buffers: the design for real GPUs; runs everywhere.
    Tiled,
    /// For lavapipe: kernels read texture copies of their inputs, and the matrix product shares
    /// A across an 8-lane subgroup by broadcast (see shaders/matmul_texture.wgsl).
    Subgroup,
}

impl MatmulVariant {
    /// `Auto` made definite for an adapter: the CPU-driver family where the adapter is a CPU
    /// with subgroups of at least 8 lanes; `Subgroup` refused where it cannot run.
    fn resolve(self, info: &wgpu::AdapterInfo, features: wgpu::Features) -> Result<MatmulVariant> {
        let subgroup_ok = features.contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
        Ok(match self {
            MatmulVariant::Auto if info.device_type == wgpu::DeviceType::Cpu && subgroup_ok => MatmulVariant::Subgroup,
            MatmulVariant::Auto => MatmulVariant::Tiled,
            MatmulVariant::Subgroup if !subgroup_ok => bail!(
                "--matmul subgroup needs subgroup operations with subgroups of at least 8 lanes; adapter {} \
                 offers sizes {}..={} (subgroups {}). Use --matmul tiled or auto.",
                info.name,
                info.subgroup_min_size,
                info.subgroup_max_size,
                if features.contains(wgpu::Features::SUBGROUP) { "supported" } else { "unsupported" }
            ),
            other => other,
        })
    }
}

/// A compiled shader module: the file, and the family it was compiled for.
type ModuleKey = (&'static str, KernelFamily);

/// One device and its queue, plus the pipelines compiled for it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub matmul: MatmulVariant,
    modules: Mutex<HashMap<ModuleKey, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<(ModuleKey, &'static str), Arc<wgpu::ComputePipeline>>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Which entry an op with several equivalent ones runs (off until [`Gpu::tuned`]).
    tuner: Tuner,
}

fn instance(backend: BackendChoice) -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.backends(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

/// One line per adapter, for `--list-adapters`.
pub fn list_adapters(backend: BackendChoice) -> Vec<String> {
    let adapters = pollster::block_on(instance(backend).enumerate_adapters(backend.backends()));
    adapters.iter().map(|a| describe(&a.get_info())).collect()
}

pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | backend {:?} | type {:?} | driver {} {}",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}

impl Gpu {
    /// Opens the high-performance adapter of `backend` with the adapter's own limits.
    pub fn new(backend: BackendChoice, matmul: MatmulVariant) -> Result<Gpu> {
        let instance = instance(backend);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| {
            anyhow!(
                "no GPU adapter found for backend `{}` ({e}).\nFix: {}.\n`kd-wgpu --list-adapters --backend auto` lists what this machine offers.",
                format!("{backend:?}").to_lowercase(),
                backend.install_hint()
            )
        })?;
        let info = adapter.get_info();
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kd-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("could not open a device on adapter {}", info.name))?;

        // wgpu's default handler aborts the process; collect instead and report as errors.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));

        let matmul = matmul.resolve(&info, features)?;
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            matmul,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            tuner: Tuner::off(),
        })
    }

    /// The same device with autotuning in `mode`, cached in the platform's cache directory.
    pub fn tuned(mut self, mode: TuneMode) -> Gpu {
        let info = &self.info;
        let device = format!(
            "{} | {:?} | {:?} | vendor {:#06x} device {:#06x} | driver {} {} | family {:?}",
            info.name,
            info.backend,
            info.device_type,
            info.vendor,
            info.device,
            info.driver,
            info.driver_info,
            self.family()
        );
        self.tuner = Tuner::new(mode, device, None);
        self
    }

    pub fn tuner(&self) -> &Tuner {
        &self.tuner
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    }

    /// The compute pipeline for one entry point, compiled on first use and cached.
    pub fn pipeline(&self, shader: &Shader, entry: &'static str) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (shader.module_key(), entry);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(shader)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("kernel {}::{entry}: pipeline creation failed: {e}", shader.name);
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, shader: &Shader) -> Result<Arc<wgpu::ShaderModule>> {
        let key = shader.module_key();
        if let Some(m) = self.modules.lock().unwrap().get(&key) {
            return Ok(m.clone());
        }
        // A file without family blocks is one module for both families.
        let wgsl = shader.for_family(key.1).expanded()?;
        let lines_note =
            if wgsl != shader.source { " (lines counted in its text after #include expansion)" } else { "" };
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc =
            wgpu::ShaderModuleDescriptor { label: Some(shader.name), source: wgpu::ShaderSource::Wgsl(wgsl.into()) };
        let module = self.device.create_shader_module(desc);
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("shader {}.wgsl failed to compile{lines_note}: {e}", shader.name);
        }
        let module = Arc::new(module);
        self.modules.lock().unwrap().insert(key, module.clone());
        Ok(module)
    }

    /// The kernel family every launch on this device chooses its entry from (see `family.rs`).
    pub fn family(&self) -> KernelFamily {
        match self.matmul {
            MatmulVariant::Subgroup => KernelFamily::Textures,
            _ => KernelFamily::Buffers,
        }
    }

    /// A small uniform buffer holding one kernel's parameters; built at plan time, never per step.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            // COPY_SRC: an exported plan reads its launches' parameters back.
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        })
    }

    /// Records `dispatches` into one encoder (one compute pass unless texture copies split it)
    /// and submits once.
    pub fn submit(&self, dispatches: &[&Dispatch]) -> Result<wgpu::SubmissionIndex> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        kernel::record_all(&mut encoder, dispatches, kernel::Timestamps::None);
        let index = self.queue.submit([encoder.finish()]);
        self.check("submit")?;
        Ok(index)
    }

    /// Submits and waits for completion (tests and one-off work only, never inside an epoch).
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.submit(dispatches)?;
        self.wait()
    }

    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the device failed: {e}"))?;
        self.check("wait")
    }

    /// Turns errors that wgpu reported outside an error scope into an ordinary error.
    pub fn check(&self, context: &str) -> Result<()> {
        let errors = std::mem::take(&mut *self.uncaptured.lock().unwrap());
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("device error during {context}: {}", errors.join("; "))
        }
    }

    /// The largest storage binding, in bytes, that one kernel argument may have.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }
}

//! Shaders, entry points and recorded dispatches.

use super::{
    family::KernelFamily,
    texture::{TexelCopy, TEXTURE_WIDTH},
    Gpu,
};
use anyhow::{bail, Result};
use std::sync::Arc;

/// One WGSL file of `shaders/`, compiled into the binary, as one kernel family compiles it.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
    /// The family whose `#if` blocks the text keeps ([`Shader::expanded`]).
    pub family: KernelFamily,
}

/// The files a shader may take with a line `#include "NAME"`, embedded like the shaders.
const INCLUDES: &[(&str, &str)] = &[
    ("common.wgsl", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/common.wgsl"))),
    ("random.wgsl", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/random.wgsl"))),
];

/// WGSL constants written from the Rust ones, placed before `common.wgsl` where it is included
/// (plain consts rather than override constants: see common.wgsl).
fn generated_constants() -> String {
    format!(
        "// Generated from src/gpu/texture.rs.\nconst TEXTURE_WIDTH: u32 = {}u;\n",
        u32::try_from(TEXTURE_WIDTH).expect("TEXTURE_WIDTH fits in u32")
    )
}

impl Shader {
    /// The same file as `family` compiles it.
    pub fn for_family(self, family: KernelFamily) -> Shader {
        Shader { family, ..self }
    }

    /// Whether the file has `#if` blocks, so that each family compiles its own module.
    pub fn has_family_blocks(&self) -> bool {
        self.source.lines().any(|l| l.trim_start().starts_with("#if "))
    }

    /// What identifies its compiled module: the file, and the family where the text differs
    /// between families.
    pub fn module_key(&self) -> (&'static str, KernelFamily) {
        (self.name, if self.has_family_blocks() { self.family } else { KernelFamily::Buffers })
    }

    /// The WGSL text that is compiled: the source with each line `#include "NAME"` (alone on
    /// its line, whitespace around it allowed) replaced by that file's text; `common.wgsl`
    /// comes with the constants generated from Rust. Included text is not searched for
    /// further includes, and a file may be included once. Then the family blocks:
    /// lines between `#if buffers` (or `#if textures`) and `#endif` are kept for that family
    /// only, as blank lines for the other, so that one kernel body serves both families
    /// (common.wgsl's `Value` and `LANES`). Every other line is kept byte for byte.
    pub fn expanded(&self) -> Result<String> {
        let included = self.with_includes()?;
        let mut out = String::with_capacity(included.len());
        let mut block: Option<(usize, bool)> = None;
        let at = |number: usize| format!("shader {}.wgsl, line {} after #include expansion", self.name, number + 1);
        for (number, line) in included.split_inclusive('\n').enumerate() {
            let directive = line.trim();
            if let Some(family) = directive.strip_prefix("#if ") {
                let keep = match family.trim() {
                    "buffers" => self.family == KernelFamily::Buffers,
                    "textures" => self.family == KernelFamily::Textures,
                    other => bail!("{}: unknown family `{other}` (#if buffers or #if textures)", at(number)),
                };
                if let Some((opened, _)) = block {
                    bail!("{}: #if inside the #if of line {}", at(number), opened + 1);
                }
                block = Some((number, keep));
            } else if directive == "#endif" {
                if block.take().is_none() {
                    bail!("{}: #endif without #if", at(number));
                }
            } else if block.is_none_or(|(_, keep)| keep) {
                out.push_str(line);
                continue;
            }
            out.push('\n');
        }
        if let Some((opened, _)) = block {
            bail!("{}: #if without #endif", at(opened));
        }
        Ok(out)
    }

    fn with_includes(&self) -> Result<String> {
        let mut out = String::with_capacity(self.source.len() + 4096);
        let mut included: Vec<&str> = Vec::new();
        for (number, line) in self.source.split_inclusive('\n').enumerate() {
            let Some(rest) = line.trim().strip_prefix("#include") else {
                out.push_str(line);
                continue;
            };
            let at = format!("shader {}.wgsl, line {}", self.name, number + 1);
            let rest = rest.trim();
            let Some(file) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')).filter(|f| !f.contains('"'))
            else {
                bail!("{at}: malformed include `{}`; expected #include \"FILE\"", line.trim());
            };
            let Some(&(_, text)) = INCLUDES.iter().find(|(name, _)| *name == file) else {
                let known: Vec<&str> = INCLUDES.iter().map(|(name, _)| *name).collect();
                bail!("{at}: unknown include \"{file}\" (known: {})", known.join(", "));
            };
            if included.contains(&file) {
                bail!("{at}: \"{file}\" is already included");
            }
            included.push(file);
            if file == "common.wgsl" {
                out.push_str(&generated_constants());
            }
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }
}

/// `shader!("conv2d")` embeds `shaders/conv2d.wgsl`; its `#include` lines are expanded when
/// the module is built ([`Shader::expanded`]).
#[macro_export]
macro_rules! shader {
    ($name:literal) => {
        $crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name, ".wgsl")),
            family: $crate::gpu::KernelFamily::Buffers,
        }
    };
}

/// What a dispatch binds at one slot: a range of a buffer, or a texture (which exports do not
/// describe).
#[derive(Clone, Debug)]
pub enum Bound {
    Buffer { buffer: wgpu::Buffer, offset: u64, size: Option<u64> },
    Texture,
}

/// One kernel launch with its bind group, built once when a step is planned and recorded
/// into every step's compute pass without further allocation.
pub struct Dispatch {
    pub kernel: String,
    /// The layer or stage it belongs to, for reports ("conv2 forward", ...).
    pub layer: String,
    /// Floating-point operations (0 where not modelled) and bytes moved, for the benchmark's
    /// rates. Bytes default to the sizes of the storage ranges it binds, each counted once
    /// whether read, written or both; kernels that touch a part of what they bind say so.
    pub flops: f64,
    pub bytes: f64,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// The shader (as its family compiles it) and entry point, and what each binding is, for
    /// exporting the plan as data.
    pub shader: Shader,
    pub entry: &'static str,
    pub bindings: Vec<Bound>,
    /// Texture copies of its operands, recorded just before the pass that runs it.
    uploads: Vec<Arc<TexelCopy>>,
}

impl Dispatch {
    /// `resources[i]` is bound at `@group(0) @binding(i)`. The bind group keeps its buffers
    /// (the launch's uniform among them) alive.
    pub fn new(
        gpu: &Gpu,
        shader: &Shader,
        entry: &'static str,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        // One body for both families: the texture-fed compilation is named as such.
        let kernel = match shader.module_key().1 {
            KernelFamily::Textures => format!("{}::{entry} (textures)", shader.name),
            KernelFamily::Buffers => format!("{}::{entry}", shader.name),
        };
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            bail!(
                "kernel {kernel}: {workgroups:?} workgroups exceed the device limit of {max} per dimension; \
                 use a smaller --batch-size"
            );
        }
        let pipeline = gpu.pipeline(shader, entry)?;
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("kernel {kernel}: binding its buffers failed: {e}");
        }
        let bindings: Vec<Bound> = resources
            .iter()
            .map(|r| match r {
                wgpu::BindingResource::Buffer(b) => {
                    Bound::Buffer { buffer: b.buffer.clone(), offset: b.offset, size: b.size.map(|s| s.get()) }
                }
                _ => Bound::Texture,
            })
            .collect();
        let bytes = bindings
            .iter()
            .map(|b| match b {
                Bound::Buffer { buffer, offset, size } if !buffer.usage().contains(wgpu::BufferUsages::UNIFORM) => {
                    size.unwrap_or(buffer.size() - offset) as f64
                }
                _ => 0.0,
            })
            .sum();
        Ok(Dispatch {
            kernel,
            layer: String::new(),
            flops: 0.0,
            bytes,
            pipeline,
            bind_group,
            workgroups,
            shader: *shader,
            entry,
            bindings,
            uploads: Vec::new(),
        })
    }

    pub fn with_cost(mut self, flops: f64, bytes: f64) -> Dispatch {
        self.flops = flops;
        self.bytes = bytes;
        self
    }

    /// Bytes moved, where the kernel touches only part of what it binds.
    pub fn with_bytes(mut self, bytes: f64) -> Dispatch {
        self.bytes = bytes;
        self
    }

    pub fn with_uploads(mut self, uploads: Vec<Arc<TexelCopy>>) -> Dispatch {
        self.uploads = uploads;
        self
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Where [`record_all`] writes timestamps.
#[derive(Clone, Copy)]
pub enum Timestamps<'a> {
    None,
    /// Query 0 before the first copy or dispatch, query 1 when the last pass ends.
    Span(&'a wgpu::QuerySet),
    /// Queries 2i and 2i + 1 at the beginning and end of pass i; with copies before the first
    /// dispatch, pass 0 is an empty one before them.
    EveryPass(&'a wgpu::QuerySet),
}

/// The compute passes `dispatches` take: a new one wherever texture copies come first.
pub fn pass_starts(dispatches: &[&Dispatch]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend((1..dispatches.len()).filter(|&i| !dispatches[i].uploads.is_empty()));
    starts
}

/// Passes (and so pairs of queries) [`Timestamps::EveryPass`] writes for `dispatches`.
pub fn timed_passes(dispatches: &[&Dispatch]) -> usize {
    let uploads_first = dispatches.first().is_some_and(|d| !d.uploads.is_empty());
    pass_starts(dispatches).len() + uploads_first as usize
}

/// Records `dispatches` in order into as few compute passes as their texture copies allow
/// (copies happen between passes), writing `timestamps`.
pub fn record_all(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch], timestamps: Timestamps) {
    let starts = pass_starts(dispatches);
    let uploads_first = dispatches.first().is_some_and(|d| !d.uploads.is_empty());
    let writes = |query_set, begin: Option<u32>, end: Option<u32>| {
        (begin.is_some() || end.is_some()).then_some(wgpu::ComputePassTimestampWrites {
            query_set,
            beginning_of_pass_write_index: begin,
            end_of_pass_write_index: end,
        })
    };
    // An empty pass marks the start, so that the first copies are timed too.
    let marker = match timestamps {
        Timestamps::Span(q) if uploads_first => Some(writes(q, Some(0), None)),
        Timestamps::EveryPass(q) if uploads_first => Some(writes(q, Some(0), Some(1))),
        _ => None,
    };
    if let Some(timestamp_writes) = marker {
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
    }
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(dispatches.len());
        for upload in dispatches.get(start).map_or(&[][..], |d| &d.uploads[..]) {
            upload.record(encoder);
        }
        let timestamp_writes = match timestamps {
            Timestamps::None => None,
            Timestamps::Span(q) => {
                writes(q, (i == 0 && !uploads_first).then_some(0), (i + 1 == starts.len()).then_some(1))
            }
            Timestamps::EveryPass(q) => {
                let pass = (i + uploads_first as usize) as u32;
                writes(q, Some(2 * pass), Some(2 * pass + 1))
            }
        };
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
        for d in &dispatches[start..end] {
            d.record(&mut pass);
        }
    }
}

/// Workgroup counts covering `items` invocations of a 1-D kernel of `workgroup_size`, folded
/// into two dimensions past 32,768 groups. Kernels recover the flat index as
/// `(wg.y * num_wg.x + wg.x) * workgroup_size + local` and skip indices past the end.
pub fn grid_1d(items: usize, workgroup_size: u32) -> [u32; 3] {
    let groups = items.div_ceil(workgroup_size as usize).max(1) as u32;
    const FOLD: u32 = 32_768;
    if groups <= FOLD {
        [groups, 1, 1]
    } else {
        [FOLD, groups.div_ceil(FOLD), 1]
    }
}

/// Labels every dispatch of a layer.
pub fn tag(layer: &str, dispatches: Vec<Dispatch>) -> Vec<Dispatch> {
    dispatches
        .into_iter()
        .map(|mut d| {
            d.layer = layer.to_string();
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shader(source: &'static str) -> Shader {
        Shader { name: "probe", source, family: KernelFamily::Buffers }
    }

    #[test]
    fn family_blocks_keep_one_familys_lines_and_the_line_count() {
        let source = "a\n#if buffers\nb\n#endif\n#if textures\nt\n#endif\nz\n";
        assert_eq!(shader(source).expanded().unwrap(), "a\n\nb\n\n\n\n\nz\n");
        let textures = shader(source).for_family(KernelFamily::Textures);
        assert_eq!(textures.expanded().unwrap(), "a\n\n\n\n\nt\n\nz\n");
        assert!(shader(source).has_family_blocks() && !shader("a\n").has_family_blocks());
        let err = |s: &'static str| shader(s).expanded().unwrap_err().to_string();
        assert!(err("#if gpus\n#endif\n").contains("line 1 after #include expansion: unknown family `gpus`"));
        assert!(err("#if buffers\n#if textures\n").contains("line 2 after #include expansion: #if inside"));
        assert!(err("x\n#endif\n").contains("line 2 after #include expansion: #endif without #if"));
        assert!(err("#if textures\nx\n").contains("line 1 after #include expansion: #if without #endif"));
    }

    #[test]
    fn bad_includes_are_errors_naming_the_shader_and_line() {
        let unknown = shader("// one\n#include \"nope.wgsl\"\n").expanded().unwrap_err().to_string();
        assert!(
            unknown.contains("probe.wgsl, line 2") && unknown.contains("unknown include \"nope.wgsl\""),
            "{unknown}"
        );
        assert!(unknown.contains("common.wgsl"), "the message lists the known files: {unknown}");
        let malformed = shader("#include common.wgsl\n").expanded().unwrap_err().to_string();
        assert!(malformed.contains("probe.wgsl, line 1: malformed include"), "{malformed}");
        let twice =
            shader("#include \"common.wgsl\"\n  #include \"common.wgsl\"  \n").expanded().unwrap_err().to_string();
        assert!(twice.contains("probe.wgsl, line 2") && twice.contains("already included"), "{twice}");
    }

    #[test]
    fn text_without_includes_is_kept_byte_for_byte() {
        let source = "// a comment naming #include \"x\"\r\nfn f() {}\n\nfn g() {}";
        assert_eq!(shader(source).expanded().unwrap(), source);
    }

    /// Every file of shaders/ expands without an `#include` line left, and the texture width
    /// appears once, from Rust, in those that take common.wgsl (none writes it itself).
    #[test]
    fn every_shader_expands_completely() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
        let width = format!("{TEXTURE_WIDTH}u");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let Some(stem) = name.strip_suffix(".wgsl") else { continue };
            if INCLUDES.iter().any(|(file, _)| *file == name) {
                continue;
            }
            let source: &'static str = std::fs::read_to_string(&path).unwrap().leak();
            let stem: &'static str = stem.to_string().leak();
            let text = Shader { name: stem, source, family: KernelFamily::Buffers }.expanded().unwrap();
            assert!(!text.lines().any(|l| l.trim_start().starts_with("#include")), "{name}: #include left in\n{text}");
            let includes_common = source.lines().any(|l| l.trim() == "#include \"common.wgsl\"");
            assert_eq!(text.matches(&width).count(), usize::from(includes_common), "{name}: {width} written out");
            names.push(name);
        }
        assert!(names.len() >= 10, "shaders found in {dir}: {names:?}");
    }
}

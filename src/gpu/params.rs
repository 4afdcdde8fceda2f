//! Rust mirrors of the shaders' parameter structs, with their layout known at run time.
//!
//! Every uniform block (and `StepState`) is declared twice: in WGSL and in Rust. Declaring the
//! Rust side with [`wgsl_struct!`](crate::wgsl_struct) records each field's name, offset and
//! type, so that a test (`ops::tests`) can hold it against naga's reading of the WGSL, and the
//! two cannot drift apart unnoticed.

/// The type of one field as WGSL sees it.
#[derive(Clone, Copy, Debug)]
pub enum FieldType {
    U32,
    F32,
    I32,
    /// `[u32; N]`: WGSL's `array<u32, N>`, used for padding.
    U32Array(usize),
    /// A nested struct declared with `wgsl_struct!`.
    Struct(&'static [Field]),
}

/// One field of a struct declared with `wgsl_struct!`.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    /// Bytes from the start of the struct.
    pub offset: usize,
    pub ty: FieldType,
}

/// A type that may be a field of a `wgsl_struct!`.
pub trait WgslType {
    const TYPE: FieldType;
}

impl WgslType for u32 {
    const TYPE: FieldType = FieldType::U32;
}

impl WgslType for f32 {
    const TYPE: FieldType = FieldType::F32;
}

impl WgslType for i32 {
    const TYPE: FieldType = FieldType::I32;
}

impl<const N: usize> WgslType for [u32; N] {
    const TYPE: FieldType = FieldType::U32Array(N);
}

/// A struct declared with `wgsl_struct!`: the bytes it uploads and what they mean.
pub trait WgslLayout: bytemuck::Pod {
    const FIELDS: &'static [Field];
}

/// Declares a `#[repr(C)]`, `Pod` struct mirroring a WGSL struct, and records its fields
/// ([`WgslLayout`]) so that a test can compare them with the shader's. Field names are the
/// WGSL ones; names starting with `_` are padding, checked only through the other fields'
/// offsets and the total size. Field types: `u32`, `f32`, `i32`, `[u32; N]`, and other
/// structs declared with this macro. Further attributes (docs, derives) pass through.
#[macro_export]
macro_rules! wgsl_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty ),*
        }

        impl $crate::gpu::params::WgslLayout for $name {
            const FIELDS: &'static [$crate::gpu::params::Field] = &[$(
                $crate::gpu::params::Field {
                    name: stringify!($field),
                    offset: ::core::mem::offset_of!($name, $field),
                    ty: <$ty as $crate::gpu::params::WgslType>::TYPE,
                }
            ),*];
        }

        impl $crate::gpu::params::WgslType for $name {
            const TYPE: $crate::gpu::params::FieldType =
                $crate::gpu::params::FieldType::Struct(<$name as $crate::gpu::params::WgslLayout>::FIELDS);
        }
    };
}

/// The comparison with naga's reflection of a shader, for the tests.
#[cfg(test)]
pub(crate) mod check {
    use super::{Field, FieldType, WgslLayout};
    use crate::gpu::{KernelFamily, Shader};
    use wgpu::naga;

    /// Which struct of a shader a Rust type mirrors.
    #[derive(Clone, Copy, Debug)]
    pub enum Target {
        /// The type of the shader's one `var<uniform>`.
        Uniform,
        /// The struct of this name (for storage structs such as `StepState`).
        Struct(&'static str),
    }

    /// A field with nested structs flattened: its path (`conv.in_h`), offset and WGSL type.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Flat {
        path: String,
        offset: usize,
        ty: String,
    }

    impl std::fmt::Display for Flat {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "`{}: {}` at byte {}", self.path, self.ty, self.offset)
        }
    }

    fn is_padding(name: &str) -> bool {
        name.starts_with('_')
    }

    fn flatten_rust(fields: &[Field], prefix: &str, base: usize, out: &mut Vec<Flat>) {
        for f in fields.iter().filter(|f| !is_padding(f.name)) {
            let (path, offset) = (format!("{prefix}{}", f.name), base + f.offset);
            let ty = match f.ty {
                FieldType::U32 => "u32".to_string(),
                FieldType::F32 => "f32".to_string(),
                FieldType::I32 => "i32".to_string(),
                FieldType::U32Array(n) => format!("array<u32, {n}>"),
                FieldType::Struct(inner) => {
                    flatten_rust(inner, &format!("{path}."), offset, out);
                    continue;
                }
            };
            out.push(Flat { path, offset, ty });
        }
    }

    /// A non-struct type as WGSL writes it (enough to tell the mirrors' types apart).
    fn wgsl_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
        use naga::{ScalarKind as K, TypeInner as T};
        let scalar = |s: naga::Scalar| match (s.kind, s.width) {
            (K::Uint, 4) => "u32".to_string(),
            (K::Sint, 4) => "i32".to_string(),
            (K::Float, 4) => "f32".to_string(),
            (kind, width) => format!("{kind:?}{}", 8 * width),
        };
        match &module.types[ty].inner {
            T::Scalar(s) => scalar(*s),
            T::Vector { size, scalar: s } => format!("vec{}<{}>", *size as u8, scalar(*s)),
            T::Array { base, size: naga::ArraySize::Constant(n), .. } => {
                format!("array<{}, {n}>", wgsl_type(module, *base))
            }
            T::Array { base, .. } => format!("array<{}>", wgsl_type(module, *base)),
            other => format!("{other:?}"),
        }
    }

    fn flatten_wgsl(
        module: &naga::Module,
        members: &[naga::StructMember],
        prefix: &str,
        base: usize,
        out: &mut Vec<Flat>,
    ) {
        for m in members {
            let name = m.name.as_deref().unwrap_or("?");
            if is_padding(name) {
                continue;
            }
            let (path, offset) = (format!("{prefix}{name}"), base + m.offset as usize);
            match &module.types[m.ty].inner {
                naga::TypeInner::Struct { members, .. } => {
                    flatten_wgsl(module, members, &format!("{path}."), offset, out)
                }
                _ => out.push(Flat { path, offset, ty: wgsl_type(module, m.ty) }),
            }
        }
    }

    /// The struct `target` names in `module`: its name, members and size.
    fn find(module: &naga::Module, target: Target) -> Result<(String, &[naga::StructMember], usize), String> {
        let ty = match target {
            Target::Uniform => {
                let uniforms: Vec<_> =
                    module.global_variables.iter().filter(|(_, g)| g.space == naga::AddressSpace::Uniform).collect();
                match uniforms[..] {
                    [(_, g)] => g.ty,
                    _ => return Err(format!("{} uniform variables, expected one", uniforms.len())),
                }
            }
            Target::Struct(name) => module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(name))
                .map(|(h, _)| h)
                .ok_or(format!("no struct `{name}`"))?,
        };
        let t = &module.types[ty];
        match &t.inner {
            naga::TypeInner::Struct { members, span } => {
                Ok((t.name.clone().unwrap_or_default(), members, *span as usize))
            }
            other => Err(format!("{target:?} is {other:?}, not a struct")),
        }
    }

    /// Compares the Rust mirror `T` with `target` in the shader's text as each kernel family
    /// compiles it; the error lists every difference, each naming the shader, the field and
    /// both sides.
    pub fn check<T: WgslLayout>(shader: &Shader, target: Target) -> Result<(), String> {
        let rust_name = std::any::type_name::<T>();
        for family in [KernelFamily::Buffers, KernelFamily::Textures] {
            let at = format!("{}.wgsl ({family:?}) vs {rust_name}", shader.name);
            let text = shader.for_family(family).expanded().map_err(|e| format!("{at}: {e}"))?;
            compare::<T>(&at, &text, target)?;
        }
        Ok(())
    }

    /// [`check`] on WGSL text; `at` names the pair in messages.
    pub fn compare<T: WgslLayout>(at: &str, wgsl: &str, target: Target) -> Result<(), String> {
        let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| format!("{at}: WGSL does not parse: {e}"))?;
        let (wgsl_name, members, wgsl_size) = find(&module, target).map_err(|e| format!("{at}: {e}"))?;
        let mut rust = Vec::new();
        flatten_rust(T::FIELDS, "", 0, &mut rust);
        let mut shader = Vec::new();
        flatten_wgsl(&module, members, "", 0, &mut shader);

        let mut problems = Vec::new();
        for i in 0..rust.len().max(shader.len()) {
            match (rust.get(i), shader.get(i)) {
                (Some(r), Some(w)) if r == w => {}
                (r, w) => {
                    let side = |f: Option<&Flat>| f.map_or("nothing".to_string(), Flat::to_string);
                    let field = r.or(w).map_or("?", |f| f.path.as_str());
                    problems.push(format!(
                        "field {i} ({field}): Rust has {}, WGSL {wgsl_name} has {}",
                        side(r),
                        side(w)
                    ));
                }
            }
        }
        let rust_size = size_of::<T>();
        if rust_size != wgsl_size {
            problems.push(format!("size: Rust {rust_size} bytes, WGSL {wgsl_name} {wgsl_size} bytes"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{at}:\n  {}", problems.join("\n  ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check::{compare, Target};
    use super::{FieldType, WgslLayout};

    crate::wgsl_struct! {
        struct Inner {
            a: u32,
            b: f32,
        }
    }

    crate::wgsl_struct! {
        struct Outer {
            len: u32,
            slope: f32,
            delta: i32,
            _pad: [u32; 1],
            inner: Inner,
        }
    }

    const OUTER: &str = "
        struct Inner { a: u32, b: f32, }
        struct Outer { len: u32, slope: f32, delta: i32, _pad0: u32, inner: Inner, }
        @group(0) @binding(0) var<uniform> p: Outer;
    ";

    #[test]
    fn the_macro_records_names_offsets_and_types() {
        let names: Vec<_> = Outer::FIELDS.iter().map(|f| (f.name, f.offset)).collect();
        assert_eq!(names, [("len", 0), ("slope", 4), ("delta", 8), ("_pad", 12), ("inner", 16)]);
        assert!(matches!(Outer::FIELDS[4].ty, FieldType::Struct(f) if f.len() == 2 && f[1].offset == 4));
        assert!(matches!(Outer::FIELDS[3].ty, FieldType::U32Array(1)));
    }

    #[test]
    fn a_matching_pair_passes() {
        compare::<Outer>("probe", OUTER, Target::Uniform).unwrap();
        compare::<Outer>("probe", OUTER, Target::Struct("Outer")).unwrap();
        compare::<Inner>("probe", OUTER, Target::Struct("Inner")).unwrap();
    }

    /// Each kind of drift fails, naming the field and both sides.
    #[test]
    fn drift_is_reported_field_by_field() {
        let cases = [
            (
                "swapped",
                "len: u32, slope: f32,",
                "slope: f32, len: u32,",
                "field 0 (len): Rust has `len: u32` at byte 0, WGSL Outer has `slope: f32` at byte 0",
            ),
            (
                "retyped",
                "slope: f32",
                "slope: u32",
                "field 1 (slope): Rust has `slope: f32` at byte 4, WGSL Outer has `slope: u32` at byte 4",
            ),
            (
                "renamed inside",
                "b: f32",
                "c: f32",
                "field 4 (inner.b): Rust has `inner.b: f32` at byte 20, WGSL Outer has `inner.c: f32` at byte 20",
            ),
            (
                "padded",
                "_pad0: u32,",
                "_pad0: u32, _pad1: u32,",
                "field 3 (inner.a): Rust has `inner.a: u32` at byte 16, WGSL Outer has `inner.a: u32` at byte 20",
            ),
            ("padded", "_pad0: u32,", "_pad0: u32, _pad1: u32,", "size: Rust 24 bytes, WGSL Outer 28 bytes"),
            (
                "removed",
                "delta: i32,",
                "",
                "field 4 (inner.b): Rust has `inner.b: f32` at byte 20, WGSL Outer has nothing",
            ),
        ];
        for (what, from, to, expected) in cases {
            let wgsl = OUTER.replacen(from, to, 1);
            let err = compare::<Outer>("probe", &wgsl, Target::Uniform).unwrap_err();
            assert!(err.starts_with("probe:") && err.contains(expected), "{what}: {err}\nexpected: {expected}");
        }
    }
}

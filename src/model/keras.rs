//! Layer lists from Keras: the JSON that `model.to_json()` writes for a `Sequential` (Keras 3,
//! and Keras 2's `batch_input_shape` and LeakyReLU `alpha`). Each supported class maps to
//! a kind of [`Layer`]; an activation given inside a layer (`Conv2D(..., activation="relu")`)
//! becomes a layer of its own after it, as Keras computes it. Anything the engine would not
//! compute as Keras does is refused with the layer's name and the option at fault: a padding
//! other than "valid" and "same", a dilation, a regularizer, an initializer other than
//! glorot_uniform and zeros, a softmax anywhere but last (after the Dense(10) logits: the
//! losses apply it, and the file written back keeps it), a layer too large for its input.

use super::{
    Architecture, AveragePooling2D, Conv2D, Dense, Dropout, Layer, LeakyReLU, MaxPooling2D, Padding, IMAGE_INPUT,
};
use crate::data::{IMAGE_SIDE, NUM_CLASSES};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::Path;

/// The layer list of the Keras model file at `path`.
pub fn read_layers(path: &Path) -> Result<Vec<Layer>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read Keras model file {}", path.display()))?;
    layers_from_json(&text).with_context(|| format!("Keras model file {}", path.display()))
}

/// The layer list of a Keras `Sequential`'s JSON. Each layer's size is checked as it is read,
/// so that a layer that cannot take its input is refused under its name in the file.
pub fn layers_from_json(text: &str) -> Result<Vec<Layer>> {
    let model: Value = serde_json::from_str(text).context("not JSON; write it with model.to_json()")?;
    let class = model.get("class_name").and_then(Value::as_str).unwrap_or("(no class_name)");
    ensure!(class == "Sequential", "a {class} model; only a Sequential (a list of layers) can be read");
    let entries = model
        .pointer("/config/layers")
        .and_then(Value::as_array)
        .context("no config.layers list; write the file with model.to_json()")?;
    let mut layers: Vec<Layer> = Vec::new();
    let mut dims = IMAGE_INPUT;
    // Where a softmax was read: nothing may follow it.
    let mut softmax_at: Option<String> = None;
    for (i, entry) in entries.iter().enumerate() {
        let class = entry.get("class_name").and_then(Value::as_str).unwrap_or("(no class_name)");
        let config = entry.get("config").cloned().unwrap_or(Value::Object(Default::default()));
        let name = config.get("name").and_then(Value::as_str).unwrap_or("");
        let at = format!("layer {} `{name}` ({class})", i + 1);
        let l = KerasLayer { config: &config };
        l.common().with_context(|| at.clone())?;
        // The input: an InputLayer first, or `batch_shape` (Keras 3) / `batch_input_shape`
        // (Keras 2) on the first layer (Keras 2 writes it on both).
        let first = entries[..i].iter().all(|e| e.get("class_name").and_then(Value::as_str) == Some("InputLayer"));
        if class != "InputLayer" && l.declares_input() {
            ensure!(first, "{at}: only the first layer can declare the input shape");
            l.input().with_context(|| at.clone())?;
        }
        let parsed = match class {
            "InputLayer" if i == 0 => l.input().map(|()| Vec::new()),
            "InputLayer" => Err(anyhow::anyhow!("an InputLayer can only come first")),
            "Conv2D" => l.conv2d(),
            "MaxPooling2D" => l.max_pooling2d().map(|p| vec![p]),
            "AveragePooling2D" => l.average_pooling2d().map(|p| vec![p]),
            "LeakyReLU" => l.leaky_relu().map(|a| vec![a]),
            "ReLU" => l.relu().map(|a| vec![a]),
            "Activation" => l.activation("activation"),
            "Dropout" => l.dropout().map(|d| vec![d]),
            "Flatten" => l.flatten().map(|()| vec![Layer::Flatten]),
            "GlobalAveragePooling2D" => l.global_pooling().map(|()| vec![Layer::GlobalAveragePooling2D]),
            "GlobalMaxPooling2D" => l.global_pooling().map(|()| vec![Layer::GlobalMaxPooling2D]),
            "Dense" => l.dense(),
            other => Err(anyhow::anyhow!(
                "{other} is not a supported layer (supported: InputLayer, Conv2D, MaxPooling2D, \
                 AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, LeakyReLU, ReLU, Activation, \
                 Dropout, Flatten, Dense)"
            )),
        };
        for layer in parsed.with_context(|| at.clone())? {
            if let Some(softmax) = &softmax_at {
                bail!(
                    "{softmax}: a softmax can only be the last layer, after the Dense({NUM_CLASSES}) logits (the \
                     losses apply it to them), but {at} follows it"
                );
            }
            if layer == Layer::Softmax {
                ensure!(
                    layers.last() == Some(&Layer::Dense(Dense { units: NUM_CLASSES })),
                    "{at}: a softmax can only come right after the Dense({NUM_CLASSES}) logits, as the last layer (the \
                     losses apply it to them)"
                );
                softmax_at = Some(at.clone());
            }
            dims =
                layer.kind().output(dims).map_err(|why| anyhow::anyhow!("{at}: {}: {why}", layer.kind().describe()))?;
            layers.push(layer);
        }
    }
    Ok(layers)
}

/// The Keras model file (`model.to_json()`'s format) of `arch`: a Sequential of its layers
/// under their Keras names, which `keras.models.model_from_json` builds and
/// [`layers_from_json`] reads back.
pub fn to_json(arch: &Architecture) -> String {
    let input = serde_json::json!({
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [null, IMAGE_SIDE, IMAGE_SIDE, 1], "dtype": "float32", "name": "input_layer"},
    });
    let layers = arch.walk().into_iter().map(|l| {
        let mut config = l.kind().keras_config();
        config["name"] = l.keras_name.clone().into();
        serde_json::json!({"module": "keras.layers", "class_name": l.kind().keras_class(), "config": config})
    });
    let model = serde_json::json!({
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": arch.name(), "layers": std::iter::once(input).chain(layers).collect::<Vec<_>>()},
    });
    model.to_string()
}

/// One entry of the list: its config.
struct KerasLayer<'a> {
    config: &'a Value,
}

impl KerasLayer<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.config.get(key).filter(|v| !v.is_null())
    }

    /// Refuses option `key` unless it is absent or one of `allowed`.
    fn only(&self, key: &str, allowed: &[Value], why: &str) -> Result<()> {
        match self.get(key) {
            Some(v) if !allowed.contains(v) => bail!("option `{key}` = {v} is not supported: {why}"),
            _ => Ok(()),
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).with_context(|| format!("option `{key}` is missing"))?;
        v.as_u64().map(|n| n as usize).with_context(|| format!("option `{key}` = {v} is not a whole number"))
    }

    fn f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.as_f64().map(|x| Some(x as f32)).with_context(|| format!("option `{key}` = {v} is not a number"))
            }
        }
    }

    /// A square size given as `n` or `[n, n]`.
    fn square(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let sides: Option<Vec<u64>> = match v {
            Value::Array(items) => items.iter().map(Value::as_u64).collect(),
            v => v.as_u64().map(|n| vec![n, n]),
        };
        match sides.as_deref() {
            Some(&[a, b]) if a == b => Ok(Some(a as usize)),
            _ => bail!("option `{key}` = {v} is not supported: only square sizes, [n, n]"),
        }
    }

    /// What every layer may carry: a name, float32, trainable.
    fn common(&self) -> Result<()> {
        self.only("trainable", &[true.into()], "every layer trains here")?;
        match self.get("dtype") {
            None => Ok(()),
            Some(Value::String(s)) if s == "float32" => Ok(()),
            Some(d) if d.pointer("/config/name").and_then(Value::as_str) == Some("float32") => Ok(()),
            Some(d) => bail!("option `dtype` = {d} is not supported: the engine computes in float32"),
        }
    }

    fn channels_last(&self) -> Result<()> {
        self.only("data_format", &["channels_last".into()], "tensors are NHWC (channels_last)")
    }

    /// Keras's `padding`: "valid" (its default) or "same".
    fn padding(&self) -> Result<Padding> {
        match self.get("padding") {
            None => Ok(Padding::Valid),
            Some(v) if v == "valid" => Ok(Padding::Valid),
            Some(v) if v == "same" => Ok(Padding::Same),
            Some(v) => bail!("option `padding` = {v} is not supported (supported: \"valid\", \"same\")"),
        }
    }

    /// Glorot-uniform kernels, zero biases, a bias, no regularizer or constraint.
    fn weights(&self) -> Result<()> {
        self.only("use_bias", &[true.into()], "layers with parameters have a bias")?;
        for (key, class) in [("kernel_initializer", "GlorotUniform"), ("bias_initializer", "Zeros")] {
            if let Some(init) = self.get(key) {
                let name = init.get("class_name").and_then(Value::as_str).or(init.as_str()).unwrap_or("");
                let plain = name.to_lowercase().replace('_', "");
                ensure!(
                    plain == class.to_lowercase(),
                    "option `{key}` = {name} is not supported: kernels start glorot_uniform, biases zero"
                );
            }
        }
        for key in
            ["kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"]
        {
            if let Some(v) = self.get(key) {
                bail!("option `{key}` = {v} is not supported");
            }
        }
        Ok(())
    }

    /// The layers an `activation` option adds after the layer: none for linear, ReLU for relu.
    fn activation(&self, key: &str) -> Result<Vec<Layer>> {
        let name = match self.get(key) {
            None => "linear",
            Some(v) => v.as_str().or(v.get("class_name").and_then(Value::as_str)).unwrap_or(""),
        };
        match name {
            "linear" => Ok(Vec::new()),
            "relu" => Ok(vec![Layer::ReLU]),
            // Only last, after the logits: layers_from_json checks where it comes.
            "softmax" => Ok(vec![Layer::Softmax]),
            other => bail!(
                "option `{key}` = {other:?} is not supported (supported: \"linear\", \"relu\", and \"softmax\" \
                 on the last layer)"
            ),
        }
    }

    fn declares_input(&self) -> bool {
        self.get("batch_shape").or(self.get("batch_input_shape")).is_some()
    }

    fn input(&self) -> Result<()> {
        let shape = self.get("batch_shape").or(self.get("batch_input_shape")).context("no batch_shape")?;
        let want = serde_json::json!([null, IMAGE_SIDE, IMAGE_SIDE, 1]);
        ensure!(
            *shape == want,
            "input shape {shape} does not fit the data: Fashion-MNIST images are {want} (Input(shape=(28, 28, 1)))"
        );
        Ok(())
    }

    fn conv2d(&self) -> Result<Vec<Layer>> {
        let padding = self.padding()?;
        self.channels_last()?;
        self.only("dilation_rate", &[1.into(), serde_json::json!([1, 1])], "no dilated convolutions")?;
        self.only("groups", &[1.into()], "no grouped convolutions")?;
        self.weights()?;
        let conv = Conv2D {
            filters: self.usize("filters")?,
            kernel: self.square("kernel_size")?.context("option `kernel_size` is missing")?,
            stride: self.square("strides")?.unwrap_or(1),
            padding,
        };
        Ok([vec![Layer::Conv2D(conv)], self.activation("activation")?].concat())
    }

    fn max_pooling2d(&self) -> Result<Layer> {
        let padding = self.padding()?;
        self.channels_last()?;
        let size = self.square("pool_size")?.unwrap_or(2);
        // Keras: strides default to the pool size (null or absent).
        let stride = self.square("strides")?.unwrap_or(size);
        Ok(Layer::MaxPooling2D(MaxPooling2D { size, stride, padding }))
    }

    fn average_pooling2d(&self) -> Result<Layer> {
        let padding = self.padding()?;
        self.channels_last()?;
        let size = self.square("pool_size")?.unwrap_or(2);
        // As MaxPooling2D: strides default to the pool size (null or absent).
        let stride = self.square("strides")?.unwrap_or(size);
        Ok(Layer::AveragePooling2D(AveragePooling2D { size, stride, padding }))
    }

    fn leaky_relu(&self) -> Result<Layer> {
        // Keras 3 names it negative_slope (default 0.3), Keras 2 alpha.
        let slope = self.f32("negative_slope")?.or(self.f32("alpha")?).unwrap_or(0.3);
        Ok(Layer::LeakyReLU(LeakyReLU { slope }))
    }

    fn relu(&self) -> Result<Layer> {
        self.only("max_value", &[], "no capped ReLU")?;
        let threshold = self.f32("threshold")?.unwrap_or(0.0);
        ensure!(threshold == 0.0, "option `threshold` = {threshold} is not supported: only 0");
        Ok(match self.f32("negative_slope")?.unwrap_or(0.0) {
            0.0 => Layer::ReLU,
            slope => Layer::LeakyReLU(LeakyReLU { slope }),
        })
    }

    fn dropout(&self) -> Result<Layer> {
        self.only("noise_shape", &[], "masks are drawn per element")?;
        let rate = self.f32("rate")?.context("option `rate` is missing")?;
        Ok(Layer::Dropout(Dropout { rate }))
    }

    fn flatten(&self) -> Result<()> {
        self.channels_last()
    }

    /// GlobalAveragePooling2D and GlobalMaxPooling2D: (h, w, c) -> (c) only.
    fn global_pooling(&self) -> Result<()> {
        self.channels_last()?;
        self.only("keepdims", &[false.into()], "the output is one vector of channels (keepdims=False)")
    }

    fn dense(&self) -> Result<Vec<Layer>> {
        self.weights()?;
        let dense = Dense { units: self.usize("units")? };
        Ok([vec![Layer::Dense(dense)], self.activation("activation")?].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dims;

    fn sequential(layers: &str) -> String {
        format!(r#"{{"class_name": "Sequential", "config": {{"name": "m", "layers": [{layers}]}}}}"#)
    }

    const INPUT: &str = r#"{"class_name": "InputLayer", "config": {"batch_shape": [null, 28, 28, 1]}}"#;
    const LOGITS: &str = r#"{"class_name": "Dense", "config": {"name": "dense", "units": 10}}"#;

    fn err(layers: &str) -> String {
        format!("{:#}", layers_from_json(&sequential(layers)).unwrap_err())
    }

    #[test]
    fn the_seed_networks_written_by_keras_are_the_seed_lists() {
        // models/ holds them for the Python scripts: they must stay the networks of the constants.
        let teacher = include_str!("../../models/seed-teacher.json");
        assert_eq!(layers_from_json(teacher).unwrap(), Architecture::teacher().layers());
        let student = include_str!("../../models/seed-student.json");
        assert_eq!(layers_from_json(student).unwrap(), Architecture::student().layers());
    }

    #[test]
    fn a_list_written_as_keras_json_reads_back_the_same() {
        let small =
            Architecture::new("small", layers_from_json(include_str!("../../tests/data/keras-small.json")).unwrap());
        let leaky = Layer::LeakyReLU(LeakyReLU { slope: 0.25 });
        let odd = Architecture::new("odd", [vec![leaky], Architecture::student().layers().to_vec()].concat());
        for arch in [Architecture::teacher(), small.unwrap(), odd.unwrap()] {
            let text = to_json(&arch);
            assert_eq!(layers_from_json(&text).unwrap(), arch.layers(), "{text}");
        }
    }

    #[test]
    fn activations_inside_layers_become_layers() {
        let text = include_str!("../../tests/data/keras-small.json");
        let layers = layers_from_json(text).unwrap();
        let classes: Vec<&str> = layers.iter().map(|l| l.kind().keras_class()).collect();
        assert_eq!(
            classes,
            [
                "Conv2D",
                "ReLU",
                "MaxPooling2D",
                "Conv2D",
                "ReLU",
                "Dropout",
                "Flatten",
                "Dense",
                "ReLU",
                "Dropout",
                "Dense"
            ]
        );
        assert_eq!(layers[5], Layer::Dropout(Dropout { rate: 0.25 }));
        Architecture::new("small", layers).unwrap();
    }

    #[test]
    fn what_is_not_computed_as_keras_does_is_refused_by_name() {
        let conv = |extra: &str| {
            format!(
                r#"{INPUT}, {{"class_name": "Conv2D", "config": {{"name": "c", "filters": 4, "kernel_size": [3, 3]{extra}}}}}, {LOGITS}"#
            )
        };
        assert!(err(&conv(r#", "padding": "causal""#)).contains("layer 2 `c` (Conv2D): option `padding` = \"causal\""));
        assert!(err(&conv(r#", "dilation_rate": [2, 2]"#)).contains("dilation_rate"));
        assert!(err(&conv(r#", "kernel_size": [3, 5]"#)).contains("only square sizes"));
        assert!(err(&conv(r#", "activation": "tanh""#)).contains("\"tanh\" is not supported"));
        assert!(err(&conv(r#", "kernel_regularizer": {"class_name": "L2"}"#)).contains("kernel_regularizer"));
        let init = r#", "kernel_initializer": {"class_name": "HeNormal"}"#;
        assert!(err(&conv(init)).contains("HeNormal is not supported"));
        let unknown = r#"{"class_name": "BatchNormalization", "config": {"name": "bn"}}"#;
        assert!(err(unknown).contains("layer 1 `bn` (BatchNormalization): BatchNormalization is not a supported layer"));
        // A softmax anywhere but after the last Dense(10).
        let flat = r#"{"class_name": "Flatten", "config": {"name": "f"}}"#;
        let hidden = r#"{"class_name": "Dense", "config": {"name": "hidden", "units": 10, "activation": "softmax"}}"#;
        let why = err(&format!("{INPUT}, {flat}, {hidden}, {LOGITS}"));
        assert!(why.contains("layer 3 `hidden` (Dense): a softmax can only be the last layer"), "{why}");
        assert!(why.contains("layer 4 `dense` (Dense) follows it"), "{why}");
        let act = r#"{"class_name": "Activation", "config": {"name": "act", "activation": "softmax"}}"#;
        let why = err(&format!("{INPUT}, {flat}, {act}, {LOGITS}"));
        assert!(why.contains("layer 3 `act` (Activation): a softmax can only come right after the Dense(10)"), "{why}");
        let wide = r#"{"class_name": "Dense", "config": {"name": "wide", "units": 12, "activation": "softmax"}}"#;
        assert!(err(&format!("{INPUT}, {flat}, {wide}")).contains("layer 3 `wide` (Dense): a softmax can only come"));
        // A "valid" window larger than its input: refused with the layer's name and the shapes.
        let big =
            r#"{"class_name": "MaxPooling2D", "config": {"name": "big", "pool_size": [8, 8], "padding": "valid"}}"#;
        let why = err(&format!("{INPUT}, {big}, {big}, {flat}, {LOGITS}"));
        assert!(
            why.contains(
                "layer 3 `big` (MaxPooling2D): MaxPooling2D(8, strides=8, padding=\"valid\"): its 8x8 pool window \
                 with padding \"valid\" is larger than its 3x3x1 input: the output would be 0x0"
            ),
            "{why}"
        );
        let kernel = r#"{"class_name": "Conv2D", "config": {"name": "k", "filters": 2, "kernel_size": 29}}"#;
        let why = err(&format!("{INPUT}, {kernel}, {flat}, {LOGITS}"));
        assert!(why.contains("layer 2 `k` (Conv2D)") && why.contains("larger than its 28x28x1 input"), "{why}");
        // The same with "same" padding has an output.
        let same =
            r#"{"class_name": "Conv2D", "config": {"name": "k", "filters": 2, "kernel_size": 29, "padding": "same"}}"#;
        layers_from_json(&sequential(&format!("{INPUT}, {same}, {flat}, {LOGITS}"))).unwrap();
        // The input declared twice, or on a later layer.
        let late = r#"{"class_name": "Flatten", "config": {"name": "late", "batch_shape": [null, 28, 28, 1]}}"#;
        assert!(err(&format!("{INPUT}, {flat}, {late}, {LOGITS}")).contains("layer 3 `late` (Flatten): only the first"));
        let wide = r#"{"class_name": "InputLayer", "config": {"batch_shape": [null, 32, 32, 3]}}"#;
        assert!(err(wide).contains("does not fit the data"));
        let functional = r#"{"class_name": "Functional", "config": {"layers": []}}"#;
        assert!(format!("{:#}", layers_from_json(functional).unwrap_err()).contains("only a Sequential"));
        assert!(format!("{:#}", layers_from_json("{").unwrap_err()).contains("not JSON"));
    }

    /// Keras 3.15's `to_json()` entries for GlobalAveragePooling2D() and GlobalMaxPooling2D().
    const GLOBAL_AVERAGE: &str = r#"{"module": "keras.layers", "class_name": "GlobalAveragePooling2D", "config": {"name": "global_average_pooling2d", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "data_format": "channels_last", "keepdims": false}, "registered_name": null}"#;
    const GLOBAL_MAX: &str = r#"{"module": "keras.layers", "class_name": "GlobalMaxPooling2D", "config": {"name": "global_max_pooling2d", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "data_format": "channels_last", "keepdims": false}, "registered_name": null}"#;

    #[test]
    fn global_pools_are_read_written_and_refused_as_keras_does() {
        let conv = r#"{"class_name": "Conv2D", "config": {"name": "c", "filters": 4, "kernel_size": [3, 3]}}"#;
        let flat = r#"{"class_name": "Flatten", "config": {"name": "f"}}"#;
        let conv_layer = Layer::Conv2D(Conv2D { filters: 4, kernel: 3, stride: 1, padding: Padding::Valid });
        let dense = Layer::Dense(Dense { units: 10 });
        // Keras: (None, 26, 26, 4) -> (None, 4), 0 params; 90 params in all. A Flatten after a
        // global pool is Keras's no-op on a vector.
        let average = layers_from_json(&sequential(&format!("{INPUT}, {conv}, {GLOBAL_AVERAGE}, {LOGITS}"))).unwrap();
        assert_eq!(average, [conv_layer, Layer::GlobalAveragePooling2D, dense]);
        let max = layers_from_json(&sequential(&format!("{INPUT}, {conv}, {GLOBAL_MAX}, {flat}, {LOGITS}"))).unwrap();
        assert_eq!(max, [conv_layer, Layer::GlobalMaxPooling2D, Layer::Flatten, dense]);
        for (layers, line) in [
            (average, "global_average_pooling2d (GlobalAveragePooling2D)(None, 4)"),
            (max, "global_max_pooling2d (GlobalMaxPooling2D)(None, 4)"),
        ] {
            let arch = Architecture::new("global", layers).unwrap();
            assert_eq!(arch.param_count(), 90);
            let summary = arch.summary();
            assert!(summary.contains(line), "{summary}");
            let text = to_json(&arch);
            assert!(text.contains(r#""keepdims":false"#), "{text}");
            assert_eq!(layers_from_json(&text).unwrap(), arch.layers(), "{text}");
        }
        // keepdims=True, channels_first, and a vector input are refused by name.
        let keepdims = GLOBAL_AVERAGE.replace(r#""keepdims": false"#, r#""keepdims": true"#);
        let why = err(&format!("{INPUT}, {conv}, {keepdims}, {flat}, {LOGITS}"));
        assert!(
            why.contains("layer 3 `global_average_pooling2d` (GlobalAveragePooling2D): option `keepdims` = true"),
            "{why}"
        );
        let first = GLOBAL_MAX.replace("channels_last", "channels_first");
        let why = err(&format!("{INPUT}, {conv}, {first}, {LOGITS}"));
        assert!(why.contains("layer 3 `global_max_pooling2d` (GlobalMaxPooling2D): option `data_format`"), "{why}");
        let why = err(&format!("{INPUT}, {flat}, {GLOBAL_MAX}, {LOGITS}"));
        assert!(
            why.contains("layer 3 `global_max_pooling2d` (GlobalMaxPooling2D): GlobalMaxPooling2D(): takes an image"),
            "{why}"
        );
    }

    #[test]
    fn average_pools_are_read_and_written_as_keras_does() {
        // Keras 3.15's to_json() entries for AveragePooling2D(3, padding="same") and
        // AveragePooling2D((2, 2), strides=(1, 1)): (None, 10, 10, 1), then (None, 9, 9, 1).
        let same = r#"{"module": "keras.layers", "class_name": "AveragePooling2D", "config": {"name": "average_pooling2d_2", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "pool_size": [3, 3], "padding": "same", "strides": [3, 3], "data_format": "channels_last"}, "registered_name": null}"#;
        let valid = r#"{"module": "keras.layers", "class_name": "AveragePooling2D", "config": {"name": "average_pooling2d_3", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "pool_size": [2, 2], "padding": "valid", "strides": [1, 1], "data_format": "channels_last"}, "registered_name": null}"#;
        let null =
            r#"{"class_name": "AveragePooling2D", "config": {"name": "p", "pool_size": [2, 2], "strides": null}}"#;
        let flat = r#"{"class_name": "Flatten", "config": {"name": "f"}}"#;
        let layers =
            layers_from_json(&sequential(&format!("{INPUT}, {same}, {valid}, {null}, {flat}, {LOGITS}"))).unwrap();
        let pool = |size, stride, padding| Layer::AveragePooling2D(AveragePooling2D { size, stride, padding });
        assert_eq!(layers[..3], [pool(3, 3, Padding::Same), pool(2, 1, Padding::Valid), pool(2, 2, Padding::Valid)]);
        let arch = Architecture::new("average", layers).unwrap();
        let dims: Vec<_> = arch.walk().iter().map(|l| l.output).collect();
        assert_eq!(
            dims[..3],
            [Dims::Image { h: 10, w: 10, c: 1 }, Dims::Image { h: 9, w: 9, c: 1 }, Dims::Image { h: 4, w: 4, c: 1 }]
        );
        assert_eq!(arch.param_count(), 16 * 10 + 10);
        let text = to_json(&arch);
        assert_eq!(layers_from_json(&text).unwrap(), arch.layers(), "{text}");
        let first = valid.replace("channels_last", "channels_first");
        assert!(err(&format!("{INPUT}, {first}, {flat}, {LOGITS}")).contains("option `data_format`"));
        let big = r#"{"class_name": "AveragePooling2D", "config": {"name": "big", "pool_size": 29}}"#;
        let why = err(&format!("{INPUT}, {big}, {flat}, {LOGITS}"));
        assert!(
            why.contains("layer 2 `big` (AveragePooling2D)") && why.contains("larger than its 28x28x1 input"),
            "{why}"
        );
    }

    #[test]
    fn keras_io_mnist_convnet_is_read_with_its_softmax() {
        let text = include_str!("../../tests/data/keras-mnist-convnet.json");
        let layers = layers_from_json(text).unwrap();
        let valid = Padding::Valid;
        assert_eq!(
            layers,
            [
                Layer::Conv2D(Conv2D { filters: 32, kernel: 3, stride: 1, padding: valid }),
                Layer::ReLU,
                Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: valid }),
                Layer::Conv2D(Conv2D { filters: 64, kernel: 3, stride: 1, padding: valid }),
                Layer::ReLU,
                Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: valid }),
                Layer::Flatten,
                Layer::Dropout(Dropout { rate: 0.5 }),
                Layer::Dense(Dense { units: 10 }),
                Layer::Softmax,
            ]
        );
        let arch = Architecture::new("convnet", layers.clone()).unwrap();
        assert_eq!(arch.param_count(), 34_826);
        // Written back, the softmax and the padding stay; it reads back the same.
        let back = to_json(&arch);
        assert!(back.contains(r#""activation":"softmax""#) && back.contains(r#""padding":"valid""#), "{back}");
        assert_eq!(layers_from_json(&back).unwrap(), layers);
        // Keras 2: `strides` null, the input on the first layer, no InputLayer.
        let keras2 = sequential(
            r#"{"class_name": "Conv2D", "config": {"name": "c", "filters": 32, "kernel_size": [3, 3], "activation": "relu", "batch_input_shape": [null, 28, 28, 1]}},
               {"class_name": "MaxPooling2D", "config": {"name": "p", "pool_size": [2, 2], "strides": null, "padding": "valid"}},
               {"class_name": "Conv2D", "config": {"name": "c1", "filters": 64, "kernel_size": [3, 3], "activation": "relu"}},
               {"class_name": "MaxPooling2D", "config": {"name": "p1", "pool_size": [2, 2]}},
               {"class_name": "Flatten", "config": {"name": "f"}},
               {"class_name": "Dropout", "config": {"name": "d", "rate": 0.5}},
               {"class_name": "Dense", "config": {"name": "o", "units": 10}},
               {"class_name": "Activation", "config": {"name": "s", "activation": "softmax"}}"#,
        );
        assert_eq!(layers_from_json(&keras2).unwrap(), layers);
        let wrong = keras2.replace("[null, 28, 28, 1]", "[null, 32, 32, 3]");
        assert!(format!("{:#}", layers_from_json(&wrong).unwrap_err()).contains("layer 1 `c` (Conv2D): input shape"));
    }

    #[test]
    fn keras_2_names_and_defaults_are_read() {
        let text = sequential(&format!(
            r#"{{"class_name": "InputLayer", "config": {{"batch_input_shape": [null, 28, 28, 1]}}}},
               {{"class_name": "LeakyReLU", "config": {{"alpha": 0.1}}}},
               {{"class_name": "MaxPooling2D", "config": {{"pool_size": [3, 3], "strides": null}}}},
               {{"class_name": "ReLU", "config": {{"negative_slope": 0.2}}}},
               {{"class_name": "Activation", "config": {{"activation": "relu"}}}},
               {{"class_name": "Flatten", "config": {{}}}}, {LOGITS}"#
        ));
        let layers = layers_from_json(&text).unwrap();
        assert_eq!(layers[0], Layer::LeakyReLU(LeakyReLU { slope: 0.1 }));
        // Keras's defaults: "valid" padding, strides = pool_size.
        assert_eq!(layers[1], Layer::MaxPooling2D(MaxPooling2D { size: 3, stride: 3, padding: Padding::Valid }));
        assert_eq!(layers[2], Layer::LeakyReLU(LeakyReLU { slope: 0.2 }));
        assert_eq!(layers[3], Layer::ReLU);
    }
}

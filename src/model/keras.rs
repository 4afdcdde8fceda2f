//! Layer lists from Keras: the JSON that `model.to_json()` writes for a `Sequential` (Keras 3,
//! and Keras 2's `batch_input_shape` and LeakyReLU `alpha`). Each supported class maps to
//! a kind of [`Layer`]; an activation given inside a layer (`Conv2D(..., activation="relu")`)
//! becomes a layer of its own after it, as Keras computes it. Anything the engine would not
//! compute as Keras does is refused with the layer's name and the option at fault: another
//! padding, a dilation, a regularizer, an initializer other than glorot_uniform and zeros.

use super::{Architecture, Conv2D, Dense, Dropout, Layer, LeakyReLU, MaxPooling2D};
use crate::data::IMAGE_SIDE;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::Path;

/// The layer list of the Keras model file at `path`.
pub fn read_layers(path: &Path) -> Result<Vec<Layer>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read Keras model file {}", path.display()))?;
    layers_from_json(&text).with_context(|| format!("Keras model file {}", path.display()))
}

/// The layer list of a Keras `Sequential`'s JSON.
pub fn layers_from_json(text: &str) -> Result<Vec<Layer>> {
    let model: Value = serde_json::from_str(text).context("not JSON; write it with model.to_json()")?;
    let class = model.get("class_name").and_then(Value::as_str).unwrap_or("(no class_name)");
    ensure!(class == "Sequential", "a {class} model; only a Sequential (a list of layers) can be read");
    let entries = model
        .pointer("/config/layers")
        .and_then(Value::as_array)
        .context("no config.layers list; write the file with model.to_json()")?;
    let mut layers = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let class = entry.get("class_name").and_then(Value::as_str).unwrap_or("(no class_name)");
        let config = entry.get("config").cloned().unwrap_or(Value::Object(Default::default()));
        let name = config.get("name").and_then(Value::as_str).unwrap_or("");
        let at = format!("layer {} `{name}` ({class})", i + 1);
        let l = KerasLayer { class, config: &config };
        l.common().with_context(|| at.clone())?;
        let parsed = match class {
            "InputLayer" if i == 0 => l.input().map(|()| Vec::new()),
            "InputLayer" => Err(anyhow::anyhow!("an InputLayer can only come first")),
            "Conv2D" => l.conv2d(),
            "MaxPooling2D" => l.max_pooling2d().map(|p| vec![p]),
            "LeakyReLU" => l.leaky_relu().map(|a| vec![a]),
            "ReLU" => l.relu().map(|a| vec![a]),
            "Activation" => l.activation("activation"),
            "Dropout" => l.dropout().map(|d| vec![d]),
            "Flatten" => l.flatten().map(|()| vec![Layer::Flatten]),
            "Dense" => l.dense(),
            other => Err(anyhow::anyhow!(
                "{other} is not a supported layer (supported: InputLayer, Conv2D, MaxPooling2D, LeakyReLU, \
                 ReLU, Activation, Dropout, Flatten, Dense)"
            )),
        };
        layers.extend(parsed.with_context(|| at.clone())?);
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

/// One entry of the list: its class and config.
struct KerasLayer<'a> {
    class: &'a str,
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

    fn same_padding(&self) -> Result<()> {
        self.only("padding", &["same".into()], "only \"same\" padding is implemented")
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
            "softmax" if self.class == "Dense" => {
                bail!("option `{key}` = \"softmax\" is not supported: the losses read logits; leave the last Dense linear")
            }
            other => bail!("option `{key}` = {other:?} is not supported (supported: \"linear\", \"relu\")"),
        }
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
        self.same_padding()?;
        self.channels_last()?;
        self.only("dilation_rate", &[1.into(), serde_json::json!([1, 1])], "no dilated convolutions")?;
        self.only("groups", &[1.into()], "no grouped convolutions")?;
        self.weights()?;
        let conv = Conv2D {
            filters: self.usize("filters")?,
            kernel: self.square("kernel_size")?.context("option `kernel_size` is missing")?,
            stride: self.square("strides")?.unwrap_or(1),
        };
        Ok([vec![Layer::Conv2D(conv)], self.activation("activation")?].concat())
    }

    fn max_pooling2d(&self) -> Result<Layer> {
        self.same_padding()?;
        self.channels_last()?;
        let size = self.square("pool_size")?.unwrap_or(2);
        // Keras: strides default to the pool size.
        let stride = self.square("strides")?.unwrap_or(size);
        Ok(Layer::MaxPooling2D(MaxPooling2D { size, stride }))
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

    fn dense(&self) -> Result<Vec<Layer>> {
        self.weights()?;
        let dense = Dense { units: self.usize("units")? };
        Ok([vec![Layer::Dense(dense)], self.activation("activation")?].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err(&conv(r#", "padding": "valid""#)).contains("layer 2 `c` (Conv2D): option `padding` = \"valid\""));
        assert!(err(&conv(r#", "dilation_rate": [2, 2]"#)).contains("dilation_rate"));
        assert!(err(&conv(r#", "kernel_size": [3, 5]"#)).contains("only square sizes"));
        assert!(err(&conv(r#", "activation": "tanh""#)).contains("\"tanh\" is not supported"));
        assert!(err(&conv(r#", "kernel_regularizer": {"class_name": "L2"}"#)).contains("kernel_regularizer"));
        let init = r#", "kernel_initializer": {"class_name": "HeNormal"}"#;
        assert!(err(&conv(init)).contains("HeNormal is not supported"));
        let unknown = r#"{"class_name": "BatchNormalization", "config": {"name": "bn"}}"#;
        assert!(err(unknown).contains("layer 1 `bn` (BatchNormalization): BatchNormalization is not a supported layer"));
        let softmax = r#"{"class_name": "Dense", "config": {"name": "out", "units": 10, "activation": "softmax"}}"#;
        assert!(err(softmax).contains("the losses read logits"));
        let wide = r#"{"class_name": "InputLayer", "config": {"batch_shape": [null, 32, 32, 3]}}"#;
        assert!(err(wide).contains("does not fit the data"));
        let functional = r#"{"class_name": "Functional", "config": {"layers": []}}"#;
        assert!(format!("{:#}", layers_from_json(functional).unwrap_err()).contains("only a Sequential"));
        assert!(format!("{:#}", layers_from_json("{").unwrap_err()).contains("not JSON"));
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
        assert_eq!(layers[1], Layer::MaxPooling2D(MaxPooling2D { size: 3, stride: 3 }));
        assert_eq!(layers[2], Layer::LeakyReLU(LeakyReLU { slope: 0.2 }));
        assert_eq!(layers[3], Layer::ReLU);
    }
}

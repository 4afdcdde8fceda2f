//! Lowering: the layer list becomes the stages a plan records, with every fusion decided
//! here, from what each kind says it can fuse:
//! - forward, a layer that runs the activation after it in its epilogue (Conv2D's product)
//!   takes that activation along, and the activation's output is the layer's buffer;
//! - backward, a layer whose backward pass goes on through the activation before it
//!   (MaxPooling2D) takes that activation's backward pass along;
//! - a layer that passes its input through (Flatten; Dropout in evaluation) has no stage
//!   and shares its input's buffer, and its gradient is its output's.
//!
//! The backward pass stops at the first layer with parameters, below which nothing needs a
//! gradient, unless the network's input needs one (a head on a layer of a model in training).

use crate::model::{Mode, PlacedLayer};

/// A forward stage: layer `layer`'s kernels, with the activation it runs in its epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardStage {
    pub layer: usize,
    /// The activation after it (its index and slope), whose output is this layer's buffer.
    pub epilogue: Option<(usize, f32)>,
}

/// A backward stage: layer `layer`'s backward pass, from the gradient of its output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackwardStage {
    pub layer: usize,
    /// The activation right before it (index and slope) whose backward pass it runs too.
    pub through: Option<(usize, f32)>,
    /// Whether it writes its input's gradient (of `through`'s input with an activation):
    /// not for the first layer with parameters, below which nothing needs one, unless the
    /// network's input does.
    pub needs_dx: bool,
}

impl BackwardStage {
    /// The layer whose input gradient the stage writes.
    pub fn lowest(&self) -> usize {
        self.through.map_or(self.layer, |(i, _)| i)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lowered {
    pub forward: Vec<ForwardStage>,
    /// From the last layer down to the first with parameters (to the first layer when the
    /// input's gradient is needed).
    pub backward: Vec<BackwardStage>,
    /// Per layer: whether its output is the buffer of what it reads (its input unchanged, or a
    /// product's output it was fused into).
    pub shares_input: Vec<bool>,
}

/// The stages of `walk` in `mode`; with `input_gradient`, the backward pass writes the
/// gradient of the network's input.
pub fn lower(walk: &[PlacedLayer], mode: Mode, input_gradient: bool) -> Lowered {
    let slope = |i: usize| walk.get(i).and_then(|l| l.kind().activation_slope());
    let fused_after = |i: usize| i > 0 && slope(i).is_some() && walk[i - 1].kind().fuses_activation_after();
    let shares_input: Vec<bool> =
        (0..walk.len()).map(|i| walk[i].kind().passes_through(mode) || fused_after(i)).collect();

    let forward = (0..walk.len())
        .filter(|&i| !shares_input[i])
        .map(|i| ForwardStage { layer: i, epilogue: fused_after(i + 1).then(|| (i + 1, slope(i + 1).unwrap())) })
        .collect();

    let mut backward = Vec::new();
    // The lowest layer the pass reaches.
    let first = match input_gradient {
        true => Some(0),
        false => walk.iter().position(PlacedLayer::has_params),
    };
    if let Some(first) = first {
        let mut i = walk.len();
        while i > first {
            i -= 1;
            if walk[i].kind().passes_through(mode) {
                continue;
            }
            // A layer with parameters has no slope, so only an activation is taken along (down
            // to the first layer, with `input_gradient`).
            let through = (walk[i].kind().fuses_activation_before() && i > first)
                .then(|| slope(i - 1).map(|s| (i - 1, s)))
                .flatten();
            let stage = BackwardStage { layer: i, through, needs_dx: false };
            let stage = BackwardStage { needs_dx: input_gradient || stage.lowest() > first, ..stage };
            i = stage.lowest();
            backward.push(stage);
        }
    }
    Lowered { forward, backward, shares_input }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, Conv2D, Dense, Dims, Dropout, Layer, LeakyReLU, MaxPooling2D, Padding};

    fn stages(layers: Vec<Layer>, mode: Mode) -> Lowered {
        lower(&Architecture::new("m", layers).unwrap().walk(), mode, false)
    }

    #[test]
    fn the_seed_network_fuses_its_activation_both_ways() {
        let l = lower(&Architecture::student().walk(), Mode::Train, false);
        // conv1 + leaky, pool, conv2, dense; Flatten shares conv2's buffer.
        let fwd: Vec<_> = l.forward.iter().map(|s| (s.layer, s.epilogue)).collect();
        assert_eq!(fwd, [(0, Some((1, 0.2))), (2, None), (3, None), (5, None)]);
        assert_eq!(l.shares_input, [false, true, false, false, true, false]);
        // dense, conv2 (Flatten passes on), pool through leaky, conv1 without an input gradient.
        let bwd: Vec<_> = l.backward.iter().map(|s| (s.layer, s.through.map(|t| t.0), s.needs_dx)).collect();
        assert_eq!(bwd, [(5, None, true), (3, None, true), (2, Some(1), true), (0, None, false)]);
    }

    #[test]
    fn dropout_is_a_stage_in_training_only_and_unfusable_neighbours_stay_apart() {
        let conv = Layer::Conv2D(Conv2D { filters: 4, kernel: 3, stride: 2, padding: Padding::Same });
        let layers = vec![
            conv,
            Layer::Dropout(Dropout { rate: 0.5 }),
            Layer::LeakyReLU(LeakyReLU { slope: 0.1 }),
            Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: Padding::Same }),
            Layer::Flatten,
            Layer::Dense(Dense { units: 8 }),
            Layer::ReLU,
            Layer::Dense(Dense { units: 10 }),
        ];
        let train = stages(layers.clone(), Mode::Train);
        let fwd: Vec<_> = train.forward.iter().map(|s| (s.layer, s.epilogue.map(|e| e.0))).collect();
        // The LeakyReLU after Dropout and the ReLU after Dense run on their own.
        assert_eq!(fwd, [(0, None), (1, None), (2, None), (3, None), (5, None), (6, None), (7, None)]);
        let bwd: Vec<_> = train.backward.iter().map(|s| (s.layer, s.through.map(|t| t.0))).collect();
        assert_eq!(bwd, [(7, None), (6, None), (5, None), (3, Some(2)), (1, None), (0, None)]);
        let eval = stages(layers, Mode::Evaluate);
        assert!(eval.shares_input[1] && !eval.forward.iter().any(|s| s.layer == 1));
        assert!(!eval.backward.iter().any(|s| s.layer == 1));
    }

    #[test]
    fn a_head_passes_its_input_a_gradient() {
        // A feature term's projection: its one product writes the student layer's gradient.
        let projection = Architecture::projection(Dims::Image { h: 7, w: 7, c: 32 }, 512).unwrap();
        let l = lower(&projection.walk(), Mode::Train, true);
        assert_eq!(l.forward, [ForwardStage { layer: 0, epilogue: None }]);
        assert_eq!(l.backward, [BackwardStage { layer: 0, through: None, needs_dx: true }]);
        // Without, it is a first layer with parameters like any other.
        assert!(!lower(&projection.walk(), Mode::Train, false).backward[0].needs_dx);
        // Layers without parameters at the bottom of a head have stages too.
        let layers = vec![
            Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
            Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: Padding::Same }),
            Layer::Conv2D(Conv2D { filters: 4, kernel: 1, stride: 1, padding: Padding::Same }),
        ];
        let head = Architecture::head("head", Dims::Image { h: 6, w: 6, c: 3 }, layers).unwrap();
        let l = lower(&head.walk(), Mode::Train, true);
        let bwd: Vec<_> = l.backward.iter().map(|s| (s.layer, s.through.map(|t| t.0), s.needs_dx)).collect();
        assert_eq!(bwd, [(2, None, true), (1, Some(0), true)]);
    }

    #[test]
    fn a_pool_with_no_activation_before_it_runs_alone() {
        // The pool reads the convolution's output directly; conv1 needs no input gradient.
        let layers = vec![
            Layer::Conv2D(Conv2D { filters: 4, kernel: 3, stride: 1, padding: Padding::Same }),
            Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: Padding::Same }),
            Layer::Flatten,
            Layer::Dense(Dense { units: 10 }),
        ];
        let l = stages(layers, Mode::Train);
        let bwd: Vec<_> = l.backward.iter().map(|s| (s.layer, s.through, s.needs_dx)).collect();
        assert_eq!(bwd, [(3, None, true), (1, None, true), (0, None, false)]);
    }
}

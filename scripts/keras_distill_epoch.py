#!/usr/bin/env python3
"""Distil in Keras from kd-wgpu's weight files: the seed's Distiller, one or more epochs.

Usage:
    kd-wgpu --train-limit 2000 --teacher-epochs 1 --student-epochs 0 --save-dir w
    python3 scripts/keras_distill_epoch.py frozen|trainable w/teacher.safetensors \\
        w/student.safetensors [--train-limit 2000] [--epochs 1]
    kd-wgpu --teacher w/teacher.safetensors --student-init w/student.safetensors \\
        --train-limit 2000 --no-shuffle --student-epochs 1 --distill-teacher frozen|trainable

runs the seed program's Distiller (alpha 0.1, T 10, Adam, batch 32) on the first training
images in file order, from the same starting weights as kd-wgpu, and prints the figures to
compare: the distiller's training loss and accuracy, its test loss (the combined loss, against
the teacher as it is after distillation) and accuracy, and the teacher's test loss and
accuracy before and after. `frozen` sets `teacher.trainable = False` before building the
Distiller (distillation as intended); `trainable` leaves the seed unchanged, and Keras 3 then
trains the teacher too: `len(distiller.trainable_variables)` is 12, not 6.
Needs keras with TensorFlow, numpy and safetensors; the data from Keras's cache
(~/.keras/datasets/fashion-mnist, or Keras downloads it).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_to_keras  # noqa: E402


def load(path):
    """A Keras model with the layers and weights of a kd-wgpu file."""
    return safetensors_to_keras.load(path)


class Distiller(keras.Model):
    """The seed program's Distiller, unchanged."""

    def __init__(self, student, teacher):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def compile(self, optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha=0.1, temperature=3):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
        teacher_pred = self.teacher(x, training=False)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            ops.softmax(teacher_pred / self.temperature, axis=1),
            ops.softmax(y_pred / self.temperature, axis=1),
        ) * (self.temperature**2)
        return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

    def call(self, x):
        return self.student(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["frozen", "trainable"])
    ap.add_argument("teacher", help="the teacher's kd-wgpu weights")
    ap.add_argument("student", help="the student's starting weights")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train = (x_train.astype("float32") / 255.0).reshape(-1, 28, 28, 1)[: args.train_limit]
    y_train = y_train[: args.train_limit]
    x_test = (x_test.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    teacher, student = load(args.teacher), load(args.student)
    teacher.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    before = teacher.evaluate(x_test, y_test, verbose=0)
    if args.mode == "frozen":
        teacher.trainable = False
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy("acc")],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    history = distiller.fit(x_train, y_train, epochs=args.epochs, shuffle=False, verbose=0)
    test = distiller.evaluate(x_test, y_test, verbose=0)
    after = teacher.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({
        "mode": args.mode,
        "trainable_variables": len(distiller.trainable_variables),
        "train": {"loss": history.history["loss"], "acc": history.history["acc"]},
        "distiller_test": {"loss": test[0], "acc": test[1]},
        "teacher_before": {"loss": before[0], "acc": before[1]},
        "teacher_after": {"loss": after[0], "acc": after[1]},
    }, indent=1))


if __name__ == "__main__":
    main()

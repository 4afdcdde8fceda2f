//! How students distil: the teacher's part (`--distill-teacher`) and keras.distillation's
//! losses (`--distill`).

/// What the teacher does while a student distils from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum DistillTeacher {
    /// Distillation as intended (and as keras.distillation.Distiller does it): the teacher
    /// stays as trained; its logits are computed once.
    Frozen,
    /// What the seed program computes under Keras 3: its Distiller tracks the teacher, so the
    /// teacher learns from the KL term along with the student, by the distiller's one Adam.
    Trainable,
}

/// One of keras.distillation's losses (`--distill SPEC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DistillTerm {
    /// `logits`: `LogitsDistillation(T, KLDivergence())`, KL of the softened distributions times T^2.
    Logits,
    /// `logits:mse`: `LogitsDistillation(T, "mse")`, the MSE of the logits divided by T.
    LogitsMse,
    /// `feature:TEACHER_LAYER:STUDENT_LAYER[:project]`: `FeatureDistillation("mse", ...)`
    /// between two layers' outputs (Keras's layer names), through a learned 1x1 projection
    /// to the teacher's channels with `:project`.
    Feature { teacher: String, student: String, project: bool },
}

impl std::str::FromStr for DistillTerm {
    type Err = String;

    fn from_str(spec: &str) -> Result<DistillTerm, String> {
        match spec {
            "logits" | "logits:kl" => Ok(DistillTerm::Logits),
            "logits:mse" => Ok(DistillTerm::LogitsMse),
            _ => match spec.split(':').collect::<Vec<_>>()[..] {
                ["feature", teacher, student] | ["feature", teacher, student, "project"]
                    if !teacher.is_empty() && !student.is_empty() =>
                {
                    let project = spec.ends_with(":project");
                    Ok(DistillTerm::Feature { teacher: teacher.into(), student: student.into(), project })
                }
                _ => Err(format!(
                    "unknown distillation loss `{spec}`: give `logits` (KL times T^2), `logits:mse` or \
                     `feature:TEACHER_LAYER:STUDENT_LAYER[:project]` (Keras's layer names, e.g. conv2d_1)"
                )),
            },
        }
    }
}

impl std::fmt::Display for DistillTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DistillTerm::Logits => f.write_str("logits"),
            DistillTerm::LogitsMse => f.write_str("logits:mse"),
            DistillTerm::Feature { teacher, student, project } => {
                write!(f, "feature:{teacher}:{student}{}", if *project { ":project" } else { "" })
            }
        }
    }
}

/// As the flag spells it (`"feature:conv2d_1:conv2d_1:project"`).
impl serde::Serialize for DistillTerm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DistillTerm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DistillTerm, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

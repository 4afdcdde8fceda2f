//! `--shard I/K`: the I-th of K shares of an experiment's runs and sweep cells.

use anyhow::{bail, ensure, Result};
use std::fmt;
use std::str::FromStr;

/// `--shard I/K`: shard `index` (from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    /// `I/K`, as the flag takes it; every refusal says what the form is.
    fn from_str(text: &str) -> Result<Shard> {
        let form = "give I/K, shard I of K, with 1 <= I <= K (for example 2/4)";
        let Some((i, k)) = text.split_once('/') else { bail!("`{text}` is not of the form I/K; {form}") };
        let number = |part: &str| part.trim().parse::<usize>().ok();
        let (Some(index), Some(count)) = (number(i), number(k)) else {
            bail!("`{text}` is not two whole numbers I/K; {form}")
        };
        ensure!(count >= 1, "K = 0 in `{text}`: there must be at least one shard; {form}");
        ensure!((1..=count).contains(&index), "there is no shard {index} of {count}; {form}");
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// As the flag spells it (`"2/4"`), in the metrics and in the run state's settings.
impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(e))
    }
}

impl Shard {
    /// Whether item `i` (a run or a sweep cell, from 0) belongs to this shard.
    pub fn holds(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }

    /// This shard's items among `0..n`, in order.
    pub fn share(&self, n: usize) -> Vec<usize> {
        (0..n).filter(|&i| self.holds(i)).collect()
    }

    /// Refuses a shard that does not exist (as `--shard` parses none), and a split that leaves
    /// a shard without a run: its report would have no students.
    pub fn check(&self, runs: usize) -> Result<()> {
        ensure!(
            (1..=self.count).contains(&self.index),
            "--shard {self}: there is no shard {} of {}; I counts the shards from 1 to K",
            self.index,
            self.count
        );
        ensure!(
            self.count <= runs,
            "--shard {self}: with --runs {runs}, some of {} shards would hold no run (shard I holds runs I, I+K, \
             I+2K, ..); give K at most {runs}",
            self.count
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_runs_round_robin() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert_eq!(s.share(8), [1, 4, 7]);
        assert_eq!(s.to_string(), "2/3");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""2/3""#);
        assert_eq!(serde_json::from_str::<Shard>(r#""2/3""#).unwrap(), s);
        let all: Vec<usize> = (1..=3).flat_map(|i| Shard { index: i, count: 3 }.share(8)).collect();
        assert_eq!(all.len(), 8, "every run in exactly one shard");
        for (text, expect) in [("3/2", "no shard 3 of 2"), ("0/2", "no shard 0 of 2"), ("1/0", "K = 0"), ("1-2", "I/K")]
        {
            let msg = text.parse::<Shard>().unwrap_err().to_string();
            assert!(msg.contains(expect), "`{text}`: {msg}");
        }
        assert!("a/2".parse::<Shard>().is_err() && "".parse::<Shard>().is_err() && "1/2/3".parse::<Shard>().is_err());
        assert!(Shard { index: 1, count: 4 }.check(3).unwrap_err().to_string().contains("K at most 3"));
        assert!(Shard { index: 0, count: 2 }.check(3).unwrap_err().to_string().contains("no shard 0 of 2"));
        assert!(Shard { index: 1, count: 0 }.check(3).is_err());
    }
}

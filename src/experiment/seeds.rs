//! The program's seed rules, in one place: which seeds a run's students start from and
//! shuffle with, and the sample order those seeds give, epoch after epoch. The experiment
//! and `export-web` both take them from here, so the page trains what the program trains.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The seeds of one run's two students.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StudentSeeds {
    /// The run's seed, as reports give it: --seed for the first run, + 1000 for each next one.
    pub run: u64,
    /// Glorot initialisation of the distilled and the scratch student.
    pub distilled_init: u64,
    pub scratch_init: u64,
    /// Their sample orders (and Dropout masks).
    pub distilled_order: u64,
    pub scratch_order: u64,
}

impl StudentSeeds {
    /// Run `r` (from 0) of an experiment with --seed `seed`. `paired` students start from the
    /// same weights and see the same sample order, so that their difference is the teacher's
    /// doing; unpaired (a single run, as the seed program's fresh clone_model) they differ.
    pub fn of(seed: u64, r: usize, paired: bool) -> StudentSeeds {
        let run = seed.wrapping_add(1000 * r as u64);
        let scratch = if paired { run.wrapping_add(1) } else { run.wrapping_add(2) };
        StudentSeeds {
            run,
            distilled_init: run.wrapping_add(1),
            scratch_init: scratch,
            distilled_order: run.wrapping_add(1),
            scratch_order: scratch,
        }
    }
}

/// The sample orders of the epochs of a model that shuffles with `seed`: a seeded shuffle per
/// epoch, or the file order every epoch without `shuffle`.
pub fn sample_orders(seed: u64, samples: usize, shuffle: bool) -> impl Iterator<Item = Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    std::iter::repeat_with(move || {
        let mut order: Vec<u32> = (0..samples as u32).collect();
        if shuffle {
            order.shuffle(&mut rng);
        }
        order
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_students_share_their_seeds_and_runs_move_by_a_thousand() {
        let single = StudentSeeds::of(1, 0, false);
        assert_eq!((single.distilled_init, single.scratch_init, single.scratch_order), (2, 3, 3));
        let paired = StudentSeeds::of(1, 2, true);
        assert_eq!(paired.run, 2001);
        assert_eq!((paired.distilled_init, paired.scratch_init), (2002, 2002));
        assert_eq!(paired.distilled_order, paired.scratch_order);
    }

    #[test]
    fn orders_are_permutations_drawn_anew_each_epoch() {
        let orders: Vec<Vec<u32>> = sample_orders(5, 50, true).take(2).collect();
        assert_ne!(orders[0], orders[1]);
        let mut sorted = orders[0].clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
        assert_eq!(orders, sample_orders(5, 50, true).take(2).collect::<Vec<_>>());
        assert!(sample_orders(5, 50, false).take(2).all(|o| o == (0..50).collect::<Vec<u32>>()));
    }
}

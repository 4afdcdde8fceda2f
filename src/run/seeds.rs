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

/// The sample orders of a model that trains on `subset` alone (the scratch student under
/// `--labelled`) for epochs of `samples` steps' worth of images: each epoch passes over the
/// subset again and again, a fresh seeded shuffle each pass, cut at `samples` (the next epoch
/// starts a new pass).
pub fn subset_orders(seed: u64, subset: Vec<u32>, samples: usize, shuffle: bool) -> impl Iterator<Item = Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    std::iter::repeat_with(move || {
        let mut order = Vec::with_capacity(samples + subset.len());
        while order.len() < samples {
            let mut pass = subset.clone();
            if shuffle {
                pass.shuffle(&mut rng);
            }
            order.extend(pass);
        }
        order.truncate(samples);
        order
    })
}

/// The training images that keep their labels under `--labelled n`: a class-balanced subset
/// (n / 10 of each class, the first n mod 10 classes one more), each class's share drawn by a
/// seeded shuffle from `seed`; sorted. The same for every run of an experiment: what varies
/// between runs is the students' start and order, not which images are labelled.
pub fn labelled_subset(labels: &[u8], n: usize, seed: u64) -> anyhow::Result<Vec<u32>> {
    use crate::data::NUM_CLASSES;
    anyhow::ensure!(
        n >= NUM_CLASSES && n <= labels.len(),
        "--labelled {n}: give from {NUM_CLASSES} (one image per class) to {} (the training images)",
        labels.len()
    );
    // Its own stream: the subset must not move when other seeds' uses change.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c61_6265_6c6c_6564);
    let mut subset = Vec::with_capacity(n);
    for class in 0..NUM_CLASSES {
        let want = n / NUM_CLASSES + usize::from(class < n % NUM_CLASSES);
        let mut of_class: Vec<u32> =
            (0..labels.len() as u32).filter(|&i| labels[i as usize] as usize == class).collect();
        anyhow::ensure!(
            of_class.len() >= want,
            "--labelled {n} needs {want} images of class {class}, but the training images hold {}; \
             give a smaller --labelled or a larger --train-limit",
            of_class.len()
        );
        of_class.shuffle(&mut rng);
        subset.extend_from_slice(&of_class[..want]);
    }
    subset.sort_unstable();
    Ok(subset)
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

    #[test]
    fn a_labelled_subset_is_class_balanced_seeded_and_refuses_what_it_cannot_give() {
        let labels: Vec<u8> = (0..200).map(|i| (i * 7 % 10) as u8).collect();
        let subset = labelled_subset(&labels, 23, 1).unwrap();
        assert_eq!(subset.len(), 23);
        let mut per_class = [0; 10];
        subset.iter().for_each(|&i| per_class[labels[i as usize] as usize] += 1);
        assert_eq!(per_class, [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        assert!(subset.windows(2).all(|w| w[0] < w[1]), "sorted, no image twice");
        assert_eq!(subset, labelled_subset(&labels, 23, 1).unwrap());
        assert_ne!(subset, labelled_subset(&labels, 23, 2).unwrap());
        assert!(labelled_subset(&labels, 9, 1).unwrap_err().to_string().contains("--labelled 9"));
        assert!(labelled_subset(&labels, 201, 1).is_err());
        let err = labelled_subset(&labels[..15], 15, 1).unwrap_err().to_string();
        assert!(err.contains("class"), "{err}");
    }

    #[test]
    fn subset_orders_pass_over_the_subset_again_and_again() {
        let subset = vec![3, 5, 8];
        let orders: Vec<Vec<u32>> = subset_orders(4, subset.clone(), 10, true).take(2).collect();
        for order in &orders {
            assert_eq!(order.len(), 10);
            for pass in order.chunks(3).filter(|p| p.len() == 3) {
                let mut sorted = pass.to_vec();
                sorted.sort_unstable();
                assert_eq!(sorted, subset, "each full pass is a permutation of the subset");
            }
        }
        assert_ne!(orders[0], orders[1]);
        let plain: Vec<u32> = subset_orders(4, subset, 7, false).next().unwrap();
        assert_eq!(plain, [3, 5, 8, 3, 5, 8, 3]);
    }
}

//! The learned (Bradley-Terry) reward model: it learns a planted preference, the host scorer
//! equals the network, the directory format round-trips and rejects damaged files, and the
//! n-gram hashing is stable.

mod common;

use std::collections::BTreeMap;

use infalign_model::backend::cpu_device;
use infalign_model::bundle::Provenance;
use infalign_model::data::PreferencePair;
use infalign_model::reward::learned::{
    encode_pairs, prompt_folds, train_bradley_terry, BradleyTerryConfig, LearnedReward,
    LearnedRewardConfig, REWARD_MANIFEST_FILE, REWARD_WEIGHTS_FILE,
};
use infalign_model::{Reward, RewardSpec};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const POLITE: &[&str] = &["glad", "happy", "gladly", "certainly", "welcome", "kindly"];
const RUDE: &[&str] = &["whatever", "nope", "boring", "ugh", "meh", "dull"];
const NEUTRAL: &[&str] = &[
    "the", "weather", "is", "a", "book", "about", "music", "today", "we", "could", "talk", "cats",
    "trains", "and", "tea", "maybe", "later", "it", "sounds", "fine",
];

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[(rng.next_u64() % words.len() as u64) as usize]
}

fn sentence(rng: &mut ChaCha8Rng, marker: &[&str]) -> String {
    let mut words: Vec<&str> = (0..6).map(|_| pick(rng, NEUTRAL)).collect();
    let at = (rng.next_u64() % 6) as usize;
    words.insert(at, pick(rng, marker));
    words.join(" ")
}

/// Pairs whose chosen answer carries a polite word and the rejected one a rude word, except for
/// a tenth of them, where the labels are flipped (noise).
fn planted_pairs(count: usize, seed: u64) -> Vec<PreferencePair> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let good = sentence(&mut rng, POLITE);
            let bad = sentence(&mut rng, RUDE);
            let (chosen, rejected) = if i % 10 == 9 {
                (bad, good)
            } else {
                (good, bad)
            };
            PreferencePair {
                prompt: format!("\n\nHuman: question {}\n\nAssistant:", i % 37),
                chosen,
                rejected,
            }
        })
        .collect()
}

fn config(dim: usize, hidden: usize) -> BradleyTerryConfig {
    BradleyTerryConfig {
        model: LearnedRewardConfig {
            buckets: 4096,
            bigrams: true,
            chars: false,
            dim,
            hidden,
        },
        epochs: 8,
        batch_size: 16,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        l2: 0.0,
        seed: 3,
    }
}

#[test]
fn bradley_terry_training_learns_a_planted_preference() {
    let train = planted_pairs(300, 1);
    let test = planted_pairs(200, 2);
    for (dim, hidden, chars) in [(1, 0, false), (8, 16, false), (1, 0, true)] {
        let mut config = config(dim, hidden);
        config.model.chars = chars;
        config.l2 = if chars { 1e-4 } else { 0.0 };
        let encoded = encode_pairs(&config.model, &train);
        let mut reports = Vec::new();
        let model = train_bradley_terry(&encoded, &config, &cpu_device(), |r| reports.push(r))
            .expect("training runs");
        assert_eq!(reports.len(), config.epochs);
        assert!(
            reports.last().unwrap().loss < reports[0].loss,
            "the loss falls: {reports:?}"
        );
        // 10% of the test labels are flipped, so 0.9 is the ceiling.
        let accuracy = model.pair_accuracy(&encode_pairs(&config.model, &test));
        assert!(
            accuracy > 0.85,
            "dim {dim} hidden {hidden}: held-out accuracy {accuracy}"
        );
        let polite = model.score("", "i would be glad to talk about tea");
        let rude = model.score("", "ugh i would talk about tea");
        assert!(polite > rude, "{polite} vs {rude}");
    }
}

#[test]
fn host_scores_equal_the_network_and_survive_a_round_trip() {
    let config = config(8, 16);
    let pairs = planted_pairs(64, 4);
    let encoded = encode_pairs(&config.model, &pairs);
    let model = train_bradley_terry(&encoded, &config, &cpu_device(), |_| {}).unwrap();

    let rows: Vec<&[u32]> = encoded
        .iter()
        .flat_map(|pair| [pair.chosen.as_slice(), pair.rejected.as_slice()])
        .chain([&[][..]])
        .collect();
    let on_device = model.net(&cpu_device()).unwrap().score_rows(&rows).unwrap();
    for (row, device_score) in rows.iter().zip(&on_device) {
        let host = model.score_features(row);
        assert!(
            (host - f64::from(*device_score)).abs() < 1e-5,
            "host {host} vs device {device_score}"
        );
    }

    let dir = common::scratch("learned-reward-roundtrip");
    let metrics = BTreeMap::from([("cv_pair_accuracy".to_string(), 0.75)]);
    model
        .write_dir(&dir, Provenance::default(), metrics.clone())
        .unwrap();
    let loaded = LearnedReward::read_dir(&dir).unwrap();
    assert_eq!(loaded.manifest().unwrap().metrics, metrics);
    assert_eq!(loaded.config(), model.config());
    let from_spec = format!("learned:{}", dir.display())
        .parse::<RewardSpec>()
        .unwrap()
        .load()
        .unwrap();
    for pair in &pairs {
        let expected = model.score(&pair.prompt, &pair.chosen);
        assert_eq!(loaded.score(&pair.prompt, &pair.chosen), expected);
        assert_eq!(from_spec.score(&pair.prompt, &pair.chosen), expected);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_reward_directories_are_clear_errors() {
    let config = config(2, 0);
    let encoded = encode_pairs(&config.model, &planted_pairs(16, 5));
    let model = train_bradley_terry(&encoded, &config, &cpu_device(), |_| {}).unwrap();
    let files: BTreeMap<&str, Vec<u8>> = model
        .files(Provenance::default(), BTreeMap::new())
        .unwrap()
        .into_iter()
        .collect();
    let manifest = String::from_utf8(files[REWARD_MANIFEST_FILE].clone()).unwrap();
    let weights = &files[REWARD_WEIGHTS_FILE];
    let load = |manifest: &str, weights: &[u8]| {
        LearnedReward::from_bytes(manifest.as_bytes(), weights, "rm")
            .unwrap_err()
            .to_string()
    };

    let truncated = load(&manifest, &weights[..weights.len() / 2]);
    assert!(
        truncated.contains("rm/model.bpk") && truncated.contains("truncated"),
        "{truncated}"
    );
    let newer = load(
        &manifest.replace("\"format_version\": 1", "\"format_version\": 9"),
        weights,
    );
    assert!(newer.contains("newer"), "{newer}");
    let other = load(
        &manifest.replace("hashed-ngram-bag", "transformer"),
        weights,
    );
    assert!(other.contains("architecture"), "{other}");
    let no_buckets = load(
        &manifest.replace("\"buckets\": 4096", "\"buckets\": 0"),
        weights,
    );
    assert!(no_buckets.contains("`buckets`"), "{no_buckets}");
    let unknown = load(&manifest.replace("\"dim\"", "\"width\""), weights);
    assert!(
        unknown.contains("rm/reward.json") && unknown.contains("width"),
        "{unknown}"
    );
    // A manifest describing another shape, with a matching checksum, still fails on the shapes.
    let reshaped = load(&manifest.replace("\"dim\": 2", "\"dim\": 3"), weights);
    assert!(reshaped.contains("do not fit"), "{reshaped}");

    let missing = LearnedReward::read_dir(common::scratch("learned-reward-empty"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains(REWARD_MANIFEST_FILE), "{missing}");
}

#[test]
fn ngram_hashing_is_stable() {
    // FNV-1a (64-bit) of "1" + word and "2" + word + " " + word, modulo the buckets; the expected
    // ids were computed independently (Python) so a change of hash or tokenisation, which would
    // silently scramble every saved model, fails here.
    let config = LearnedRewardConfig {
        buckets: 1 << 16,
        bigrams: true,
        chars: false,
        dim: 1,
        hidden: 0,
    };
    assert_eq!(config.features("Hello, World!"), GOLDEN_HELLO_WORLD);
    assert_eq!(config.features("hello , world !"), GOLDEN_HELLO_WORLD);
    assert!(config.features("").is_empty());
    let unigrams = LearnedRewardConfig {
        bigrams: false,
        ..config
    };
    assert_eq!(unigrams.features("hello hello"), unigrams.features("HELLO"));
    // With character pieces, "ab" also yields " a", "ab", "b ", " ab", "ab ", " ab ".
    let pieces = LearnedRewardConfig {
        bigrams: false,
        chars: true,
        ..config
    };
    assert_eq!(pieces.features("ab").len(), 7);
    assert!(unigrams
        .features("ab")
        .iter()
        .all(|id| pieces.features("ab").contains(id)));
}

/// `features("Hello, World!")` with 2^16 buckets and bigrams: unigrams `hello`, `,`, `world`,
/// `!` and bigrams `hello ,`, `, world`, `world !`, sorted.
const GOLDEN_HELLO_WORLD: &[u32] = &[951, 3952, 9607, 13736, 13832, 24631, 64412];

#[test]
fn folds_keep_each_opening_together() {
    let pairs = planted_pairs(400, 6);
    let folds = prompt_folds(&pairs, 5);
    let mut fold_of_prompt = BTreeMap::new();
    for (pair, fold) in pairs.iter().zip(&folds) {
        assert!(*fold < 5);
        assert_eq!(
            *fold_of_prompt.entry(pair.prompt.clone()).or_insert(*fold),
            *fold
        );
    }
    let mut sizes = [0usize; 5];
    folds.iter().for_each(|f| sizes[*f] += 1);
    assert!(
        sizes.iter().all(|&n| n > 0),
        "every fold is used: {sizes:?}"
    );
}

#[test]
fn bad_training_settings_name_the_field() {
    let pairs = encode_pairs(&config(1, 0).model, &planted_pairs(4, 7));
    let mut bad = config(1, 0);
    bad.epochs = 0;
    let message = train_bradley_terry(&pairs, &bad, &cpu_device(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("`epochs`"), "{message}");
    let mut bad = config(1, 0);
    bad.l2 = -1.0;
    let message = train_bradley_terry(&pairs, &bad, &cpu_device(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("`l2`"), "{message}");
    let mut bad = config(1, 0);
    bad.learning_rate = f64::NAN;
    let message = train_bradley_terry(&pairs, &bad, &cpu_device(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("`learning_rate`"), "{message}");
    let message = train_bradley_terry(&[], &config(1, 0), &cpu_device(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(message.contains("no preference pairs"), "{message}");
}

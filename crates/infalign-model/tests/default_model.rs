//! The committed default model (`static/default-model`): it loads against the current
//! architecture (a stale asset fails here), is small enough to serve, talks, and its tokenizer
//! encodes the golden texts that the browser test checks too.

mod common;

use infalign_model::backend::cpu_device;
use infalign_model::ctrl::{calibrate, reference_table, CalibrationSettings};
use infalign_model::policy::{generate, SamplingConfig};
use infalign_model::tokenizer::chat_prompt;
use infalign_model::RewardSpec;

/// Texts whose token ids are pinned: plain chat, the turn markers and special token, accents,
/// CJK and emoji (multi-byte UTF-8), runs of whitespace, digits, and nothing at all.
const GOLDEN_TEXTS: &[&str] = &[
    "Hi! Do you like hiking in the mountains?",
    "\n\nHuman: What's your favourite book?<|end_of_turn|>\n\nAssistant:",
    "naïve café — 東京 🚀",
    "   multiple   spaces\tand\ttabs\n\nnew lines",
    "12345 + 67890 = 80235",
    "I'm sure you'll love it, won't you?",
    "",
];

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct GoldenCase {
    text: String,
    ids: Vec<u32>,
}

#[test]
fn the_default_model_loads_is_small_and_talks() {
    let dir = common::repository().join("static/default-model");
    let bundle = common::default_model();
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    // The base policy and its aligned variants, served to the browser lab (issue budget: 16 MB).
    assert!(
        total <= 16_000_000,
        "static/default-model is {total} bytes (limit 16 MB)"
    );
    // The aligned variants of the first CTRL experiments, each with how it was trained and its
    // held-out evaluation (those experiments are retired from results/: results/README.md).
    let names = bundle.policy_names();
    let base = common::fingerprint(&bundle.policy(&cpu_device()).unwrap());
    for (name, training) in [
        ("ctrl-exp-bon4", "normexp:"),
        ("identity-helpful", "identity"),
        ("ctrl-negexp-won4", "normnegexp:"),
        ("identity-harmless", "identity"),
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
        let variant = bundle
            .manifest
            .variants
            .iter()
            .find(|v| v.name == name)
            .unwrap();
        let alignment = variant.alignment.as_ref().expect("an alignment record");
        assert!(
            alignment.training.reward.to_string().starts_with(training),
            "{name}: trained on {}",
            alignment.training.reward
        );
        assert!(alignment.calibration.is_some(), "{name}: no calibration");
        let evaluation = alignment.evaluation.as_ref().expect("an evaluation");
        assert!(evaluation.report.kl.estimate > 0.0, "{name}");
        // It differs from the base policy (it was trained) and loads.
        let policy = bundle.named_policy(name, &cpu_device()).unwrap();
        assert_ne!(common::fingerprint(&policy), base, "{name}");
        // The browser lab scores with the variant's own reward: a linear classifier's model
        // must travel in the bundle as a checked part, named by its file alone, and load.
        if let RewardSpec::Linear { path } = &alignment.reward {
            assert_eq!(path.components().count(), 1, "{name}: {}", path.display());
            assert!(
                bundle
                    .manifest
                    .reward_models
                    .iter()
                    .any(|part| std::path::Path::new(&part.file) == path),
                "{name}: {} is not a part of the bundle",
                path.display()
            );
            let reward = bundle.load_reward(&alignment.reward).unwrap();
            let scores = reward
                .score_batch(&["Hello"], &["Thank you, that is kind."])
                .unwrap();
            assert!(scores[0] > 0.5, "{name}: a kind reply scores {}", scores[0]);
        }
    }
    let validation = bundle.manifest.metrics["validation_loss"];
    // Uniform guessing over 4096 tokens costs ln 4096 = 8.3 nats; the trained model must be far
    // below that (it reached 3.89).
    assert!(validation < 4.5, "validation loss {validation}");

    let policy = bundle.policy(&cpu_device()).unwrap();
    let tokenizer = &bundle.tokenizer;
    let prompts: Vec<Vec<u32>> = [
        "Hi! How was your weekend?",
        "Do you have any pets?",
        "What kind of music do you like?",
        "Where would you like to travel?",
    ]
    .iter()
    .cycle()
    .take(16)
    .map(|message| tokenizer.encode(&chat_prompt(message)).unwrap())
    .collect();
    let config = SamplingConfig {
        temperature: 0.8,
        top_k: 40,
        max_new_tokens: 48,
        ..SamplingConfig::default()
    };
    let generation = pollster::block_on(generate(
        &policy,
        &prompts,
        Some(tokenizer.end_of_turn()),
        &config,
        7,
    ))
    .unwrap();
    let replies: Vec<String> = generation
        .responses
        .iter()
        .map(|ids| tokenizer.decode(ids).unwrap())
        .collect();
    let stopped = generation.stopped.iter().filter(|&&s| s).count();
    let wordy = replies
        .iter()
        .filter(|reply| {
            reply
                .split_whitespace()
                .filter(|w| w.chars().any(char::is_alphabetic))
                .count()
                >= 2
        })
        .count();
    // A trained chat model ends most replies itself and says something in words.
    assert!(
        stopped >= 12,
        "{stopped}/16 replies ended at end of turn: {replies:#?}"
    );
    assert!(
        wordy >= 14,
        "{wordy}/16 replies have two words or more: {replies:#?}"
    );
}

/// A prompt's reference table, as every command and the browser lab draw it.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct ReferenceFixture {
    /// Index into the lab's built-in prompts (`?prompt=` in the page's address).
    prompt_index: usize,
    prompt: String,
    reward: String,
    k: usize,
    seed: u64,
    /// The table's rewards, sorted.
    rewards: Vec<f64>,
}

#[test]
fn one_reference_table_for_calibrate_sample_and_the_browser() {
    let path = common::repository().join("tests/fixtures/default_reference_table.json");
    let bundle = common::default_model();
    let policy = bundle.policy(&cpu_device()).unwrap();
    let reward = infalign_model::reward::VaderReward::new();
    let prompt_index = 2;
    let prompt = infalign_view::lab::BUILT_IN_PROMPTS[prompt_index];
    let (k, seed, decoding) = (8, bundle.calibration_seed(), bundle.reference_decoding());
    let table = pollster::block_on(reference_table(
        &policy,
        &bundle.tokenizer,
        prompt,
        &reward,
        k,
        &decoding,
        seed,
        async |_| {},
    ))
    .unwrap();
    // `infalign calibrate` draws the same table for the prompt, whatever else it calibrates.
    let settings = CalibrationSettings {
        k,
        reward: RewardSpec::Vader,
        decoding,
        seed,
        base_policy_sha256: bundle.manifest.weights.sha256.clone(),
    };
    let set = pollster::block_on(calibrate(
        &policy,
        &bundle.tokenizer,
        &reward,
        &["Something else first".to_string(), prompt.to_string()],
        settings,
        |_, _| {},
    ))
    .unwrap();
    assert_eq!(set.prompts[1].reference, table);
    let actual = ReferenceFixture {
        prompt_index,
        prompt: prompt.to_string(),
        reward: "vader".into(),
        k,
        seed,
        rewards: table.rewards().to_vec(),
    };
    if std::env::var_os("INFALIGN_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let fixture: ReferenceFixture = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // The browser test (sampling.test.mjs) and the CLI test (`infalign sample --reference-k`)
    // check the same table.
    assert_eq!(
        actual, fixture,
        "regenerate with INFALIGN_BLESS=1 after changing the default model or the sampler"
    );
}

#[test]
fn the_default_tokenizer_encodes_the_golden_texts() {
    let path = common::repository().join("tests/fixtures/default_tokenizer_golden.json");
    let tokenizer = common::default_model().tokenizer;
    let actual: Vec<GoldenCase> = GOLDEN_TEXTS
        .iter()
        .map(|text| GoldenCase {
            text: text.to_string(),
            ids: tokenizer.encode(text).unwrap(),
        })
        .collect();
    if std::env::var_os("INFALIGN_BLESS").is_some() {
        // One case per line: readable diffs when the tokenizer changes.
        let lines: Vec<String> = actual
            .iter()
            .map(|case| serde_json::to_string(case).unwrap())
            .collect();
        std::fs::write(&path, format!("[\n  {}\n]\n", lines.join(",\n  "))).unwrap();
    }
    let golden: Vec<GoldenCase> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        actual, golden,
        "regenerate with INFALIGN_BLESS=1 after retraining the tokenizer"
    );
    // Decoding gives the text back (byte-level BPE loses nothing).
    for case in &golden {
        assert_eq!(tokenizer.decode(&case.ids).unwrap(), case.text);
    }
}

#[test]
fn the_browser_draws_the_candidates_a_collection_draws() {
    use infalign_model::candidates::{
        candidate_rewards, collect_prompt, CollectionHeader, FORMAT, VERSION,
    };
    let bundle = common::default_model();
    let policy = bundle.policy(&cpu_device()).unwrap();
    let reward = infalign_model::reward::VaderReward::new();
    let prompt = infalign_view::lab::BUILT_IN_PROMPTS[1];
    let mut decoding = bundle.reference_decoding();
    decoding.max_new_tokens = 12;
    let header = CollectionHeader {
        format: FORMAT.into(),
        version: VERSION,
        base_policy_sha256: bundle.manifest.weights.sha256.clone(),
        reward: "vader".into(),
        prompts: "built-in".into(),
        candidates: 6,
        references: 2,
        decoding,
        seed: 11,
    };
    let collected = pollster::block_on(collect_prompt(
        &policy,
        &bundle.tokenizer,
        &reward,
        &header,
        0,
        prompt,
        8,
    ))
    .unwrap();
    let mut steps = 0;
    let streamed = pollster::block_on(candidate_rewards(
        &policy,
        &bundle.tokenizer,
        prompt,
        &reward,
        6,
        &decoding,
        11,
        async |progress| {
            assert_eq!(progress.k, 6);
            steps += 1;
        },
    ))
    .unwrap();
    assert!(steps > 0);
    assert_eq!(streamed, collected.candidates);
    // Distinct draws, not the reference replies again.
    assert_ne!(streamed[..2], collected.reference[..]);
}

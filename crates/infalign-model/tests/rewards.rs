//! The rewards: parity of the linear classifier with its reference implementation on the golden
//! examples, VADER against Python VADER, rustrict's grading, specs, and robustness on any text.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use infalign_model::reward::{
    LinearClassifierReward, Reward, RewardSpec, RustrictReward, VaderReward,
};
use proptest::prelude::*;

fn fixture_dir() -> PathBuf {
    common::manifest_dir().join("tests/fixtures/reward_golden")
}

#[derive(serde::Deserialize)]
struct Golden {
    text: String,
    vader_compound_py_3_3_2: f64,
    p_offensive_alt_profanity_check_1_9_1: f64,
}

fn golden() -> Vec<Golden> {
    let path = fixture_dir().join("golden.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden examples"))
        .expect("golden examples parse")
}

/// The fixture model, loaded once per test binary.
fn linear() -> &'static LinearClassifierReward {
    static MODEL: OnceLock<LinearClassifierReward> = OnceLock::new();
    MODEL.get_or_init(|| {
        LinearClassifierReward::load(fixture_dir().join("model_subset.tsv")).expect("model loads")
    })
}

#[test]
fn linear_classifier_matches_the_reference_on_golden_examples() {
    let model = linear();
    assert_eq!(model.folds(), 5);
    let examples = golden();
    assert_eq!(examples.len(), 11);
    for (index, example) in examples.iter().enumerate() {
        let p = model.p_offensive(&example.text);
        // Both sides are f64 sums of the same few terms; only summation order differs.
        assert!(
            (p - example.p_offensive_alt_profanity_check_1_9_1).abs() < 1e-9,
            "example {index}: p(offensive) {p} vs reference {}",
            example.p_offensive_alt_profanity_check_1_9_1
        );
        assert!((model.score("", &example.text) - (1.0 - p)).abs() < 1e-15);
    }
    // The examples span both classes.
    assert!(examples
        .iter()
        .any(|e| e.p_offensive_alt_profanity_check_1_9_1 > 0.99));
    assert!(examples
        .iter()
        .any(|e| e.p_offensive_alt_profanity_check_1_9_1 < 0.01));
}

#[test]
fn vader_is_close_to_python_vader() {
    let vader = VaderReward::new();
    let mut worst: f64 = 0.0;
    for example in golden() {
        let compound = vader.score("", &example.text);
        assert!((-1.0..=1.0).contains(&compound));
        // Same sign (or both neutral) as Python VADER on every example.
        assert_eq!(
            compound.abs() < 0.05,
            example.vader_compound_py_3_3_2.abs() < 0.05,
            "{compound} vs {}",
            example.vader_compound_py_3_3_2
        );
        if compound.abs() >= 0.05 {
            assert_eq!(compound.signum(), example.vader_compound_py_3_3_2.signum());
        }
        worst = worst.max((compound - example.vader_compound_py_3_3_2).abs());
    }
    // The crate is a port that differs from Python VADER by up to about 0.1 on some sentences
    // (data README); anything beyond that would be a bug in how we call it.
    assert!(
        worst <= 0.1,
        "largest difference from Python VADER: {worst}"
    );
}

#[test]
fn rustrict_grades_clean_text_as_harmless() {
    let reward = RustrictReward::new();
    assert_eq!(reward.score("", "What a lovely morning for a walk."), 1.0);
    assert_eq!(RustrictReward::severity(""), 0);
    // On the golden examples it agrees with the trained classifier about the clearly clean and
    // the clearly offensive ones.
    for example in golden() {
        let score = reward.score("", &example.text);
        assert!([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]
            .iter()
            .any(|level| (score - level).abs() < 1e-12));
        if example.p_offensive_alt_profanity_check_1_9_1 > 0.999 {
            assert!(score < 1.0, "an offensive example graded harmless");
        }
    }
}

#[test]
fn batches_must_pair_up() {
    let vader = VaderReward::new();
    let scores = vader
        .score_batch(&["a", "b"], &["I love it", "I hate it"])
        .unwrap();
    assert!(scores[0] > 0.0 && scores[1] < 0.0);
    let message = vader
        .score_batch(&["a"], &["x", "y"])
        .unwrap_err()
        .to_string();
    assert!(message.contains("1 prompts but 2 responses"), "{message}");
}

#[test]
fn specs_parse_display_and_load() {
    for text in ["vader", "rustrict"] {
        let spec: RewardSpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
        assert_eq!(spec.load().unwrap().name(), text);
    }
    let path = fixture_dir().join("model_subset.tsv");
    let spec: RewardSpec = format!("linear:{}", path.display()).parse().unwrap();
    assert_eq!(spec, RewardSpec::Linear { path: path.clone() });
    assert_eq!(spec.load().unwrap().name(), "linear");
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<RewardSpec>(&json).unwrap(), spec);
    let message = "sentiment".parse::<RewardSpec>().unwrap_err().to_string();
    assert!(
        message.contains("\"sentiment\"") && message.contains("linear:PATH"),
        "{message}"
    );
    let missing = RewardSpec::Linear {
        path: "no/such/model.tsv".into(),
    };
    let message = missing.load().err().unwrap().to_string();
    assert!(message.contains("no/such/model.tsv"), "{message}");
}

#[test]
fn malformed_models_are_errors_naming_the_line() {
    let folds = "#fold\t0\tintercept\t-0.5\ta\t-2.0\tb\t1.0\n";
    let header = "token\tidf\tw0\n";
    let parse = |text: &str| {
        LinearClassifierReward::parse(text, "model.tsv")
            .unwrap_err()
            .to_string()
    };
    let ok = LinearClassifierReward::parse(&format!("# c\n{folds}{header}sunny\t2.0\t0.5\n"), "m")
        .unwrap();
    assert_eq!(ok.vocabulary_size(), 1);
    // One token with weight w: x = 1 after normalisation, p = 1 / (1 + exp(a (w + c) + b)).
    let expected = 1.0 / (1.0 + (-2.0f64 * (0.5 - 0.5) + 1.0).exp());
    assert!((ok.p_offensive("SUNNY day") - expected).abs() < 1e-15);
    assert!((ok.p_offensive("") - 1.0 / (1.0 + (-2.0f64 * -0.5 + 1.0).exp())).abs() < 1e-15);

    let cases = [
        (
            format!("{folds}{header}sunny\t2.0\n"),
            "line 3",
            "expected 3",
        ),
        (
            format!("{folds}{header}sunny\tx\t0.5\n"),
            "line 3",
            "idf \"x\"",
        ),
        (
            format!("{folds}{header}sunny\t2\t1\nsunny\t2\t1\n"),
            "line 4",
            "twice",
        ),
        (format!("{folds}token\tidf\tw0\tw1\n"), "line 2", "header"),
        (format!("{header}sunny\t2\t1\n"), "line 1", "header"),
        (format!("{folds}{header}"), "model.tsv", "no vocabulary"),
        (
            "#fold\t1\tintercept\t0\ta\t0\tb\t0\n".to_string(),
            "line 1",
            "out of order",
        ),
        (format!("{folds}{header}sunny\t2\tinf\n"), "line 3", "w0"),
    ];
    for (text, place, reason) in cases {
        let message = parse(&text);
        assert!(
            message.contains("model.tsv") && message.contains(place) && message.contains(reason),
            "{message}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_reward_scores_any_text_in_range(text in any::<String>()) {
        let vader = VaderReward::new().score("", &text);
        prop_assert!((-1.0..=1.0).contains(&vader));
        let harmless = RustrictReward::new().score("", &text);
        prop_assert!((0.0..=1.0).contains(&harmless));
        let p = linear().p_offensive(&text);
        prop_assert!((0.0..=1.0).contains(&p));
    }
}

/// Sentences that exercise VADER's rules: boosters before and between sentiment words (of both
/// signs, so the order of their sums matters), negations, "but", "least", "kind of", capitals,
/// punctuation, idioms and emoji; drawn from a fixed stream, the same in every process.
fn vader_sentences(count: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "good",
        "bad",
        "great",
        "terrible",
        "love",
        "hate",
        "nice",
        "awful",
        "happy",
        "sad",
        "very",
        "so",
        "really",
        "extremely",
        "slightly",
        "little",
        "barely",
        "kind",
        "of",
        "sort",
        "not",
        "never",
        "isn't",
        "without",
        "doubt",
        "but",
        "least",
        "at",
        "this",
        "the",
        "bomb",
        "yeah",
        "right",
        "bad",
        "ass",
        "GREAT",
        "HATE",
        "I",
        "you",
        "it",
        "is",
        "was",
        "a",
        "day",
        "friend",
        "movie",
        "more",
        "most",
        "less",
        "kinda",
        "totally",
        "fine",
        "okay",
        "!",
        "?",
        "!!",
        ":)",
        "😀",
        "😢",
        "to",
        "die",
        "for",
        "kiss",
        "death",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let length = 2 + (next() % 10) as usize;
            (0..length)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn vader_agrees_with_the_crate_it_reads_its_lexicon_from() {
    use vader_sentiment::SentimentIntensityAnalyzer;
    let crate_analyzer = SentimentIntensityAnalyzer::new();
    let ours = VaderReward::new();
    let mut exact = 0;
    let sentences = vader_sentences(5000);
    for sentence in &sentences {
        let theirs = crate_analyzer.polarity_scores(sentence)["compound"];
        let mine = ours.score("", sentence);
        // The crate sums booster weights (and picks among idioms) in a per-process HashMap
        // order, so where several apply it may differ in its last bits; nowhere by more.
        assert!(
            (mine - theirs).abs() <= 1e-12,
            "{sentence:?}: {mine} against the crate's {theirs}"
        );
        exact += usize::from(mine.to_bits() == theirs.to_bits());
    }
    assert!(
        exact * 100 >= sentences.len() * 95,
        "{exact} of {} bit-equal",
        sentences.len()
    );
}

#[test]
fn vader_scores_the_same_bits_in_every_process() {
    // Run this test binary again as a child that prints the bits of every score; a second
    // process seeds its HashMaps afresh, which is where the crate's scores used to differ.
    let sentences = vader_sentences(2000);
    let bits = |scores: Vec<f64>| -> String {
        scores
            .iter()
            .map(|s| format!("{:016x}", s.to_bits()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let vader = VaderReward::new();
    if std::env::var_os("INFALIGN_VADER_CHILD").is_some() {
        println!(
            "BITS {}",
            bits(sentences.iter().map(|s| vader.score("", s)).collect())
        );
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "vader_scores_the_same_bits_in_every_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("INFALIGN_VADER_CHILD", "1")
        .output()
        .unwrap();
    let output = String::from_utf8_lossy(&child.stdout);
    let theirs = output
        .lines()
        .find_map(|line| line.split_once("BITS ").map(|(_, bits)| bits))
        .unwrap_or_else(|| panic!("the child printed no scores: {output}"));
    assert_eq!(
        bits(sentences.iter().map(|s| vader.score("", s)).collect()),
        theirs
    );
}

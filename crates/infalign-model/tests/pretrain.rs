//! Pre-training: the schedule, the training windows, learning on the fixture corpus, and a
//! checkpoint that resumes exactly.

mod common;

use infalign_model::backend::cpu_device;
use infalign_model::pretrain::{PretrainConfig, Pretrainer, TrainingWindows};

fn config(vocab_size: usize, steps: u64) -> PretrainConfig {
    PretrainConfig {
        policy: common::tiny(vocab_size),
        batch_size: 4,
        steps,
        learning_rate: 3e-3,
        min_learning_rate: 3e-4,
        warmup_steps: 2,
        weight_decay: 0.01,
        grad_clip: 1.0,
        seed: 5,
    }
}

fn probe(trainer: &Pretrainer) -> Vec<f32> {
    common::fingerprint(&trainer.inference_policy())
}

#[test]
fn schedule_warms_up_then_decays_to_the_minimum() {
    let config = PretrainConfig {
        warmup_steps: 10,
        ..config(64, 110)
    };
    assert!((config.learning_rate_at(0) - 3e-4).abs() < 1e-12);
    assert!((config.learning_rate_at(9) - 3e-3).abs() < 1e-12);
    assert!((config.learning_rate_at(10) - 3e-3).abs() < 1e-12);
    let middle = config.learning_rate_at(60);
    assert!((middle - (3e-4 + 3e-3) / 2.0).abs() < 1e-12, "{middle}");
    assert!((config.learning_rate_at(110) - 3e-4).abs() < 1e-12);
    let mut previous = f64::INFINITY;
    for step in 10..=110 {
        let rate = config.learning_rate_at(step);
        assert!(rate <= previous + 1e-15);
        previous = rate;
    }
    let bad = PretrainConfig {
        min_learning_rate: 1.0,
        ..config
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("min_learning_rate"));
}

#[test]
fn windows_start_at_human_turns_and_batches_are_reproducible() {
    let tokenizer = common::tokenizer();
    let windows = TrainingWindows::new(&common::dialogues(30), &tokenizer, 17).unwrap();
    assert!(windows.len() >= 30);
    let batch = windows.batch(1, 7, 8);
    assert_eq!(batch, windows.batch(1, 7, 8));
    assert_ne!(batch, windows.batch(1, 8, 8));
    for window in &batch {
        assert!(window.len() >= 2 && window.len() <= 17);
        let text = tokenizer.decode(window).unwrap();
        assert!(text.starts_with("\n\nHuman: "), "{text:?}");
    }
}

#[test]
fn training_lowers_the_validation_loss() {
    let tokenizer = common::tokenizer();
    let train = TrainingWindows::new(&common::dialogues(80), &tokenizer, 33).unwrap();
    let held_out = train.evenly_spaced(16);
    let mut trainer = Pretrainer::new(config(tokenizer.vocab_size(), 60), &cpu_device()).unwrap();
    let before = trainer.evaluate(&held_out).unwrap();
    // An untrained model is close to uniform over the vocabulary.
    assert!(
        (before - (tokenizer.vocab_size() as f64).ln()).abs() < 0.3,
        "{before}"
    );
    while !trainer.finished() {
        let report = trainer.train_step(&train).unwrap();
        assert!(report.loss.is_finite() && report.tokens > 0);
    }
    let after = trainer.evaluate(&held_out).unwrap();
    assert!(
        after < before - 1.0,
        "validation loss {before:.3} -> {after:.3}"
    );
    assert_eq!(trainer.step, 60);
}

#[test]
fn resuming_a_checkpoint_continues_exactly() {
    let tokenizer = common::tokenizer();
    let train = TrainingWindows::new(&common::dialogues(40), &tokenizer, 33).unwrap();
    let config = config(tokenizer.vocab_size(), 6);

    let mut straight = Pretrainer::new(config.clone(), &cpu_device()).unwrap();
    while !straight.finished() {
        straight.train_step(&train).unwrap();
    }

    let dir = common::scratch("resume");
    let mut first = Pretrainer::new(config, &cpu_device()).unwrap();
    for _ in 0..3 {
        first.train_step(&train).unwrap();
    }
    first.save_checkpoint(&dir).unwrap();
    drop(first);
    let mut resumed = Pretrainer::resume(&dir, &cpu_device()).unwrap();
    assert_eq!(resumed.step, 3);
    while !resumed.finished() {
        resumed.train_step(&train).unwrap();
    }
    assert_eq!(resumed.tokens, straight.tokens);
    assert_eq!(probe(&resumed), probe(&straight));

    std::fs::write(dir.join("state.json"), b"{\"step\": ").unwrap();
    let message = Pretrainer::resume(&dir, &cpu_device())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("state.json"), "{message}");
}

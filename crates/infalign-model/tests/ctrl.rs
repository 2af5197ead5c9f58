//! CTRL on a tiny policy: calibration tables, the training reward, RLOO steps that raise the
//! reward while the adaptive beta holds the KL near its target, exact resume, and clear errors
//! for a missing table, a NaN reward and a run-away policy. (The same steps on wgpu:
//! `ctrl_wgpu.rs`.)

mod common;

use common::Length;

use infalign_core::Transform;
use infalign_model::backend::cpu_device;
use infalign_model::ctrl::calibration::{CalibratedPrompt, FORMAT, VERSION};
use infalign_model::ctrl::{
    calibrate, CalibrationSet, CalibrationSettings, CtrlConfig, CtrlTrainer, Decoding, StepMetrics,
    TrainingReward,
};
use infalign_model::policy::Policy;
use infalign_model::reward::{Reward, RewardSpec};
use infalign_model::tokenizer::DialogueTokenizer;

/// A broken reward model.
struct NotANumber;

impl Reward for NotANumber {
    fn name(&self) -> String {
        "broken".into()
    }
    fn score(&self, _prompt: &str, _response: &str) -> f64 {
        f64::NAN
    }
}

fn prompts() -> Vec<String> {
    [
        "hello there",
        "what do you like to eat",
        "tell me about your day",
        "any plans",
    ]
    .map(String::from)
    .to_vec()
}

fn decoding() -> Decoding {
    Decoding {
        max_new_tokens: 12,
        ..Decoding::default()
    }
}

fn base(tokenizer: &DialogueTokenizer) -> Policy {
    Policy::init(&common::tiny(tokenizer.vocab_size()), 7, &cpu_device()).unwrap()
}

fn settings(k: usize) -> CalibrationSettings {
    CalibrationSettings {
        k,
        reward: RewardSpec::Vader,
        decoding: decoding(),
        seed: 5,
        base_policy_sha256: "test".into(),
    }
}

fn calibration(policy: &Policy, tokenizer: &DialogueTokenizer, k: usize) -> CalibrationSet {
    pollster::block_on(calibrate(
        policy,
        tokenizer,
        &Length,
        &prompts(),
        settings(k),
        |_, _| {},
    ))
    .unwrap()
}

#[test]
fn calibration_tables_follow_the_prompt_and_round_trip() {
    let tokenizer = common::tokenizer();
    let policy = base(&tokenizer);
    let set = calibration(&policy, &tokenizer, 16);
    assert_eq!(set.prompts.len(), 4);
    for entry in &set.prompts {
        assert_eq!(entry.reference.len(), 16);
        let rewards = entry.reference.rewards();
        assert!(rewards.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(
            rewards.first() < rewards.last(),
            "the replies differ in length"
        );
    }
    // A prompt's table depends on the prompt alone, not on the rest of the set.
    let alone = pollster::block_on(calibrate(
        &policy,
        &tokenizer,
        &Length,
        &prompts()[2..3],
        settings(16),
        |_, _| {},
    ))
    .unwrap();
    assert_eq!(alone.prompts[0], set.prompts[2]);

    let text = set.to_json().unwrap();
    assert_eq!(
        CalibrationSet::parse(text.as_bytes(), "c.json").unwrap(),
        set
    );
    let summary = set.summary().unwrap();
    assert_eq!((summary.prompts, summary.k), (4, 16));
    assert!(summary.mean_distinct > 1.0 && summary.mean_distinct <= 16.0);
    assert!((0.0..1.0).contains(&summary.tie_fraction));
    assert!(summary.split_half_difference > 0.0 && summary.split_half_difference < 0.5);

    let tables = set.tables_for(&prompts()[1..]).unwrap();
    assert_eq!(tables[0], &set.prompts[1].reference);
    let error = set
        .tables_for(&["never calibrated".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no reference table") && error.contains("infalign calibrate"),
        "{error}"
    );
}

#[test]
fn malformed_calibration_files_are_named_errors() {
    let set = CalibrationSet {
        format: FORMAT.into(),
        version: VERSION,
        settings: settings(2),
        prompts: vec![CalibratedPrompt {
            prompt: "hi".into(),
            reference: infalign_core::ReferenceTable::new(vec![0.5, 0.1]).unwrap(),
        }],
    };
    let good = set.to_json().unwrap();
    assert!(CalibrationSet::parse(good.as_bytes(), "c.json").is_ok());
    let cases = [
        (good[..good.len() / 2].to_string(), "not valid JSON"),
        (
            good.replace(FORMAT, "something-else"),
            "not an InfAlign calibration",
        ),
        (
            good.replace("\"version\":1", "\"version\":9"),
            "this build reads 1 to",
        ),
        (
            good.replace("\"k\":2", "\"k\":3"),
            "has 2 reference rewards",
        ),
        (good.replace("[0.1,0.5]", "[]"), "c.json"),
        (good.replace("\"seed\"", "\"sede\""), "sede"),
    ];
    for (text, expected) in cases {
        let error = CalibrationSet::parse(text.as_bytes(), "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("c.json") && error.contains(expected),
            "{error}"
        );
    }
}

#[test]
fn training_rewards_parse_score_and_print() {
    // A spec names the same function as in every other command: `exp:12` is e^(12u), the
    // normalised form is `normexp:12`.
    let exp: TrainingReward = "exp:12".parse().unwrap();
    assert_eq!(exp, TrainingReward::Calibrated(Transform::Exp { t: 12.0 }));
    assert_eq!(exp.to_string(), "exp:12");
    let normexp: TrainingReward = "normexp:12".parse().unwrap();
    assert_eq!(
        normexp,
        TrainingReward::Calibrated(Transform::NormExp { t: 12.0 })
    );
    assert_eq!(normexp.to_string(), "normexp:12");
    let negexp: TrainingReward = "normnegexp:3".parse().unwrap();
    assert_eq!(
        negexp,
        TrainingReward::Calibrated(Transform::NormNegExp { t: 3.0 })
    );
    assert_eq!(
        "raw".parse::<TrainingReward>().unwrap(),
        TrainingReward::Raw
    );
    assert!("exp".parse::<TrainingReward>().is_err());
    assert!("cubic".parse::<TrainingReward>().is_err());

    let table = infalign_core::ReferenceTable::new(vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(TrainingReward::Raw.score(7.5, None).unwrap(), (7.5, None));
    let identity: TrainingReward = "identity".parse().unwrap();
    assert_eq!(
        identity.score(2.0, Some(&table)).unwrap(),
        (0.375, Some(0.375))
    );
    // Below every reference sample, log u stays finite (u is floored at 1/(4K)).
    let log: TrainingReward = "log".parse().unwrap();
    let (value, u) = log.score(0.0, Some(&table)).unwrap();
    assert_eq!(u, Some(0.0));
    assert!((value - (1.0f64 / 16.0).ln()).abs() < 1e-12);
    // The normalised exp maps the top of the table to 1, the plain one to e^12.
    assert!((normexp.score(9.0, Some(&table)).unwrap().0 - 1.0).abs() < 1e-12);
    assert!((exp.score(9.0, Some(&table)).unwrap().0 - 12f64.exp()).abs() < 1e-6);
    assert!(identity.score(1.0, None).is_err());
}

#[test]
fn settings_are_checked_field_by_field() {
    let cases: Vec<(CtrlConfig, &str)> = vec![
        (
            CtrlConfig {
                samples_per_prompt: 1,
                ..CtrlConfig::default()
            },
            "samples_per_prompt",
        ),
        (
            CtrlConfig {
                beta: -1.0,
                ..CtrlConfig::default()
            },
            "beta",
        ),
        (
            CtrlConfig {
                target_kl: Some(0.0),
                ..CtrlConfig::default()
            },
            "target_kl",
        ),
        (
            CtrlConfig {
                clip_range: Some(1.5),
                ..CtrlConfig::default()
            },
            "clip_range",
        ),
        (
            CtrlConfig {
                decoding: Decoding {
                    temperature: 0.7,
                    ..decoding()
                },
                ..CtrlConfig::default()
            },
            "temperature 1",
        ),
    ];
    for (config, expected) in cases {
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}

fn config(reward: &str, steps: u64) -> CtrlConfig {
    CtrlConfig {
        reward: reward.parse().unwrap(),
        beta: 0.02,
        samples_per_prompt: 4,
        prompts_per_step: 4,
        steps,
        learning_rate: 3e-3,
        decoding: decoding(),
        seed: 11,
        ..CtrlConfig::default()
    }
}

fn run(
    trainer: &mut CtrlTrainer,
    set: &CalibrationSet,
    reward: &dyn Reward,
    tokenizer: &DialogueTokenizer,
) -> Vec<StepMetrics> {
    let prompts = prompts();
    let tables = set.tables_for(&prompts).unwrap();
    let mut metrics = Vec::new();
    while !trainer.finished() {
        metrics.push(
            pollster::block_on(trainer.train_step(&prompts, Some(&tables), reward, tokenizer))
                .unwrap(),
        );
    }
    metrics
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn ctrl_raises_the_calibrated_reward_and_holds_the_kl_near_its_target() {
    let tokenizer = common::tokenizer();
    let policy = base(&tokenizer);
    let set = calibration(&policy, &tokenizer, 16);
    let target = 0.5;
    let mut trainer = CtrlTrainer::new(
        CtrlConfig {
            target_kl: Some(target),
            // Start at the theory engine's beta for identity at 0.5 nats (1 / lambda).
            beta: 1.0 / infalign_core::theory::lambda_for_kl(&Transform::Identity, target).unwrap(),
            kl_rate: 0.1,
            learning_rate: 1e-3,
            ..config("identity", 60)
        },
        &policy,
        &cpu_device(),
    )
    .unwrap();
    let metrics = run(&mut trainer, &set, &Length, &tokenizer);
    let trace: Vec<String> = metrics
        .iter()
        .map(|m| {
            format!(
                "u {:.2} kl {:.2} beta {:.3}",
                m.calibrated_reward.unwrap(),
                m.kl,
                m.beta
            )
        })
        .collect();
    assert_eq!(metrics.len(), 60);
    assert_eq!(
        metrics[0].kl, 0.0,
        "the first samples come from pi_ref itself"
    );
    let first = mean(metrics[..5].iter().map(|m| m.calibrated_reward.unwrap()));
    let last = mean(metrics[45..].iter().map(|m| m.calibrated_reward.unwrap()));
    assert!(
        last > first + 0.15,
        "calibrated reward {first:.3} in the first steps, {last:.3} in the last: {trace:#?}"
    );
    let kl = mean(metrics[45..].iter().map(|m| m.kl));
    assert!(
        kl > 0.3 * target && kl < 2.5 * target,
        "KL {kl:.3}, target {target}: {trace:#?}"
    );
    // The controller moved beta.
    assert_ne!(trainer.beta, metrics[0].beta, "{trace:#?}");
    let line = serde_json::to_value(&metrics[3]).unwrap();
    for key in [
        "objective/kl",
        "objective/scores",
        "objective/rlhf_reward",
        "episode",
    ] {
        assert!(line.get(key).is_some(), "{key} missing from {line}");
    }
    assert_eq!(metrics[59].episode, 60 * 16);
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    let tokenizer = common::tokenizer();
    let policy = base(&tokenizer);
    let set = calibration(&policy, &tokenizer, 8);
    let config = CtrlConfig {
        target_kl: Some(1.0),
        clip_range: Some(0.2),
        ppo_epochs: 2,
        ..config("exp:4", 6)
    };
    let mut straight = CtrlTrainer::new(config.clone(), &policy, &cpu_device()).unwrap();
    let all = run(&mut straight, &set, &Length, &tokenizer);

    let dir = common::scratch("ctrl-resume");
    let mut first =
        CtrlTrainer::new(CtrlConfig { steps: 6, ..config }, &policy, &cpu_device()).unwrap();
    let prompts = prompts();
    let tables = set.tables_for(&prompts).unwrap();
    let mut resumed_metrics = Vec::new();
    for _ in 0..3 {
        resumed_metrics.push(
            pollster::block_on(first.train_step(&prompts, Some(&tables), &Length, &tokenizer))
                .unwrap(),
        );
    }
    first.save_checkpoint(&dir).unwrap();
    drop(first);
    assert_eq!(CtrlTrainer::checkpoint_step(&dir).unwrap(), 3);
    let mut resumed = CtrlTrainer::resume(&dir, &policy, &cpu_device()).unwrap();
    assert_eq!(resumed.step, 3);
    resumed_metrics.extend(run(&mut resumed, &set, &Length, &tokenizer));
    assert_eq!(resumed_metrics, all);
    assert_eq!(resumed.beta, straight.beta);
    assert_eq!(
        common::fingerprint(&resumed.inference_policy()),
        common::fingerprint(&straight.inference_policy())
    );

    // Another base policy is refused.
    let other = Policy::init(&common::tiny(tokenizer.vocab_size()), 8, &cpu_device()).unwrap();
    let error = CtrlTrainer::resume(&dir, &other, &cpu_device())
        .err()
        .expect("a different base policy")
        .to_string();
    assert!(error.contains("different base policy"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_rewards_and_run_away_policies_stop_with_clear_errors() {
    let tokenizer = common::tokenizer();
    let policy = base(&tokenizer);
    let set = calibration(&policy, &tokenizer, 4);
    let prompts = prompts();
    let tables = set.tables_for(&prompts).unwrap();

    let mut trainer = CtrlTrainer::new(config("identity", 5), &policy, &cpu_device()).unwrap();
    let error =
        pollster::block_on(trainer.train_step(&prompts, Some(&tables), &NotANumber, &tokenizer))
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("`broken`") && error.contains("NaN"),
        "{error}"
    );
    assert_eq!(trainer.step, 0, "a failed step changes nothing");

    // A huge learning rate with no KL penalty: the second step's samples are far from pi_ref.
    let mut trainer = CtrlTrainer::new(
        CtrlConfig {
            beta: 0.0,
            learning_rate: 0.5,
            max_kl: 0.5,
            ..config("raw", 5)
        },
        &policy,
        &cpu_device(),
    )
    .unwrap();
    let mut outcome = Ok(());
    for _ in 0..5 {
        match pollster::block_on(trainer.train_step(&prompts, None, &Length, &tokenizer)) {
            Ok(_) => continue,
            Err(error) => {
                outcome = Err(error.to_string());
                break;
            }
        }
    }
    let error = outcome.expect_err("the KL runs past 0.5 nats");
    assert!(
        error.contains("ran away") && error.contains("max_kl 0.5"),
        "{error}"
    );

    let mut calibrated = CtrlTrainer::new(config("identity", 5), &policy, &cpu_device()).unwrap();
    let error = pollster::block_on(calibrated.train_step(&prompts, None, &Length, &tokenizer))
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs a calibration set"), "{error}");
}

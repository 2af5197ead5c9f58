//! CTRL steps on wgpu (Mesa's lavapipe where there is no GPU) against the same steps on flex.
//! A test binary of its own: one wgpu runtime per process, torn down alone.

mod common;

use common::Length;

use infalign_model::backend::{cpu_device, gpu_device};
use infalign_model::bundle::{policy_from_burnpack, policy_to_burnpack, Precision};
use infalign_model::ctrl::{calibrate, CalibrationSettings, CtrlConfig, CtrlTrainer, Decoding};
use infalign_model::policy::Policy;
use infalign_model::reward::RewardSpec;

#[test]
fn ctrl_steps_on_wgpu_match_flex() {
    let gpu = pollster::block_on(gpu_device()).expect(
        "a wgpu adapter (on machines without a GPU, `cargo xtask setup` installs Mesa's lavapipe)",
    );
    let tokenizer = common::tokenizer();
    let policy = Policy::init(&common::tiny(tokenizer.vocab_size()), 7, &cpu_device()).unwrap();
    let prompts: Vec<String> = ["hello there", "tell me about your day"]
        .map(String::from)
        .to_vec();
    let decoding = Decoding {
        max_new_tokens: 12,
        ..Decoding::default()
    };
    let settings = CalibrationSettings {
        k: 8,
        reward: RewardSpec::Vader,
        decoding,
        seed: 5,
        base_policy_sha256: "test".into(),
    };
    let set = pollster::block_on(calibrate(
        &policy,
        &tokenizer,
        &Length,
        &prompts,
        settings,
        |_, _| {},
    ))
    .unwrap();
    let tables = set.tables_for(&prompts).unwrap();
    // Two small steps: lavapipe runs every kernel on the CPU, slowly.
    let config = CtrlConfig {
        reward: "exp:4".parse().unwrap(),
        beta: 0.02,
        samples_per_prompt: 2,
        prompts_per_step: 2,
        steps: 2,
        learning_rate: 3e-3,
        decoding,
        seed: 11,
        ..CtrlConfig::default()
    };
    let weights = policy_to_burnpack(&policy, Precision::F32).unwrap();
    let on_gpu = policy_from_burnpack(&policy.config(), &weights, &gpu, "base").unwrap();
    let steps = |mut trainer: CtrlTrainer| {
        let mut metrics = Vec::new();
        while !trainer.finished() {
            metrics.push(
                pollster::block_on(trainer.train_step(
                    &prompts,
                    Some(&tables),
                    &Length,
                    &tokenizer,
                ))
                .unwrap(),
            );
        }
        metrics
    };
    let on_cpu = steps(CtrlTrainer::new(config.clone(), &policy, &cpu_device()).unwrap());
    let on_gpu = steps(CtrlTrainer::new(config, &on_gpu, &gpu).unwrap());
    // Let the device finish every queued kernel before the process exits: tearing lavapipe
    // down with work in flight crashed the test binary at exit now and then.
    gpu.sync().expect("the wgpu queue drains");
    assert_eq!(on_gpu.len(), 2);
    // The first step samples pi_ref itself on both backends: the same replies, the same scores.
    assert_eq!(on_gpu[0].raw_reward, on_cpu[0].raw_reward);
    assert_eq!(on_gpu[0].kl, 0.0);
    // Later steps follow updates computed by different kernels: close, not bit-equal.
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert!(
            (g.kl - c.kl).abs() < 1e-3 && (g.raw_reward - c.raw_reward).abs() < 1e-3,
            "step {}: wgpu kl {} reward {}, flex kl {} reward {}",
            g.step,
            g.kl,
            g.raw_reward,
            c.kl,
            c.raw_reward
        );
    }
}

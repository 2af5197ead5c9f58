//! The policy: generation with and without the KV cache, teacher-forced log-probabilities,
//! padding, the token sampler, a few training steps, and flex / wgpu parity.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use infalign_model::backend::{cpu_device, gpu_device};
use infalign_model::policy::{
    generate, sample_token, Generation, Policy, PolicyConfig, Sampler, SamplingConfig, TokenBatch,
};

fn tiny_config() -> PolicyConfig {
    PolicyConfig {
        vocab_size: 48,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        max_seq_len: 40,
    }
}

/// Prompts of different lengths, so generation and scoring exercise left padding.
fn prompts() -> Vec<Vec<u32>> {
    vec![vec![3, 17, 5, 9, 21], vec![8], vec![40, 2, 33]]
}

fn run(policy: &Policy, stop: Option<u32>, config: &SamplingConfig, seed: u64) -> Generation {
    pollster::block_on(generate(policy, &prompts(), stop, config, seed)).expect("generation runs")
}

fn sampled(max_new_tokens: usize, use_cache: bool) -> SamplingConfig {
    SamplingConfig {
        max_new_tokens,
        use_cache,
        ..SamplingConfig::default()
    }
}

fn greedy(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        ..sampled(max_new_tokens, true)
    }
}

fn to_vec(tensor: burn::tensor::Tensor<2>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32 data")
}

#[test]
fn config_errors_name_the_field() {
    let mut config = tiny_config();
    config.n_heads = 5;
    let message = config.validate().unwrap_err().to_string();
    assert!(
        message.contains("n_heads") && message.contains("d_model = 32"),
        "{message}"
    );
    config = tiny_config();
    config.max_seq_len = 0;
    let message = Policy::init(&config, 0, &cpu_device())
        .unwrap_err()
        .to_string();
    assert!(message.contains("max_seq_len"), "{message}");
    assert_eq!(
        Policy::init(&tiny_config(), 0, &cpu_device())
            .unwrap()
            .config(),
        tiny_config()
    );
}

#[test]
fn parameter_count_matches_the_module() {
    use burn::module::Module;
    let config = tiny_config();
    let policy = Policy::init(&config, 0, &cpu_device()).unwrap();
    assert_eq!(policy.num_params(), config.num_parameters());
}

#[test]
fn cached_and_uncached_generation_agree() {
    let policy = Policy::init(&tiny_config(), 1, &cpu_device()).unwrap();
    let cached = run(&policy, None, &sampled(12, true), 7);
    let uncached = run(&policy, None, &sampled(12, false), 7);
    assert_eq!(cached, uncached);
    assert_eq!(cached.steps, 12);
    assert!(cached.responses.iter().all(|r| r.len() == 12));
    // Sampling at temperature 1 from a random model: the rows are not all the same token.
    let distinct: std::collections::BTreeSet<u32> =
        cached.responses.iter().flatten().copied().collect();
    assert!(distinct.len() > 5, "{distinct:?}");
}

/// A batch that holds prompts several times (many answers to one prompt, as CTRL and the lab
/// sample them) runs each distinct prompt once on the cached path and copies its keys and values;
/// the tokens are those of the uncached path, which runs every row.
#[test]
fn repeated_prompts_sample_as_if_each_row_ran() {
    let policy = Policy::init(&tiny_config(), 6, &cpu_device()).unwrap();
    let [long, short, middle] = <[Vec<u32>; 3]>::try_from(prompts()).unwrap();
    // `[0, 0, 8]` pads to the same grid row as `[8]` (the pad token is 0), but it is another
    // prompt: rows are told apart by their pads too.
    let batch = vec![
        long.clone(),
        short.clone(),
        long.clone(),
        vec![0, 0, 8],
        short,
        long,
        middle,
    ];
    let sample = |use_cache| {
        pollster::block_on(generate(&policy, &batch, None, &sampled(12, use_cache), 5)).unwrap()
    };
    let cached = sample(true);
    assert_eq!(cached, sample(false));
    // Each copy of a prompt draws its own answer.
    assert_ne!(cached.responses[0], cached.responses[2]);
    assert_ne!(cached.responses[1], cached.responses[4]);
}

#[test]
fn sampling_is_reproducible_and_depends_on_the_seed() {
    let policy = Policy::init(&tiny_config(), 2, &cpu_device()).unwrap();
    let config = sampled(10, true);
    assert_eq!(
        run(&policy, None, &config, 11),
        run(&policy, None, &config, 11)
    );
    assert_ne!(
        run(&policy, None, &config, 11).responses,
        run(&policy, None, &config, 12).responses
    );
}

#[test]
fn greedy_tokens_are_the_argmax_of_teacher_forced_logits() {
    let config = tiny_config();
    let policy = Policy::init(&config, 3, &cpu_device()).unwrap();
    let generation = run(&policy, None, &greedy(8), 0);
    let batch = TokenBatch::prompt_response(
        &prompts(),
        &generation.responses,
        config.max_seq_len,
        &cpu_device(),
    )
    .unwrap();
    let logits = policy.forward(
        batch.inputs.clone(),
        batch.positions.clone(),
        &batch.pads,
        None,
    );
    let [rows, len, vocab] = logits.dims();
    let logp = log_softmax(logits, 2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let token_logp = to_vec(policy.token_logprobs(&batch));
    for (row, response) in generation.responses.iter().enumerate() {
        // The response occupies the last `response.len()` target columns of the row.
        for (k, &token) in response.iter().enumerate() {
            let column = len - response.len() + k;
            let at = (row * len + column) * vocab;
            let step = &logp[at..at + vocab];
            let best = step.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert!(
                (step[token as usize] - best).abs() < 1e-5,
                "row {row} token {k}: greedy picked {token} with log p {} < max {best}",
                step[token as usize]
            );
            let picked = token_logp[row * len + column];
            assert!((picked - step[token as usize]).abs() < 1e-5);
        }
        // Prompt and padding positions are not scored.
        let unscored = len - response.len();
        assert!(token_logp[row * len..row * len + unscored]
            .iter()
            .all(|&v| v == 0.0));
    }
    assert_eq!(rows, 3);
    assert_eq!(
        batch.target_count(),
        generation.responses.iter().map(Vec::len).sum::<usize>()
    );
}

#[test]
fn padding_does_not_change_log_probabilities() {
    let config = tiny_config();
    let device = cpu_device();
    let policy = Policy::init(&config, 4, &device).unwrap();
    let short = (vec![5, 6], vec![7, 8, 9]);
    let long = (vec![1, 2, 3, 4, 5, 6, 7, 8], vec![10, 11, 12, 13, 14, 15]);
    let alone = TokenBatch::prompt_response(
        std::slice::from_ref(&short.0),
        std::slice::from_ref(&short.1),
        40,
        &device,
    )
    .unwrap();
    let together = TokenBatch::prompt_response(
        &[long.0.clone(), short.0.clone()],
        &[long.1.clone(), short.1.clone()],
        40,
        &device,
    )
    .unwrap();
    // 13 inputs for the long row, 4 for the short one.
    assert_eq!(together.pads, vec![0, 9]);
    let alone = policy
        .sequence_logprobs(&alone)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let together = policy
        .sequence_logprobs(&together)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(alone[0] < 0.0);
    assert!(
        (alone[0] - together[1]).abs() < 1e-4,
        "alone {} vs padded {}",
        alone[0],
        together[1]
    );
}

#[test]
fn stop_token_ends_a_row() {
    let policy = Policy::init(&tiny_config(), 5, &cpu_device()).unwrap();
    let free = run(&policy, None, &greedy(10), 0);
    let stop = free.responses[0][3];
    let stopped = run(&policy, Some(stop), &greedy(10), 0);
    for (row, response) in free.responses.iter().enumerate() {
        match response.iter().position(|&t| t == stop) {
            Some(at) => {
                assert!(stopped.stopped[row]);
                assert_eq!(stopped.responses[row], response[..at]);
            }
            None => {
                assert!(!stopped.stopped[row]);
                assert_eq!(&stopped.responses[row], response);
            }
        }
    }
    assert!(stopped.stopped[0]);
    assert!(stopped.responses[0].len() <= 3);
}

#[test]
fn stepping_a_sampler_streams_the_tokens_generate_returns() {
    let policy = Policy::init(&tiny_config(), 5, &cpu_device()).unwrap();
    let whole = run(&policy, None, &greedy(10), 0);
    let stop = whole.responses[0][3];
    for config in [sampled(10, true), sampled(10, false), greedy(10)] {
        let expected = run(&policy, Some(stop), &config, 3);
        let mut sampler = Sampler::new(&policy, &prompts(), Some(stop), &config, 3).unwrap();
        let mut seen: Vec<Vec<u32>> = vec![Vec::new(); prompts().len()];
        let mut was_stopped = vec![false; prompts().len()];
        let mut steps = 0;
        while pollster::block_on(sampler.step()).unwrap() {
            steps += 1;
            assert_eq!(sampler.steps(), steps);
            // Each step extends every running row by at most one token and keeps what came
            // before; a stopped row never grows again.
            for (row, (now, before)) in sampler.responses().iter().zip(&seen).enumerate() {
                assert!(now.starts_with(before), "row {row} at step {steps}");
                assert!(now.len() <= before.len() + 1, "row {row} at step {steps}");
                if was_stopped[row] {
                    assert_eq!(now, before, "row {row} grew after its stop token");
                }
            }
            seen = sampler.responses().to_vec();
            was_stopped = sampler.stopped().to_vec();
        }
        assert!(sampler.is_done());
        assert!(
            !pollster::block_on(sampler.step()).unwrap(),
            "a done sampler runs no step"
        );
        assert_eq!(sampler.finish(), expected);
        assert_eq!(steps, expected.steps);
    }
}

#[test]
fn bad_requests_are_errors() {
    let policy = Policy::init(&tiny_config(), 6, &cpu_device()).unwrap();
    let request = |prompts: Vec<Vec<u32>>, config: SamplingConfig| {
        pollster::block_on(generate(&policy, &prompts, None, &config, 0))
            .unwrap_err()
            .to_string()
    };
    assert!(request(vec![vec![1], vec![]], greedy(4)).contains("prompt 1 is empty"));
    assert!(request(vec![vec![48]], greedy(4)).contains("token 48"));
    assert!(request(vec![vec![1]], greedy(40)).contains("max_new_tokens"));
    let mut config = greedy(4);
    config.top_p = 0.0;
    assert!(request(vec![vec![1]], config).contains("top_p"));
    // A long prompt keeps its last tokens instead of failing.
    let long: Vec<u32> = (0..100).map(|t| t % 48).collect();
    let generation = pollster::block_on(generate(&policy, &[long], None, &greedy(4), 0)).unwrap();
    assert_eq!(generation.responses[0].len(), 4);
}

#[test]
fn sampler_follows_temperature_top_k_and_top_p() {
    let logits = [2.0f32, 1.0, 0.5, -1.0, 3.0];
    let base = SamplingConfig::default();
    // A fine grid of uniforms reproduces the sampling distribution exactly (up to the grid).
    let frequencies = |config: &SamplingConfig| {
        let n = 100_000;
        let mut counts = [0usize; 5];
        for i in 0..n {
            counts[sample_token(&logits, config, (i as f64 + 0.5) / n as f64) as usize] += 1;
        }
        counts.map(|c| c as f64 / n as f64)
    };
    let softmax = |temperature: f64, keep: &[usize]| {
        let weights: Vec<f64> = (0..5)
            .map(|i| {
                if keep.contains(&i) {
                    (f64::from(logits[i]) / temperature).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        weights.into_iter().map(|w| w / total).collect::<Vec<_>>()
    };
    let close = |actual: [f64; 5], expected: Vec<f64>| {
        for (a, e) in actual.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-4, "{actual:?} vs {expected:?}");
        }
    };
    close(frequencies(&base), softmax(1.0, &[0, 1, 2, 3, 4]));
    let hot = SamplingConfig {
        temperature: 2.0,
        ..base
    };
    close(frequencies(&hot), softmax(2.0, &[0, 1, 2, 3, 4]));
    let top2 = SamplingConfig { top_k: 2, ..base };
    close(frequencies(&top2), softmax(1.0, &[4, 0]));
    // p(token 4) = 0.62 and p(token 0) = 0.23: top-p 0.7 keeps exactly those two.
    let nucleus = SamplingConfig { top_p: 0.7, ..base };
    close(frequencies(&nucleus), softmax(1.0, &[4, 0]));
    let greedy = SamplingConfig {
        temperature: 0.0,
        ..base
    };
    assert_eq!(frequencies(&greedy), [0.0, 0.0, 0.0, 0.0, 1.0]);
    // Ties go to the lowest index.
    assert_eq!(sample_token(&[1.0, 3.0, 3.0], &greedy, 0.5), 1);
}

#[test]
fn a_few_adamw_steps_fit_a_repeated_sequence() {
    let config = tiny_config();
    let device = cpu_device().autodiff();
    let mut policy = Policy::init(&config, 7, &device).unwrap();
    let sequence: Vec<u32> = (0..24).map(|t| (t * 7 % 48) as u32).collect();
    let batch = TokenBatch::new(&[sequence.clone(), sequence], &[1, 1], 40, &device).unwrap();
    let mut optimizer = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..40 {
        let loss = policy.loss(&batch);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        policy = optimizer.step(3e-3, policy, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    // Starts near log(48) = 3.87 (uniform guess) and must fall well below it.
    assert!((first - 48f32.ln()).abs() < 0.3, "initial loss {first}");
    assert!(last < 0.5 * first, "loss {first} -> {last}: {losses:?}");
}

#[test]
fn wgpu_matches_flex() {
    let gpu = pollster::block_on(gpu_device()).expect(
        "a wgpu adapter (on machines without a GPU, `cargo xtask setup` installs Mesa's lavapipe)",
    );
    let config = tiny_config();
    let on_cpu = Policy::init(&config, 8, &cpu_device()).unwrap();
    let on_gpu = Policy::init(&config, 8, &gpu).unwrap();
    let batch = |device: &burn::tensor::Device| {
        TokenBatch::prompt_response(
            &prompts(),
            &[vec![1, 2, 3], vec![4], vec![5, 6]],
            40,
            device,
        )
        .unwrap()
    };
    let cpu = cpu_device();
    let cpu_logp = to_vec(on_cpu.token_logprobs(&batch(&cpu)));
    let gpu_logp = to_vec(on_gpu.token_logprobs(&batch(&gpu)));
    for (c, g) in cpu_logp.iter().zip(&gpu_logp) {
        assert!((c - g).abs() < 1e-4, "log p on flex {c} vs wgpu {g}");
    }
    let config = sampled(10, true);
    assert_eq!(
        run(&on_cpu, None, &config, 9),
        run(&on_gpu, None, &config, 9)
    );
}

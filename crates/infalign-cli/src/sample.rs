//! `infalign sample`: N responses from a bundle's policy to one prompt, with their rewards (raw
//! and calibrated against reference samples) and the Best-of-N and Worst-of-N picks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use infalign_core::selection::{best_of_n, worst_of_n};
use infalign_model::bundle::{Bundle, BASE_POLICY};
use infalign_model::ctrl::{reference_table, rollout, score, Decoding};

use crate::args::DeviceArg;
use crate::files::print_stdout;
use crate::reward::spec_or;

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A bundle directory (written by `infalign pretrain`, or `static/default-model`).
    #[arg(long)]
    bundle: PathBuf,
    /// Which of the bundle's policies answers (`base`, or a variant the bundle holds).
    #[arg(long, default_value = "base")]
    policy: String,
    /// The user's message; it becomes one human turn.
    #[arg(long)]
    prompt: String,
    /// Number of responses.
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// Longest response, in tokens.
    #[arg(long, default_value_t = 48)]
    max_new_tokens: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Softmax temperature (0: greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1: all).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Reward: `vader`, `rustrict`, `linear:PATH` or `learned:DIR` (default: the bundle's, else `vader`).
    #[arg(long)]
    reward: Option<String>,
    /// Calibrate rewards against K reference responses sampled from the base policy (with the
    /// decoding the bundle's variants were calibrated with, and the reference stream of --seed).
    #[arg(long)]
    reference_k: Option<usize>,
    #[command(flatten)]
    device: DeviceArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Response {
    text: String,
    reward: f64,
    calibrated_reward: Option<f64>,
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n >= 1, "--n must be at least 1");
    anyhow::ensure!(
        args.reference_k != Some(0),
        "--reference-k must be at least 1"
    );
    let bundle = Bundle::read_dir(&args.bundle)?;
    let backend = args.device.resolve()?;
    let policy = bundle
        .named_policy(&args.policy, &backend.device)
        .with_context(|| {
            format!(
                "loading policy {:?} of {}",
                args.policy,
                args.bundle.display()
            )
        })?;
    let spec = spec_or(args.reward.as_deref(), bundle.manifest.reward.clone())?;
    let reward = spec.load()?;
    let decoding = Decoding {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        max_new_tokens: args.max_new_tokens,
    };
    let tokenizer = &bundle.tokenizer;
    let messages = vec![args.prompt.as_str(); args.n];

    let started = Instant::now();
    let rollouts =
        pollster::block_on(rollout(&policy, tokenizer, &messages, &decoding, args.seed))?;
    let seconds = started.elapsed().as_secs_f64();
    // Tokens generated, end-of-turn tokens included.
    let tokens: usize = rollouts.response_ids.iter().map(Vec::len).sum();
    let texts = rollouts.texts;
    let rewards = score(reward.as_ref(), &messages, &texts)?;

    let calibration = match args.reference_k {
        Some(k) => {
            // Calibration is against the base policy pi_ref, whichever policy answers, with the
            // bundle's reference decoding and the reference stream of the seed: the table
            // `calibrate` and the browser lab draw for the same prompt, reward, K and seed.
            let loaded_base;
            let base = if args.policy == BASE_POLICY {
                &policy
            } else {
                loaded_base = bundle.policy(&backend.device)?;
                &loaded_base
            };
            Some(pollster::block_on(reference_table(
                base,
                tokenizer,
                &args.prompt,
                reward.as_ref(),
                k,
                &bundle.reference_decoding(),
                args.seed,
                async |_| {},
            ))?)
        }
        None => None,
    };
    let responses: Vec<Response> = texts
        .into_iter()
        .zip(&rewards)
        .map(|(text, &reward)| {
            Ok(Response {
                text,
                reward,
                calibrated_reward: match &calibration {
                    Some(table) => Some(table.calibrated_reward(reward)?),
                    None => None,
                },
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let best = best_of_n(&rewards)?;
    let worst = worst_of_n(&rewards)?;

    if args.json {
        let object = serde_json::json!({
            "prompt": args.prompt,
            "policy": args.policy,
            "reward": spec.to_string(),
            "responses": responses,
            "reference_rewards": calibration.as_ref().map(|table| table.rewards()),
            "best": best,
            "worst": worst,
            "timing": {"seconds": seconds, "tokens": tokens},
        });
        return print_stdout(&format!("{object}\n"));
    }
    let mut out = format!("policy: {}; reward: {}\n", args.policy, reward.name());
    for (index, response) in responses.iter().enumerate() {
        let mark = match (index == best, index == worst) {
            (true, true) => "best+worst",
            (true, false) => "best",
            (false, true) => "worst",
            _ => "",
        };
        let calibrated = response
            .calibrated_reward
            .map(|u| format!("  u {u:.3}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{index:>3} {mark:>10}  r {:+.3}{calibrated}  {}\n",
            response.reward, response.text
        ));
    }
    out.push_str(&format!(
        "Best-of-{n}: #{best}; Worst-of-{n}: #{worst}; {tokens} tokens in {seconds:.2} s ({:.0} tokens/s)\n",
        tokens as f64 / seconds.max(1e-9),
        n = args.n
    ));
    print_stdout(&out)
}

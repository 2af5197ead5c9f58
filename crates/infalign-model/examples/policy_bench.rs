//! Policy throughput: sampling tokens/s with and without the KV cache, and training tokens/s,
//! on flex (CPU) and on wgpu, for one model shape. Prints medians over repeats as a table, or
//! JSON lines with `--json`.
//!
//! `cargo run -p infalign-model --release --example policy_bench -- [--device cpu|wgpu|both]
//!  [--d-model 128] [--layers 4] [--vocab 4096] [--context 128] [--batch 16] [--new-tokens 48]
//!  [--prompt-tokens 16] [--repeats 5] [--work all|sample|cached|train|phases] [--json]`
//!
//! `--work` limits the run to some rows (all sampling, cached sampling only, or training only),
//! for slow devices such as lavapipe; `phases` times the training step's forward pass (with the
//! loss), backward pass and AdamW update separately.

mod common;

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use clap::Parser;
use infalign_model::backend::{cpu_device, gpu_device};
use infalign_model::policy::{generate, Policy, PolicyConfig, SamplingConfig, TokenBatch};
use infalign_model::pretrain::language_model_gradients;

use common::{median, time_with_cpu};

#[derive(Parser)]
struct Options {
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wgpu", "both"])]
    device: String,
    #[arg(long, default_value_t = 128, value_parser = common::positive)]
    d_model: usize,
    #[arg(long, default_value_t = 4, value_parser = common::positive)]
    layers: usize,
    #[arg(long, default_value_t = 4096, value_parser = common::positive)]
    vocab: usize,
    #[arg(long, default_value_t = 128, value_parser = common::positive)]
    context: usize,
    #[arg(long, default_value_t = 16, value_parser = common::positive)]
    batch: usize,
    #[arg(long, default_value_t = 48, value_parser = common::positive)]
    new_tokens: usize,
    #[arg(long, default_value_t = 16, value_parser = common::positive)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 5, value_parser = common::positive)]
    repeats: usize,
    #[arg(long, default_value = "all", value_parser = ["all", "sample", "cached", "train", "phases"])]
    work: String,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Flush subnormal floats to zero (as the benchmark's PyTorch side does then too).
    #[arg(long)]
    flush_denormals: bool,
}

fn bench(options: &Options, device: &Device, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = PolicyConfig::new(
        options.vocab,
        options.d_model,
        options.layers,
        options.context,
    );
    let policy = Policy::init(&config, 0, device)?;
    let prompt: Vec<u32> = (0..options.prompt_tokens)
        .map(|t| (t * 37 % options.vocab) as u32)
        .collect();
    let prompts = vec![prompt; options.batch];
    let new_tokens = options.batch * options.new_tokens;
    let caches: &[bool] = match options.work.as_str() {
        "all" | "sample" => &[true, false],
        "cached" => &[true],
        _ => &[],
    };
    for &use_cache in caches {
        let sampling = SamplingConfig {
            max_new_tokens: options.new_tokens,
            use_cache,
            ..SamplingConfig::default()
        };
        let (seconds, cpu_s) = time_with_cpu(options.repeats, || {
            pollster::block_on(generate(&policy, &prompts, None, &sampling, 1)).expect("sampling");
        });
        let work = if use_cache {
            "sample (KV cache)"
        } else {
            "sample (no cache)"
        };
        report(options, name, work, &seconds, cpu_s, new_tokens);
    }

    if !["all", "train", "phases"].contains(&options.work.as_str()) {
        return Ok(());
    }
    let trainable = Policy::init(&config, 0, &device.clone().autodiff())?;
    let windows: Vec<Vec<u32>> = (0..options.batch)
        .map(|row| {
            (0..=options.context)
                .map(|t| ((row * 131 + t * 17) % options.vocab) as u32)
                .collect()
        })
        .collect();
    let first = vec![1; options.batch];
    let batch = TokenBatch::new(&windows, &first, options.context + 1, &trainable.device())?;
    let mut optimizer = AdamWConfig::new().init();
    let mut model = Some(trainable);
    // Each phase's seconds; flex runs every op eagerly, so on the CPU the split is exact (on a
    // GPU only the sum is: the backward and the update are queued, not waited for).
    let mut phases: [Vec<f64>; 3] = Default::default();
    // `phases` times the forward and the backward of one thread's pass apart; the training step
    // itself is pretraining's (`language_model_gradients`: the batch split across the cores).
    let split_step = options.work != "phases";
    let (seconds, cpu_s) = time_with_cpu(options.repeats, || {
        let policy = model.take().expect("the model");
        if split_step {
            let split = language_model_gradients(&policy, &windows).expect("the training step");
            model = Some(optimizer.step(1e-4, policy, split.grads));
            return;
        }
        let start = Instant::now();
        let loss = policy.loss(&batch);
        // Reading the loss waits for the device, so the time covers the whole step.
        let _ = loss.clone().into_data();
        let forward = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        let backward = Instant::now();
        model = Some(optimizer.step(1e-4, policy, grads));
        for (phase, seconds) in
            phases
                .iter_mut()
                .zip([forward - start, backward - forward, backward.elapsed()])
        {
            phase.push(seconds.as_secs_f64());
        }
    });
    if options.work == "phases" {
        // The first entries are the warm-up step's.
        for (phase, work) in
            phases
                .iter()
                .zip(["train: forward + loss", "train: backward", "train: AdamW"])
        {
            report(options, name, work, &phase[1..], 0.0, batch.target_count());
        }
    }
    report(
        options,
        name,
        "train step",
        &seconds,
        cpu_s,
        batch.target_count(),
    );
    Ok(())
}

/// `cpu_s`: the process's CPU seconds over the timed runs (0 when not measured).
fn report(options: &Options, device: &str, work: &str, times: &[f64], cpu_s: f64, tokens: usize) {
    let seconds = median(times);
    let rate = tokens as f64 / seconds;
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "device": device, "side": format!("burn {device}"), "work": work,
                "median_s": seconds, "seconds": times, "units": tokens, "unit": "tokens",
                "tokens": tokens, "cpu_s": cpu_s,
                "tokens_per_s": rate, "d_model": options.d_model, "layers": options.layers,
                "vocab": options.vocab, "context": options.context, "batch": options.batch,
                "repeats": options.repeats,
            })
        );
    } else {
        println!("{device:<6} {work:<18} {seconds:>9.4} s {rate:>10.0} tokens/s ({tokens} tokens)");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    if options.flush_denormals {
        infalign_model::backend::flush_denormals();
    }
    if !options.json {
        println!(
            "policy d_model {} x {} layers, vocab {}, context {}, batch {}, {} new tokens, \
             median of {}",
            options.d_model,
            options.layers,
            options.vocab,
            options.context,
            options.batch,
            options.new_tokens,
            options.repeats
        );
    }
    if matches!(options.device.as_str(), "cpu" | "both") {
        bench(&options, &cpu_device(), "flex")?;
    }
    if matches!(options.device.as_str(), "wgpu" | "both") {
        let device = pollster::block_on(gpu_device())?;
        bench(&options, &device, "wgpu")?;
    }
    Ok(())
}

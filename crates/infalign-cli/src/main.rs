//! `infalign`: the native InfAlign command.
//!
//! Each subcommand reads files and writes files into a run directory, so any step of the
//! pipeline (data -> tokenizer -> base policy -> reward -> calibration -> CTRL -> evaluation ->
//! bundle) can be rerun or inspected alone.

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod backend;
mod calibrate;
mod candidates;
mod ctrl;
mod data;
mod eval;
mod export;
mod files;
mod pretrain;
mod progress;
mod reward;
mod safetensors;
mod sample;
mod sweep;
mod theory;
mod tokenizer;

/// Inference-aware alignment: calibrate, transform, KL-regularised RL.
#[derive(Debug, Parser)]
#[command(name = "infalign", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Obtain and prepare the dialogue corpus (chitchat) and prompt sets.
    Data(data::DataArgs),
    /// Train the byte-level BPE tokenizer on the dialogue corpus.
    Tokenizer(tokenizer::TokenizerArgs),
    /// Train the base policy pi_ref on the dialogue corpus (checkpoints, resume, final bundle).
    Pretrain(pretrain::PretrainArgs),
    /// Train a learned reward model on preference pairs; measure any reward's pair accuracy.
    Reward(reward::RewardArgs),
    /// Sample K reference responses per training prompt from pi_ref and store their rewards.
    Calibrate(calibrate::CalibrateArgs),
    /// KL-regularised RL on the calibrated, transformed reward (CTRL) or the raw reward.
    Ctrl(ctrl::CtrlArgs),
    /// Win rates (standard, BoN_N, WoN_N) and KL of a policy against pi_ref on held-out prompts.
    Eval(eval::EvalArgs),
    /// CTRL runs over methods and betas, evaluated and compared at matched KL.
    Sweep(sweep::SweepArgs),
    /// Candidate-set CTRL on real rewards: collect candidates, exact optima, stochastic RLOO.
    Candidates(candidates::CandidatesArgs),
    /// One bundle of the base policy and aligned variants from CTRL runs (for the browser lab).
    Export(export::ExportArgs),
    /// Sample N responses from a bundle's policy, score them, show Best-of-N and Worst-of-N.
    Sample(sample::SampleArgs),
    /// Write a bundle's policy weights as SafeTensors (PyTorch layout) for Python.
    Safetensors(safetensors::SafetensorsArgs),
    /// Exact win-rate-versus-KL theory in calibrated space (no model needed).
    Theory(theory::TheoryArgs),
    /// Check which compute backends work on this machine (CPU flex, GPU wgpu).
    Backend(backend::BackendArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(args) => data::run(args),
        Command::Theory(args) => theory::run(args),
        Command::Safetensors(args) => safetensors::run(args),
        Command::Tokenizer(args) => tokenizer::run(args),
        Command::Backend(args) => backend::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Reward(args) => reward::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Calibrate(args) => calibrate::calibrate_command(args),
        Command::Ctrl(args) => ctrl::ctrl_command(args),
        Command::Eval(args) => eval::eval_command(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Candidates(args) => candidates::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

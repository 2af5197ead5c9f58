//! `cargo xtask bench`: our code against the tools people would otherwise use, side by side.
//!
//! Four pieces of work, each run by both sides in the same invocation on the same machine:
//!
//! | work | ours | peer |
//! |---|---|---|
//! | train step of the small GPT (forward, backward, AdamW) | `policy_bench` (burn) | PyTorch |
//! | sampling, batch 16, 48 new tokens, KV cache | `policy_bench` (burn) | PyTorch |
//! | the CTRL step (sample, score, calibrate, transform, policy gradient) | `ctrl_bench` (burn) | PyTorch, `scripts/bench_peer.py` |
//! | the win-rate-versus-KL curve (200 points) | `curve` (infalign-core) | NumPy |
//!
//! Every side is a fresh process that runs one warm-up and then `--repeats` timed runs, and
//! prints its times as one JSON line. The harness runs `--rounds` rounds; in each, every work
//! runs on both sides back to back, the order flipping from round to round, so slow phases of
//! the machine fall on both. Medians and spreads are over all timed runs of all rounds. Each side
//! also reports its process's CPU time over its timed runs; CPU time over wall time is how many
//! cores the side kept busy.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{describe, repo_root, run_command, setup, target_dir};

/// Where the work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchDevice {
    /// burn's flex backend against PyTorch on the CPU.
    Cpu,
    /// burn's wgpu backend (Vulkan) against PyTorch on CUDA.
    Gpu,
}

/// A piece of work both sides run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkKind {
    /// The training step of the small GPT.
    Train,
    /// Sampling with a KV cache.
    Sample,
    /// The CTRL step as a whole.
    Ctrl,
    /// The analytic engine's win-rate curve.
    Curve,
}

impl WorkKind {
    /// The name `scripts/bench_peer.py` knows it by.
    fn peer_name(self) -> &'static str {
        match self {
            WorkKind::Train => "train",
            WorkKind::Sample => "sample",
            WorkKind::Ctrl => "ctrl",
            WorkKind::Curve => "curve",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Rounds of alternating runs.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed runs per side per round (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// CPU threads for each side (PyTorch's `set_num_threads`, burn's RAYON_NUM_THREADS);
    /// default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// cpu (burn flex vs PyTorch CPU) or gpu (burn wgpu vs PyTorch CUDA).
    #[arg(long, value_enum, default_value = "cpu")]
    device: BenchDevice,
    /// Keep subnormal floats (each side's default) instead of flushing them to zero on both
    /// sides. By default both flush: on Intel CPUs PyTorch's matmuls run ~10x slower on the
    /// subnormals a training step makes (flex's do not), which is not a comparison of the
    /// two implementations.
    #[arg(long)]
    keep_denormals: bool,
    /// Which works to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "train,sample,ctrl,curve"
    )]
    works: Vec<WorkKind>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench/bench.json")]
    out: PathBuf,
    /// Run the benchmark binaries (`policy_bench`, `ctrl_bench`, `curve`) found in this folder
    /// instead of building them: for a machine without Rust (the GPU machine; see
    /// `scripts/device/pack.sh`).
    #[arg(long)]
    prebuilt: Option<PathBuf>,
    /// The Python that runs the peer side, with its packages already installed, instead of the
    /// project's virtual environment.
    #[arg(long)]
    python: Option<PathBuf>,
}

/// One work: how to run each side.
struct Work {
    name: &'static str,
    ours: Vec<String>,
    peer: Vec<String>,
}

/// The timings of one side of one work, over all rounds.
#[derive(Default)]
struct Side {
    label: String,
    seconds: Vec<f64>,
    units: f64,
    unit: String,
    extra: serde_json::Map<String, Value>,
    /// CPU seconds the side's processes spent over their timed runs, all threads.
    cpu_seconds: f64,
    /// The wall-clock seconds of the timed runs that reported their CPU time.
    cpu_wall_seconds: f64,
}

impl Side {
    /// How many cores the timed runs kept busy on average (CPU time over wall time).
    fn cores_busy(&self) -> Option<f64> {
        (self.cpu_wall_seconds > 0.0).then(|| self.cpu_seconds / self.cpu_wall_seconds)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        0.5 * (sorted[middle - 1] + sorted[middle])
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The Python packages of the peer side, pinned (PyPI's torch wheel; the CPU-only index is not
/// reachable from every machine, and PyPI's wheel runs on the CPU as well).
const PEER_PACKAGES: &[&str] = &[
    "torch==2.9.1",
    "tokenizers==0.22.1",
    "vaderSentiment==3.3.2",
];

/// Run one side once; its last stdout line is its JSON record.
fn run_side(command: &[String], threads: usize, root: &Path) -> Result<Value> {
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .current_dir(root)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string());
    let output = process
        .output()
        .with_context(|| format!("could not start `{}`", describe(&process)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            describe(&process),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with('{'))
        .with_context(|| format!("`{}` printed no JSON record", describe(&process)))?;
    serde_json::from_str(line)
        .with_context(|| format!("`{}` printed a bad record: {line}", describe(&process)))
}

fn add_record(side: &mut Side, record: &Value) -> Result<()> {
    let seconds = record["seconds"]
        .as_array()
        .context("a record without `seconds`")?
        .iter()
        .map(|v| v.as_f64().context("a non-numeric time"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(cpu) = record.get("cpu_s").and_then(Value::as_f64) {
        side.cpu_seconds += cpu;
        side.cpu_wall_seconds += seconds.iter().sum::<f64>();
    }
    side.seconds.extend(seconds);
    side.units = record["units"]
        .as_f64()
        .context("a record without `units`")?;
    side.unit = record["unit"].as_str().unwrap_or("units").to_string();
    side.label = record["side"].as_str().unwrap_or("?").to_string();
    for key in ["mean_reply_tokens", "gpu", "device", "check_max_gap_nats"] {
        if let Some(value) = record.get(key) {
            match (side.extra.get_mut(key), value) {
                (Some(Value::Array(kept)), Value::Array(more)) => kept.extend(more.clone()),
                _ => {
                    side.extra.insert(key.to_string(), value.clone());
                }
            }
        }
    }
    Ok(())
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn gpu_names() -> Option<String> {
    let output = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
        .ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .replace('\n', "; ")
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let root = repo_root();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    anyhow::ensure!(
        args.rounds > 0 && args.repeats > 0,
        "--rounds and --repeats must be at least 1"
    );
    let gpu = match args.device {
        BenchDevice::Gpu => Some(gpu_names().context(
            "--device gpu: nvidia-smi finds no NVIDIA GPU here (the GPU side pairs burn wgpu \
             on Vulkan with PyTorch on CUDA)",
        )?),
        BenchDevice::Cpu => None,
    };

    let python = match &args.python {
        Some(python) => python.clone(),
        None => {
            eprintln!("xtask: == the peer side: Python packages ==");
            setup::python_with(&root, PEER_PACKAGES)?
        }
    };

    let examples = match &args.prebuilt {
        Some(folder) => folder.clone(),
        None => {
            build_examples(&root)?;
            target_dir(&root).join("release/examples")
        }
    };
    let example = |name: &str| examples.join(name).display().to_string();
    let bundle = root.join("static/default-model");
    let work_dir = target_dir(&root).join("bench/ctrl");
    if args.works.contains(&WorkKind::Ctrl) {
        eprintln!("xtask: == the CTRL work: reference tables and exported weights ==");
        run_command(
            Command::new(example("ctrl_bench"))
                .current_dir(&root)
                .arg("--bundle")
                .arg(&bundle)
                .arg("--prepare")
                .arg(&work_dir),
        )?;
    }

    let (burn_device, torch_device) = match args.device {
        BenchDevice::Cpu => ("cpu", "cpu"),
        BenchDevice::Gpu => ("wgpu", "cuda"),
    };
    let repeats = args.repeats.to_string();
    let flush = !args.keep_denormals;
    let flush_flag = |mut command: Vec<String>| {
        if flush {
            command.push("--flush-denormals".into());
        }
        command
    };
    let peer = |work: WorkKind| -> Vec<String> {
        let mut command = vec![
            python.display().to_string(),
            root.join("scripts/bench_peer.py").display().to_string(),
            work.peer_name().to_string(),
            "--repeats".into(),
            repeats.clone(),
            "--threads".into(),
            threads.to_string(),
            "--device".into(),
            torch_device.into(),
        ];
        if work == WorkKind::Ctrl {
            command.extend([
                "--work".into(),
                work_dir.display().to_string(),
                "--tokenizer".into(),
                bundle.join("tokenizer.json").display().to_string(),
            ]);
        }
        flush_flag(command)
    };
    let policy_bench = |only: &str| -> Vec<String> {
        flush_flag(
            [
                &example("policy_bench"),
                "--device",
                burn_device,
                "--work",
                only,
                "--repeats",
                &repeats,
                "--json",
            ]
            .map(String::from)
            .to_vec(),
        )
    };
    let works: Vec<Work> = args
        .works
        .iter()
        .map(|&kind| match kind {
            WorkKind::Train => Work {
                name: "train step",
                ours: policy_bench("train"),
                peer: peer(kind),
            },
            WorkKind::Sample => Work {
                name: "sample (KV cache)",
                ours: policy_bench("cached"),
                peer: peer(kind),
            },
            WorkKind::Ctrl => Work {
                name: "ctrl step",
                ours: flush_flag(vec![
                    example("ctrl_bench"),
                    "--bundle".into(),
                    bundle.display().to_string(),
                    "--work".into(),
                    work_dir.display().to_string(),
                    "--device".into(),
                    burn_device.into(),
                    "--repeats".into(),
                    repeats.clone(),
                    "--json".into(),
                ]),
                peer: peer(kind),
            },
            WorkKind::Curve => Work {
                name: "win-rate curve",
                ours: vec![example("curve"), "--repeats".into(), repeats.clone()],
                peer: peer(kind),
            },
        })
        .collect();

    let mut results: Vec<(Side, Side)> = works.iter().map(|_| Default::default()).collect();
    for round in 0..args.rounds {
        for (work, (ours, theirs)) in works.iter().zip(results.iter_mut()) {
            eprintln!(
                "xtask: round {} of {}: {} ({})",
                round + 1,
                args.rounds,
                work.name,
                if round % 2 == 0 {
                    "ours first"
                } else {
                    "peer first"
                }
            );
            if round % 2 == 0 {
                add_record(ours, &run_side(&work.ours, threads, &root)?)?;
                add_record(theirs, &run_side(&work.peer, threads, &root)?)?;
            } else {
                add_record(theirs, &run_side(&work.peer, threads, &root)?)?;
                add_record(ours, &run_side(&work.ours, threads, &root)?)?;
            }
        }
    }

    let machine = format!(
        "{} ({threads} threads, subnormals {}){}",
        cpu_name(),
        if flush { "flushed to zero" } else { "kept" },
        gpu.as_ref()
            .map(|g| format!(", GPU {g}"))
            .unwrap_or_default()
    );
    println!();
    println!(
        "machine: {machine}; {} rounds x {} runs per side",
        args.rounds, args.repeats
    );
    println!(
        "| work | ours | median (spread) | peer | median (spread) | ours / peer throughput \
         | cores busy, ours / peer |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (work, (ours, theirs)) in works.iter().zip(&results) {
        let (m_ours, m_peer) = (median(&ours.seconds), median(&theirs.seconds));
        let ratio = m_peer / m_ours;
        let cell = |side: &Side, m: f64| {
            let (lo, hi) = spread(&side.seconds);
            let rate = side.units / m;
            format!(
                "{} ({}-{}); {rate:.0} {}/s",
                format_seconds(m),
                format_seconds(lo),
                format_seconds(hi),
                side.unit
            )
        };
        let cores = |side: &Side| {
            side.cores_busy()
                .map_or("-".to_string(), |cores| format!("{cores:.2}"))
        };
        println!(
            "| {} | {} | {} | {} | {} | **{ratio:.2}x** | {} / {} |",
            work.name,
            ours.label,
            cell(ours, m_ours),
            theirs.label,
            cell(theirs, m_peer),
            cores(ours),
            cores(theirs)
        );
        let side_json = |side: &Side, m: f64| {
            let (lo, hi) = spread(&side.seconds);
            json!({
                "side": side.label, "median_s": m, "min_s": lo, "max_s": hi,
                "seconds": side.seconds, "units": side.units, "unit": side.unit,
                "per_second": side.units / m, "extra": side.extra,
                "cores_busy": side.cores_busy(),
            })
        };
        rows.push(json!({
            "work": work.name,
            "ours": side_json(ours, m_ours),
            "peer": side_json(theirs, m_peer),
            "throughput_ratio_ours_over_peer": ratio,
        }));
    }
    println!(
        "(ratio > 1: ours is faster; {} s in all)",
        started.elapsed().as_secs()
    );
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let report = json!({
        "machine": machine,
        "threads": threads,
        "flush_denormals": flush,
        "device": burn_device,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "results": rows,
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// Release builds of the benchmark binaries (ours: the policy, CTRL and curve examples).
fn build_examples(root: &Path) -> Result<()> {
    eprintln!("xtask: == our side: release builds of the benchmark examples ==");
    run_command(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "infalign-model",
        "--example",
        "policy_bench",
        "--example",
        "ctrl_bench",
        "-p",
        "infalign-core",
        "--example",
        "curve",
    ]))
}

fn format_seconds(seconds: f64) -> String {
    if seconds < 0.1 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{seconds:.3} s")
    }
}

//! `infalign data`: obtain the chitchat corpus and turn it into dialogue text and prompt sets.
//!
//! Layout of the output directory:
//!
//! ```text
//! dialogues-{train,validation,test}.jsonl   {"id", "turns", "text"} per line; text in the Human:/Assistant: form
//! prompts-{train,validation,test}.jsonl     {"id", "prompt"} per line, ending with "\n\nAssistant:"
//! data.json                                 where the corpus came from, counts per split, skips
//! ```

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use infalign_model::data::{chitchat, fixture, Split};
use serde_json::json;

use crate::files::write_atomic;

/// The package index to look the wheel up in (the PEP 691 simple API that pip uses).
const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Download the chitchat corpus from PyPI (checked by sha256) and prepare it.
    Fetch(FetchArgs),
    /// Prepare an already extracted chitchat `dataset.json` (or a generated fixture).
    Prepare(PrepareArgs),
    /// Write a small generated corpus in the chitchat format (for tests and offline use).
    Fixture(FixtureArgs),
    /// Split the distinct opening requests of an HH-RLHF file into prompt sets
    /// (`PREFIX-prompts-{train,validation,test}.jsonl`, split by a hash of the text).
    HhPrompts(HhPromptsArgs),
}

#[derive(Debug, Args)]
struct HhPromptsArgs {
    /// An HH-RLHF preference file (`.jsonl` or `.jsonl.gz`).
    #[arg(long)]
    pairs: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "data")]
    out: PathBuf,
    /// File name prefix, e.g. `harmless` for `harmless-prompts-train.jsonl`.
    #[arg(long, default_value = "hh")]
    prefix: String,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// Output directory.
    #[arg(long, default_value = "data")]
    out: PathBuf,
    /// Use this wheel file instead of downloading it (it is still checked by sha256).
    #[arg(long)]
    wheel: Option<PathBuf>,
    /// Package index (PEP 691 simple API) to download from; a mirror works too.
    #[arg(long, env = "PIP_INDEX_URL", default_value = DEFAULT_INDEX_URL)]
    index_url: String,
}

#[derive(Debug, Args)]
struct PrepareArgs {
    /// A chitchat `dataset.json`.
    #[arg(long)]
    dataset_json: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "data")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct FixtureArgs {
    /// The `dataset.json` to write.
    #[arg(long)]
    out: PathBuf,
    /// Number of conversations.
    #[arg(long, default_value_t = 200)]
    conversations: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Prepare(args) => {
            let bytes = std::fs::read(&args.dataset_json)
                .with_context(|| format!("reading {}", args.dataset_json.display()))?;
            let origin = args.dataset_json.display().to_string();
            prepare(&bytes, &origin, &args.out, json!({"dataset_json": origin}))
        }
        DataCommand::HhPrompts(args) => hh_prompts(args),
        DataCommand::Fixture(args) => {
            if args.conversations == 0 {
                bail!("--conversations must be at least 1");
            }
            write_atomic(
                &args.out,
                fixture::chitchat_json(args.conversations, args.seed).as_bytes(),
            )?;
            eprintln!(
                "data: wrote {} generated conversations to {}",
                args.conversations,
                args.out.display()
            );
            Ok(())
        }
    }
}

fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    // Every branch hands over a wheel whose sha256 has been checked, once.
    let (wheel, origin) = match &args.wheel {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let origin = path.display().to_string();
            chitchat::verify_wheel(&bytes, &origin)?;
            (bytes, origin)
        }
        None => {
            let cached = args.out.join("download").join(chitchat::WHEEL_NAME);
            match std::fs::read(&cached) {
                Ok(bytes) if chitchat::verify_wheel(&bytes, "").is_ok() => {
                    eprintln!(
                        "data: using the wheel already downloaded at {}",
                        cached.display()
                    );
                    (bytes, cached.display().to_string())
                }
                _ => {
                    let bytes = download_wheel(&args.index_url)?;
                    chitchat::verify_wheel(&bytes, chitchat::WHEEL_NAME)?;
                    write_atomic(&cached, &bytes)?;
                    (bytes, cached.display().to_string())
                }
            }
        }
    };
    let dataset = extract(&wheel, &origin)?;
    prepare(
        &dataset,
        &format!("{origin}:{}", chitchat::DATASET_PATH_IN_WHEEL),
        &args.out,
        json!({
            "package": "chitchat-dataset==0.9.0",
            "wheel": chitchat::WHEEL_NAME,
            "sha256": chitchat::WHEEL_SHA256,
            "licence": "MIT",
        }),
    )
}

/// An HTTP client that trusts the operating system's certificate store (and `SSL_CERT_FILE`),
/// so downloads also work behind a company proxy with its own certificate authority.
fn http_agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .new_agent()
}

/// Find the wheel's address in the package index and download it with a progress bar.
fn download_wheel(index_url: &str) -> anyhow::Result<Vec<u8>> {
    let project_url = format!("{}/chitchat-dataset/", index_url.trim_end_matches('/'));
    eprintln!("data: looking up {} in {project_url}", chitchat::WHEEL_NAME);
    let agent = http_agent();
    let project: serde_json::Value = serde_json::from_str(
        &agent
            .get(&project_url)
            .header("Accept", "application/vnd.pypi.simple.v1+json")
            .call()
            .with_context(|| format!("GET {project_url}"))?
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading {project_url}"))?,
    )
    .with_context(|| format!("{project_url} did not answer in the simple JSON API (PEP 691)"))?;
    let url = project["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|file| file["filename"] == chitchat::WHEEL_NAME)
        .and_then(|file| file["url"].as_str())
        .with_context(|| format!("{project_url} lists no {}", chitchat::WHEEL_NAME))?;
    // PEP 691 allows addresses relative to the project page.
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("{project_url}{}", url.trim_start_matches("./"))
    };
    let response = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message("download");
    let mut bytes = Vec::with_capacity(length.unwrap_or(0) as usize);
    bar.wrap_read(response.into_body().into_reader())
        .read_to_end(&mut bytes)
        .with_context(|| format!("downloading {url}"))?;
    bar.finish_and_clear();
    eprintln!(
        "data: downloaded {} ({} bytes)",
        chitchat::WHEEL_NAME,
        bytes.len()
    );
    Ok(bytes)
}

/// The corpus file inside the wheel.
fn extract(wheel: &[u8], origin: &str) -> anyhow::Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(wheel))
        .with_context(|| format!("{origin} is not a zip archive"))?;
    let mut entry = archive
        .by_name(chitchat::DATASET_PATH_IN_WHEEL)
        .with_context(|| format!("{origin} has no {}", chitchat::DATASET_PATH_IN_WHEEL))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).with_context(|| {
        format!(
            "extracting {} from {origin}",
            chitchat::DATASET_PATH_IN_WHEEL
        )
    })?;
    Ok(bytes)
}

/// Write the distinct first human turns of an HH-RLHF file as three prompt sets. A message's
/// split depends on its text alone, so the same request never lands in two sets.
fn hh_prompts(args: HhPromptsArgs) -> anyhow::Result<()> {
    use infalign_model::data::dialogue::{ASSISTANT_CUE, HUMAN_PREFIX};
    let messages = infalign_model::ctrl::prompts::read_prompts(&args.pairs, usize::MAX)?;
    for split in Split::ALL {
        let lines: String = messages
            .iter()
            .enumerate()
            .filter(|(_, message)| Split::of(message) == split)
            .map(|(index, message)| {
                let prompt = format!("{HUMAN_PREFIX}{message}{ASSISTANT_CUE}");
                format!(
                    "{}\n",
                    json!({"id": format!("hh-{index}"), "prompt": prompt})
                )
            })
            .collect();
        let count = lines.lines().count();
        let path = args
            .out
            .join(format!("{}-prompts-{split}.jsonl", args.prefix));
        write_atomic(&path, lines.as_bytes())?;
        eprintln!("data: {split:<10} {count:>6} prompts -> {}", path.display());
    }
    Ok(())
}

/// Convert, split and write the corpus; print a summary.
fn prepare(
    dataset_json: &[u8],
    origin: &str,
    out: &Path,
    source: serde_json::Value,
) -> anyhow::Result<()> {
    let corpus = chitchat::parse(dataset_json, origin)?;
    let mut summary = serde_json::Map::new();
    for split in Split::ALL {
        let mut dialogues = String::new();
        let mut prompts = String::new();
        let (mut dialogue_count, mut prompt_count, mut characters) = (0usize, 0usize, 0usize);
        for dialogue in corpus
            .dialogues
            .iter()
            .filter(|d| Split::of(&d.id) == split)
        {
            let text = dialogue.to_text();
            characters += text.chars().count();
            dialogues.push_str(
                &json!({"id": dialogue.id, "turns": dialogue.turns, "text": text}).to_string(),
            );
            dialogues.push('\n');
            dialogue_count += 1;
            if let Some(prompt) = dialogue.first_prompt() {
                prompts.push_str(&json!({"id": dialogue.id, "prompt": prompt}).to_string());
                prompts.push('\n');
                prompt_count += 1;
            }
        }
        write_atomic(
            &out.join(format!("dialogues-{split}.jsonl")),
            dialogues.as_bytes(),
        )?;
        write_atomic(
            &out.join(format!("prompts-{split}.jsonl")),
            prompts.as_bytes(),
        )?;
        eprintln!(
            "data: {split:<10} {dialogue_count:>6} dialogues, {prompt_count:>6} prompts, {characters:>10} characters"
        );
        summary.insert(
            split.name().into(),
            json!({"dialogues": dialogue_count, "prompts": prompt_count, "characters": characters}),
        );
    }
    let skipped = &corpus.skipped;
    if skipped.more_than_two_senders + skipped.too_short > 0 {
        eprintln!(
            "data: skipped {} conversations with more than two senders and {} with fewer than two turns",
            skipped.more_than_two_senders, skipped.too_short
        );
    }
    let manifest = json!({
        "format": 1,
        "source": source,
        "splits": summary,
        "skipped": skipped,
    });
    write_atomic(
        &out.join("data.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    eprintln!("data: wrote {}", out.display());
    Ok(())
}

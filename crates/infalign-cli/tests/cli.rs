//! The `infalign` binary end to end: help, version, the two stable JSON forms of `theory`, the
//! plots it writes, and a clear error (never a panic) on a bad transform spec.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn infalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infalign"))
        .args(args)
        .output()
        .expect("the infalign binary starts")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "infalign failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infalign-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn help_lists_the_subcommands() {
    let help = stdout_of(&infalign(&["--help"]));
    assert!(help.contains("Usage: infalign"), "{help}");
    for subcommand in [
        "data",
        "tokenizer",
        "pretrain",
        "reward",
        "sample",
        "safetensors",
        "theory",
        "backend",
        "calibrate",
        "ctrl",
        "eval",
        "sweep",
        "export",
        "candidates",
    ] {
        assert!(
            help.contains(subcommand),
            "`{subcommand}` missing from:\n{help}"
        );
    }
}

#[test]
fn version_is_the_package_version() {
    let version = stdout_of(&infalign(&["--version"]));
    assert_eq!(
        version.trim(),
        format!("infalign {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn theory_point_json_matches_the_identity_closed_form() {
    // Identity transform, lambda = 1: p(u) = e^u / (e - 1) on [0, 1], so
    // E[U] = 1 / (1 - e^-1) - 1 and KL = ln(1 / (e - 1)) + E[U].
    let out = stdout_of(&infalign(&[
        "theory",
        "point",
        "--transform",
        "identity",
        "--lambda",
        "1",
        "--n",
        "1",
        "--json",
    ]));
    let point: Value = serde_json::from_str(&out).expect("one JSON object");
    let e = std::f64::consts::E;
    let expected_u = 1.0 / (1.0 - 1.0 / e) - 1.0;
    let kl = (1.0 / (e - 1.0)).ln() + expected_u;
    let get = |path: &[&str]| {
        path.iter()
            .fold(&point, |value, key| &value[*key])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} is not a number in {out}"))
    };
    assert!((get(&["kl"]) - kl).abs() < 1e-6, "{out}");
    assert!((get(&["expected_u"]) - expected_u).abs() < 1e-6, "{out}");
    // Against a uniform reference the standard win rate is E[U], and BoN_1 / WoN_1 are standard.
    for key in ["standard", "bon", "won"] {
        assert!(
            (get(&["win_rate", key]) - expected_u).abs() < 1e-6,
            "{key}: {out}"
        );
    }
}

#[test]
fn theory_table_json_has_the_documented_rows_and_writes_plots() {
    let dir = scratch_dir("table");
    let out = stdout_of(&infalign(&[
        "theory",
        "--n",
        "2",
        "--kl",
        "0.5",
        "--json",
        "--out-dir",
        dir.to_str().unwrap(),
    ]));
    let rows: Vec<Value> = serde_json::from_str(&out).expect("a JSON array of rows");
    assert_eq!(
        rows.len(),
        2 * 5,
        "two procedures x five transforms:\n{out}"
    );
    for procedure in ["bon", "won"] {
        let of = |transform: &str| {
            rows.iter()
                .find(|row| row["procedure"] == procedure && row["transform"] == transform)
                .unwrap_or_else(|| panic!("no {procedure}/{transform} row in {out}"))
        };
        for transform in ["identity", "log", "exp", "negexp", "optimal"] {
            let row = of(transform);
            assert_eq!(row["n"], 2, "{row}");
            assert_eq!(row["kl"], 0.5, "{row}");
            let win_rate = row["win_rate"].as_f64().expect("win_rate is a number");
            assert!((0.0..=1.0).contains(&win_rate), "{row}");
            match transform {
                "identity" | "log" | "optimal" => assert!(row["t"].is_null(), "{row}"),
                _ => assert!(row["t"].as_f64().is_some_and(|t| t > 0.0), "{row}"),
            }
        }
        // The optimal transform is the envelope: nothing beats it at the same KL.
        let best = of("optimal")["win_rate"].as_f64().unwrap();
        for transform in ["identity", "log", "exp", "negexp"] {
            let other = of(transform)["win_rate"].as_f64().unwrap();
            assert!(
                other <= best + 1e-6,
                "{procedure}: {transform} {other} > optimal {best}"
            );
        }
    }
    let svgs: Vec<_> = std::fs::read_dir(&dir)
        .expect("the output directory exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "svg"))
        .collect();
    assert!(!svgs.is_empty(), "no SVG plots in {}", dir.display());
    for svg in &svgs {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(
            text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{}",
            svg.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_transform_spec_is_a_clear_error_not_a_panic() {
    let output = infalign(&["theory", "point", "--transform", "exp:abc", "--lambda", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exp:abc"),
        "the error should name the value: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn data_prepare_splits_a_generated_corpus_deterministically() {
    let dir = scratch_dir("data");
    let dataset = dir.join("dataset.json");
    let dataset_arg = dataset.to_str().unwrap();
    stdout_of(&infalign(&[
        "data",
        "fixture",
        "--out",
        dataset_arg,
        "--conversations",
        "300",
        "--seed",
        "3",
    ]));
    let prepare = |out: &PathBuf| {
        stdout_of(&infalign(&[
            "data",
            "prepare",
            "--dataset-json",
            dataset_arg,
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let first = dir.join("first");
    let second = dir.join("second");
    prepare(&first);
    prepare(&second);

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("data.json")).unwrap()).unwrap();
    let mut total = 0;
    let mut ids = std::collections::HashSet::new();
    for split in ["train", "validation", "test"] {
        let dialogues =
            std::fs::read_to_string(first.join(format!("dialogues-{split}.jsonl"))).unwrap();
        let prompts =
            std::fs::read_to_string(first.join(format!("prompts-{split}.jsonl"))).unwrap();
        for line in dialogues.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let text = record["text"].as_str().unwrap();
            assert!(
                text.starts_with("\n\nHuman: ") && text.contains("\n\nAssistant: "),
                "{text:?}"
            );
            assert!(
                ids.insert(record["id"].as_str().unwrap().to_string()),
                "an id in two splits"
            );
        }
        for line in prompts.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            assert!(
                record["prompt"]
                    .as_str()
                    .unwrap()
                    .ends_with("\n\nAssistant:"),
                "{line}"
            );
        }
        let count = dialogues.lines().count();
        assert_eq!(manifest["splits"][split]["dialogues"], count, "{manifest}");
        assert_eq!(
            manifest["splits"][split]["prompts"],
            prompts.lines().count()
        );
        total += count;
        // Same input, same files, byte for byte.
        for name in [
            format!("dialogues-{split}.jsonl"),
            format!("prompts-{split}.jsonl"),
        ] {
            assert_eq!(
                std::fs::read(first.join(&name)).unwrap(),
                std::fs::read(second.join(&name)).unwrap(),
                "{name} differs between two runs"
            );
        }
    }
    assert_eq!(total, 300);
    let train = manifest["splits"]["train"]["dialogues"].as_u64().unwrap();
    assert!(
        train > 240,
        "about 90 % should be training data: {manifest}"
    );

    // The tokenizer trains on the prepared training split and writes a loadable tokenizer.json.
    let tokenizer_path = dir.join("tokenizer.json");
    stdout_of(&infalign(&[
        "tokenizer",
        "train",
        "--data",
        first.to_str().unwrap(),
        "--vocab-size",
        "400",
        "--out",
        tokenizer_path.to_str().unwrap(),
    ]));
    let tokenizer = infalign_model::tokenizer::DialogueTokenizer::from_bytes(
        &std::fs::read(&tokenizer_path).unwrap(),
        "tokenizer.json",
    )
    .unwrap();
    assert!(tokenizer.vocab_size() <= 400);
    let sample = "\n\nHuman: do you like hiking?\n\nAssistant:";
    let ids = tokenizer.encode(sample).unwrap();
    assert!(ids.len() < sample.len() / 2, "{ids:?}");
    assert_eq!(tokenizer.decode(&ids).unwrap(), sample);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_errors_name_the_file_at_fault() {
    let dir = scratch_dir("data-errors");
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"x\": {\"messages\": 1}}").unwrap();
    let output = infalign(&[
        "data",
        "prepare",
        "--dataset-json",
        broken.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let wheel = dir.join("fake.whl");
    std::fs::write(&wheel, "not the wheel").unwrap();
    let output = infalign(&[
        "data",
        "fetch",
        "--wheel",
        wheel.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fake.whl") && stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(
        !dir.join("out").join("data.json").exists(),
        "nothing written on a bad wheel"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn theory_plots_large_n_where_some_curves_stop_short_of_the_range() {
    // At N = 32 the best negexp for WoN has t near 70: nearly flat at the top, it never reaches
    // the plots' 2 nats. The plot must draw it as far as it goes rather than fail.
    let dir = scratch_dir("table-n32");
    stdout_of(&infalign(&[
        "theory",
        "--n",
        "32",
        "--kl",
        "1",
        "--out-dir",
        dir.to_str().unwrap(),
    ]));
    for name in [
        "winrate-vs-kl-n32.svg",
        "transform-shapes.svg",
        "theory-table.md",
    ] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A generated corpus prepared into `dir/data`, and a tokenizer trained on it; returns their
/// paths.
fn fixture_data(dir: &Path) -> (String, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let dataset = path("dataset.json");
    let data = path("data");
    let tokenizer = path("tokenizer.json");
    stdout_of(&infalign(&[
        "data",
        "fixture",
        "--out",
        &dataset,
        "--conversations",
        "200",
        "--seed",
        "4",
    ]));
    stdout_of(&infalign(&[
        "data",
        "prepare",
        "--dataset-json",
        &dataset,
        "--out",
        &data,
    ]));
    stdout_of(&infalign(&[
        "tokenizer",
        "train",
        "--data",
        &data,
        "--vocab-size",
        "320",
        "--out",
        &tokenizer,
    ]));
    (data, tokenizer)
}

/// `infalign pretrain` of a tiny policy into `run`, with `extra` flags.
fn tiny_pretrain(data: &str, tokenizer: &str, run: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "pretrain",
        "--data",
        data,
        "--tokenizer",
        tokenizer,
        "--out",
        run,
        "--device",
        "cpu",
        "--d-model",
        "32",
        "--layers",
        "1",
        "--context",
        "32",
        "--batch-size",
        "4",
        "--eval-every",
        "3",
        "--checkpoint-every",
        "3",
        "--eval-windows",
        "8",
    ];
    args.extend_from_slice(extra);
    infalign(&args)
}

#[test]
fn pretrain_resume_and_sample_run_end_to_end_on_a_generated_corpus() {
    let dir = scratch_dir("pipeline");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (data, tokenizer) = fixture_data(&dir);
    let run = path("run");
    let pretrain = |extra: &[&str]| tiny_pretrain(&data, &tokenizer, &run, extra);
    // Resuming takes the checkpoint's settings; a finished run resumes straight to its bundle.
    let first = pretrain(&["--steps", "6"]);
    stdout_of(&first);
    let log = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(log.contains("validation loss"), "{log}");
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![3, 6]);
    let resumed = pretrain(&["--resume"]);
    stdout_of(&resumed);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resuming at step 6 of 6"));

    let bundle = path("run/bundle");
    let sample = stdout_of(&infalign(&[
        "sample",
        "--bundle",
        &bundle,
        "--prompt",
        "Hello there, how are you?",
        "--n",
        "3",
        "--max-new-tokens",
        "8",
        "--reference-k",
        "5",
        "--seed",
        "1",
        "--json",
    ]));
    let result: Value = serde_json::from_str(&sample).unwrap();
    let responses = result["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 3);
    let rewards: Vec<f64> = responses
        .iter()
        .map(|r| r["reward"].as_f64().unwrap())
        .collect();
    for response in responses {
        assert!(response["text"].is_string());
        let u = response["calibrated_reward"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&u));
    }
    let best = result["best"].as_u64().unwrap() as usize;
    let worst = result["worst"].as_u64().unwrap() as usize;
    assert!(rewards
        .iter()
        .all(|&r| r <= rewards[best] && r >= rewards[worst]));
    assert!(result["timing"]["tokens"].as_u64().unwrap() >= 3);
    assert!(result["timing"]["seconds"].as_f64().unwrap() > 0.0);

    let missing = infalign(&["sample", "--bundle", &path("nowhere"), "--prompt", "hi"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"));
    let unknown = infalign(&[
        "sample", "--bundle", &bundle, "--prompt", "hi", "--policy", "ctrl-bon",
    ]);
    assert!(!unknown.status.success());
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        message.contains("ctrl-bon") && message.contains("base"),
        "{message}"
    );

    let exported = path("base.safetensors");
    let output = infalign(&["safetensors", "--bundle", &bundle, "--out", &exported]);
    stdout_of(&output);
    let bytes = std::fs::read(&exported).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert!(header["token_embedding"]["shape"].is_array(), "{header}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// HH-format lines where the chosen answer carries a kind word and the rejected one a curt word.
fn planted_hh_lines(count: usize) -> String {
    let kind = ["glad", "happy", "certainly", "welcome"];
    let curt = ["whatever", "nope", "meh", "ugh"];
    let filler = [
        "we", "could", "talk", "about", "tea", "music", "later", "today",
    ];
    (0..count)
        .map(|i| {
            let words = |marker: &str| {
                let mut words: Vec<&str> = (0..5).map(|k| filler[(i * 3 + k * 5) % 8]).collect();
                words.insert(i % 5, marker);
                words.join(" ")
            };
            let prompt = format!("\n\nHuman: topic number {}\n\nAssistant:", i % 23);
            serde_json::json!({
                "chosen": format!("{prompt} {}", words(kind[i % 4])),
                "rejected": format!("{prompt} {}", words(curt[(i / 4) % 4])),
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hh_prompts_split_the_distinct_requests_into_disjoint_sets() {
    let dir = scratch_dir("hh-prompts");
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = dir.join("pairs.jsonl");
    std::fs::write(&pairs, planted_hh_lines(160)).unwrap();
    let split = || {
        let output = infalign(&[
            "data",
            "hh-prompts",
            "--pairs",
            pairs.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--prefix",
            "planted",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        ["train", "validation", "test"].map(|name| {
            std::fs::read_to_string(dir.join(format!("planted-prompts-{name}.jsonl"))).unwrap()
        })
    };
    let first = split();
    let mut prompts = Vec::new();
    for text in &first {
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let prompt = record["prompt"].as_str().unwrap().to_string();
            assert!(
                prompt.starts_with("\n\nHuman: topic number ")
                    && prompt.ends_with("\n\nAssistant:"),
                "{prompt:?}"
            );
            prompts.push(prompt);
        }
    }
    // 160 pairs open with 23 distinct requests; each lands in exactly one set.
    let distinct: std::collections::HashSet<&String> = prompts.iter().collect();
    assert_eq!((prompts.len(), distinct.len()), (23, 23));
    assert!(!first[0].is_empty());
    // The split depends on the text alone: the same input gives the same files.
    assert_eq!(split(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reward_train_cross_validates_saves_and_evaluates() {
    let dir = scratch_dir("reward");
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = dir.join("pairs.jsonl");
    std::fs::write(&pairs, planted_hh_lines(160)).unwrap();
    let pairs = pairs.to_str().unwrap();
    let model = dir.join("rm");
    let model = model.to_str().unwrap();
    let report = stdout_of(&infalign(&[
        "reward",
        "train",
        "--pairs",
        pairs,
        "--out",
        model,
        "--folds",
        "2",
        "--epochs",
        "10",
        "--buckets",
        "4096",
        "--dim",
        "4",
        "--hidden",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
    ]));
    assert!(
        report.contains("held-out pair accuracy") && report.contains("baseline"),
        "{report}"
    );
    assert!(report.contains("gain:"), "{report}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("rm/reward.json")).unwrap()).unwrap();
    let cv = manifest["metrics"]["cv_pair_accuracy"].as_f64().unwrap();
    assert!(cv > 0.8, "cross-validated accuracy {cv}: {report}");

    let spec = format!("learned:{model}");
    let eval = stdout_of(&infalign(&[
        "reward", "eval", "--reward", &spec, "--pairs", pairs,
    ]));
    let accuracy: f64 = eval
        .split("pair accuracy ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {eval:?}"));
    assert!(accuracy > 0.9, "{eval}");
    stdout_of(&infalign(&[
        "reward", "eval", "--reward", "rustrict", "--pairs", pairs,
    ]));

    let missing = infalign(&["reward", "train", "--pairs", "/nonexistent/pairs.jsonl"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/pairs.jsonl"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn metric_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn calibrate_ctrl_kill_resume_and_eval_run_end_to_end() {
    let dir = scratch_dir("ctrl");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (data, tokenizer) = fixture_data(&dir);
    stdout_of(&tiny_pretrain(
        &data,
        &tokenizer,
        &path("base"),
        &["--steps", "3"],
    ));
    let base = path("base/bundle");
    let train_prompts = format!("{data}/prompts-train.jsonl");
    let calibration = path("calibration.json");
    let output = infalign(&[
        "calibrate",
        "--bundle",
        &base,
        "--prompts",
        &train_prompts,
        "--limit",
        "6",
        "--k",
        "6",
        "--max-new-tokens",
        "8",
        "--out",
        &calibration,
    ]);
    stdout_of(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("split-half difference"));
    let set: Value = serde_json::from_str(&std::fs::read_to_string(&calibration).unwrap()).unwrap();
    assert_eq!(set["prompts"].as_array().unwrap().len(), 6);
    assert_eq!(set["settings"]["k"], 6);

    let ctrl = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "ctrl",
            "--bundle",
            &base,
            "--prompts",
            &train_prompts,
            "--limit",
            "6",
            "--calibration",
            &calibration,
            "--transform",
            "exp:4",
            "--m",
            "2",
            "--prompts-per-step",
            "2",
            "--steps",
            "24",
            "--lr",
            "1e-3",
            "--target-kl",
            "0.5",
            "--checkpoint-every",
            "2",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let straight = path("straight");
    stdout_of(&infalign(
        &ctrl(&straight, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));

    // Kill a second run with SIGKILL after its second checkpoint, then resume it.
    let killed = path("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_infalign"))
        .args(ctrl(&killed, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = dir.join("killed/checkpoint/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let step = std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|value| value["step"].as_u64());
        if step.is_some_and(|step| step >= 4) || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("killed/bundle").exists(),
        "the run finished before it could be killed"
    );
    let again = infalign(
        &ctrl(&killed, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        !again.status.success(),
        "a second fresh run into the same directory is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let resumed = infalign(
        &ctrl(&killed, &["--resume"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    stdout_of(&resumed);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resuming at step"));
    let straight_metrics = metric_lines(&dir.join("straight/metrics.jsonl"));
    let resumed_metrics = metric_lines(&dir.join("killed/metrics.jsonl"));
    assert_eq!(straight_metrics.len(), 24);
    assert_eq!(resumed_metrics, straight_metrics);
    let first = &straight_metrics[0];
    for key in [
        "objective/kl",
        "objective/scores",
        "objective/rlhf_reward",
        "infalign/beta",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }

    // The trained policy answers through `sample`, and `eval` measures it against the base.
    let bundle = path("straight/bundle");
    // Two short replies from one of a bundle's policies, as JSON.
    let sample_two = |bundle: &str, policy: &str| {
        stdout_of(&infalign(&[
            "sample",
            "--bundle",
            bundle,
            "--policy",
            policy,
            "--prompt",
            "hi",
            "--n",
            "2",
            "--max-new-tokens",
            "8",
            "--json",
        ]))
    };
    let sample = sample_two(&bundle, "ctrl");
    assert_eq!(
        serde_json::from_str::<Value>(&sample).unwrap()["responses"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let eval_dir = path("eval");
    let table = stdout_of(&infalign(&[
        "eval",
        "--bundle",
        &bundle,
        "--prompts",
        &format!("{data}/prompts-test.jsonl"),
        "--limit",
        "4",
        "--samples",
        "4",
        "--n",
        "2,4",
        "--max-new-tokens",
        "8",
        "--resamples",
        "200",
        "--out",
        &eval_dir,
    ]));
    assert!(
        table.contains("BoN_4") || table.contains("bon_4"),
        "{table}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval/eval.json")).unwrap())
            .unwrap();
    let report = &report["report"];
    assert_eq!(report["prompts"], 4);
    assert_eq!(report["procedures"].as_array().unwrap().len(), 4);
    let standard = report["standard"]["estimate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&standard));

    // A sweep trains and evaluates every method at every beta, then compares them at matched KL;
    // run again, it reuses what is done.
    let sweep_dir = path("sweep");
    let test_prompts = format!("{data}/prompts-test.jsonl");
    let sweep = |out: &str, knobs: &[&str]| {
        let mut args = vec![
            "sweep",
            "--bundle",
            &base,
            "--prompts",
            &train_prompts,
            "--limit",
            "6",
            "--calibration",
            &calibration,
            "--eval-prompts",
            &test_prompts,
            "--eval-limit",
            "3",
            "--methods",
            "raw,exp:4",
            "--steps",
            "3",
            "--m",
            "2",
            "--prompts-per-step",
            "2",
            "--samples",
            "4",
            "--n",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            out,
        ];
        args.extend_from_slice(knobs);
        infalign(&args)
    };
    let betas = ["--betas", "0.05,0.5"];
    let first = sweep(&sweep_dir, &betas);
    let table = stdout_of(&first);
    assert!(
        table.contains("bon_2 win rate") && table.contains("exp:4"),
        "{table}"
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("$ infalign ctrl"));
    for file in [
        "comparison.md",
        "comparison.json",
        "winrate-vs-kl-standard.svg",
        "winrate-vs-kl-bon_2.svg",
        "winrate-vs-calibrated-kl-bon_2.svg",
        "winrate-vs-calibrated-kl-per-prompt-bon_2.svg",
    ] {
        assert!(dir.join("sweep").join(file).exists(), "{file} missing");
    }
    let comparison: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sweep/comparison.json")).unwrap())
            .unwrap();
    assert_eq!(comparison["runs"].as_array().unwrap().len(), 4);
    // Each run's evaluation measured the KL of its calibrated rewards, pooled and per prompt,
    // shown in the runs table with the signal share and both procedures' win rates.
    for run in comparison["runs"].as_array().unwrap() {
        assert!(run["calibrated_kl"]["estimate"].is_f64(), "{run}");
        assert!(run["report"]["calibrated_kl"]["upper"].is_f64(), "{run}");
        assert!(
            run["report"]["calibrated_kl_per_prompt"]["upper"].is_f64(),
            "{run}"
        );
    }
    assert!(
        table.contains("| calibrated KL, pooled | calibrated KL, per prompt | signal share | standard | bon_2 | won_2 |"),
        "{table}"
    );
    let again = sweep(&sweep_dir, &betas);
    assert_eq!(stdout_of(&again), table);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("$ infalign"));

    // With KL budgets instead of betas, runs of different methods at the same budget are also
    // compared pairwise.
    let budget = sweep(
        &path("budget"),
        &[
            "--target-kls",
            "0.3",
            "--kl-control",
            "log",
            "--start-beta",
            "0.2",
        ],
    );
    let table = stdout_of(&budget);
    assert!(
        table.contains("Paired differences") && table.contains("| 0.3 | raw - exp:4 |"),
        "{table}"
    );
    assert!(dir
        .join("budget/runs/exp-4-kl0.3/bundle/manifest.json")
        .exists());
    // The controller and its start reach every run.
    for run in ["raw-kl0.3", "exp-4-kl0.3"] {
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("budget/runs").join(run).join("config.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(config["kl_control"], "log", "{run}: {config}");
        assert_eq!(config["beta"], 0.2, "{run}: {config}");
    }

    // Export: the base policy and aligned variants in one half-precision bundle, each with its
    // training settings, calibration and evaluation; a run without an evaluation is exported
    // with a note.
    let exported = path("exported");
    let export = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "export".to_string(),
            "--base".to_string(),
            base.clone(),
            "--variant".to_string(),
            format!("ctrl-exp={}", path("sweep/runs/exp-4-beta0.05")),
            "--variant".to_string(),
            format!("raw={}", path("sweep/runs/raw-beta0.05")),
            "--variant".to_string(),
            format!("straight={straight}"),
            "--precision".to_string(),
            "f16".to_string(),
            "--out".to_string(),
            out.to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        infalign(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let output = export(&exported, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("straight: "));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exported/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["precision"], "f16");
    let variants = manifest["variants"].as_array().unwrap();
    let names: Vec<&str> = variants
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ctrl-exp", "raw", "straight"]);
    let aligned = &variants[0]["alignment"];
    assert_eq!(aligned["training"]["reward"], "exp:4");
    assert_eq!(aligned["training"]["beta"], 0.05);
    assert_eq!(aligned["calibration"]["k"], 6);
    assert_eq!(aligned["evaluation"]["report"]["prompts"], 3);
    // The evaluation travels as one typed record, not as metric names.
    let procedures = aligned["evaluation"]["report"]["procedures"]
        .as_array()
        .unwrap();
    assert!(procedures
        .iter()
        .any(|p| p["procedure"] == "bon" && p["n"] == 2));
    assert!(variants[0]["metrics"]
        .as_object()
        .unwrap()
        .keys()
        .all(|key| !key.starts_with("eval_")));
    assert_eq!(manifest["format_version"], 4);
    assert!(variants[1]["alignment"]["calibration"].is_null());
    assert!(variants[2]["alignment"]["evaluation"].is_null());
    let sample = sample_two(&exported, "ctrl-exp");
    assert!(serde_json::from_str::<Value>(&sample).is_ok(), "{sample}");
    // Over the size budget nothing is written, and the message says what to do.
    let too_big = export(&path("too-big"), &["--max-mb", "0.01"]);
    assert!(!too_big.status.success());
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("--precision f16"));
    assert!(!dir.join("too-big").exists());
    // Exporting again with fewer variants removes the dropped variant's file.
    let output = infalign(&[
        "export",
        "--base",
        &exported,
        "--variant",
        &format!("ctrl-exp={}", path("sweep/runs/exp-4-beta0.05")),
        "--out",
        &exported,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("exported/policy-ctrl-exp.bpk").exists());
    assert!(!dir.join("exported/policy-raw.bpk").exists());

    // A calibrated transform without a calibration set is a clear error.
    let missing = infalign(&[
        "ctrl",
        "--bundle",
        &base,
        "--prompts",
        &train_prompts,
        "--out",
        &path("none"),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--calibration"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn sample_draws_the_reference_table_calibrate_and_the_browser_draw() {
    // The fixture is written and checked by crates/infalign-model/tests/default_model.rs and
    // checked by the browser test too.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("tests/fixtures/default_reference_table.json"))
            .unwrap(),
    )
    .unwrap();
    let bundle = repository().join("static/default-model");
    let output = stdout_of(&infalign(&[
        "sample",
        "--bundle",
        bundle.to_str().unwrap(),
        "--prompt",
        fixture["prompt"].as_str().unwrap(),
        "--n",
        "2",
        "--reward",
        "vader",
        "--reference-k",
        &fixture["k"].to_string(),
        "--seed",
        &fixture["seed"].to_string(),
        "--json",
    ]));
    let result: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(result["reference_rewards"], fixture["rewards"]);
}

#[test]
fn a_transform_spec_means_one_function_in_every_command() {
    // `exp:2` is e^(2u) for `infalign theory point` as for `infalign ctrl`: the same policy as
    // normexp:2 at lambda (e^2 - 1) and not the one at lambda 1.
    let point = |spec: &str, lambda: f64| -> Value {
        serde_json::from_str(&stdout_of(&infalign(&[
            "theory",
            "point",
            "--transform",
            spec,
            "--lambda",
            &lambda.to_string(),
            "--n",
            "4",
            "--json",
        ])))
        .unwrap()
    };
    let plain = point("exp:2", 1.0)["kl"].as_f64().unwrap();
    let rescaled = point("normexp:2", 2f64.exp_m1())["kl"].as_f64().unwrap();
    let normalised = point("normexp:2", 1.0)["kl"].as_f64().unwrap();
    assert!((plain - rescaled).abs() < 1e-9, "{plain} vs {rescaled}");
    assert!((plain - normalised).abs() > 1e-3, "{plain} vs {normalised}");
}

#[test]
fn candidates_collect_resume_exact_and_train() {
    let dir = scratch_dir("candidates");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let prompts = path("prompts.jsonl");
    std::fs::write(
        &prompts,
        [
            "Do you have any pets?",
            "What did you do today?",
            "Any plans for the weekend?",
        ]
        .iter()
        .map(|message| {
            serde_json::json!({"prompt": format!("\n\nHuman: {message}\n\nAssistant:")}).to_string()
                + "\n"
        })
        .collect::<String>(),
    )
    .unwrap();
    let bundle = repository().join("static/default-model");
    let collection = path("collection.jsonl");
    // `collect LIMIT OUT EXTRA...` with the small settings of this test.
    let collect = |limit: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "candidates",
            "collect",
            "--bundle",
            bundle.to_str().unwrap(),
            "--prompts",
            &prompts,
            "--limit",
            limit,
            "--c",
            "6",
            "--k",
            "4",
            "--max-new-tokens",
            "8",
            "--batch",
            "4",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        infalign(&args)
    };
    let first = collect("2", &collection, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let two = std::fs::read_to_string(&collection).unwrap();
    assert_eq!(two.lines().count(), 3, "a header and two prompts");
    // A collection killed while writing its third prompt: the cut line is dropped, the rest kept.
    let cut = format!("{two}{{\"index\": 2, \"key\": \"00");
    std::fs::write(&collection, cut).unwrap();
    let resumed = collect("3", &collection, &[]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("2 of 3 prompts already collected"),
        "{stderr}"
    );
    let three = std::fs::read_to_string(&collection).unwrap();
    assert!(
        three.starts_with(&two),
        "the first two prompts were kept as they were"
    );
    assert_eq!(three.lines().count(), 4);
    // The same settings from scratch give the same file: resuming lost nothing and redid
    // nothing differently.
    let fresh = path("fresh.jsonl");
    let again = collect("3", &fresh, &[]);
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), three);
    // Another reward's collection in the same file is refused, naming the file and the field.
    let other = collect("3", &collection, &["--reward", "rustrict"]);
    assert!(!other.status.success());
    let message = String::from_utf8_lossy(&other.stderr);
    assert!(
        message.contains("collection.jsonl") && message.contains("reward"),
        "{message}"
    );
    // A NaN reward in a data file is an error naming the file and line.
    let broken = path("broken.jsonl");
    let mut lines: Vec<String> = three.lines().map(String::from).collect();
    lines[2] = lines[2].replacen("\"candidates\":[", "\"candidates\":[NaN,", 1);
    std::fs::write(&broken, lines.join("\n") + "\n").unwrap();
    let bad = infalign(&[
        "candidates",
        "exact",
        "--data",
        &broken,
        "--out",
        &path("bad"),
    ]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("broken.jsonl:3"), "{message}");

    // Exact optima at matched KL, with the theory beside them.
    let exact_dir = path("exact");
    let gz = format!("{collection}.gz");
    let table = stdout_of(&infalign(&[
        "candidates",
        "exact",
        "--data",
        &gz,
        "--methods",
        "raw,identity,normexp:4",
        "--kls",
        "0.05,0.1",
        "--curve-points",
        "3",
        "--out",
        &exact_dir,
    ]));
    assert!(table.contains("| identity |"), "{table}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exact/exact.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        let kl = row["kl"].as_f64().unwrap();
        assert!((kl - row["budget"].as_f64().unwrap()).abs() < 1e-8, "{row}");
        assert_eq!(row["theory"].is_null(), row["method"] == "raw", "{row}");
    }
    assert!(dir.join("exact/exact-bon_4.svg").exists());

    // Stochastic RLOO, resumed after a stop, gives the uninterrupted run's result.
    let train = |out: &str, s: &str| {
        infalign(&[
            "candidates",
            "train",
            "--data",
            &gz,
            "--method",
            "identity",
            "--beta",
            "0.2",
            "--m",
            "4",
            "--s",
            s,
            "--prompts-per-step",
            "2",
            "--checkpoint-every",
            "1",
            "--out",
            out,
        ])
    };
    let whole = path("whole");
    assert!(train(&whole, "40").status.success());
    let parted = path("parted");
    assert!(train(&parted, "20").status.success());
    let rest = train(&parted, "40");
    assert!(
        rest.status.success(),
        "{}",
        String::from_utf8_lossy(&rest.stderr)
    );
    let result = |dir: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/result.json")).unwrap())
            .unwrap()
    };
    assert_eq!(result(&whole)["win_rate"], result(&parted)["win_rate"]);
    assert!(result(&whole)["kl"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reference_rewards_from_elsewhere_are_checked_sorted_and_summarised() {
    let dir = scratch_dir("from-rewards");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("scored.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"prompt\": \"first\", \"reference_rewards\": [0.5, -1, 0.5, 2], \"model\": \"x\"}\n",
            "\n",
            "{\"prompt\": \"second\", \"reference_rewards\": [3, 1, 2, 0]}\n",
        ),
    )
    .unwrap();
    let out = dir.join("calibration.jsonl");
    let run = infalign(&[
        "calibrate",
        "--from-rewards",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    stdout_of(&run);
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["prompt"], "first");
    assert_eq!(
        lines[0]["reference_rewards"],
        serde_json::json!([-1.0, 0.5, 0.5, 2.0])
    );
    assert_eq!(
        lines[1]["reference_rewards"],
        serde_json::json!([0.0, 1.0, 2.0, 3.0])
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.with_extension("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["prompts"], 2);
    assert_eq!(summary["k"], 4);
    // One tied pair among the 2 x 6 pairs of the two prompts.
    assert!((summary["tie_fraction"].as_f64().unwrap() - 1.0 / 12.0).abs() < 1e-12);

    // A bad line is named, and nothing is written.
    std::fs::write(
        &input,
        "{\"prompt\": \"a\", \"reference_rewards\": [1]}\n{\"prompt\": \"b\", \"reference_rewards\": []}\n",
    )
    .unwrap();
    let bad_out = dir.join("bad.jsonl");
    let run = infalign(&[
        "calibrate",
        "--from-rewards",
        input.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("reference_rewards"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!bad_out.exists());
}

/// W(best of n of `a` beats best of n of `b`) by enumerating every n-subset (ties count half).
fn brute_force_bon(a: &[f64], b: &[f64], n: usize) -> f64 {
    fn subsets(values: &[f64], n: usize) -> Vec<f64> {
        if n == 0 {
            return vec![f64::NEG_INFINITY];
        }
        (0..values.len())
            .flat_map(|i| {
                subsets(&values[i + 1..], n - 1)
                    .into_iter()
                    .map(move |rest| rest.max(values[i]))
            })
            .collect()
    }
    let (sa, sb) = (subsets(a, n), subsets(b, n));
    let mut total = 0.0;
    for x in &sa {
        for y in &sb {
            total += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    total / (sa.len() * sb.len()) as f64
}

#[test]
fn rollouts_scored_elsewhere_evaluate_into_the_same_files() {
    let dir = scratch_dir("scored");
    std::fs::create_dir_all(&dir).unwrap();
    // Per prompt: the policy's rewards, the reference's, the policy replies' log ratios.
    type Row = ([f64; 4], [f64; 4], [f64; 4]);
    let rows: [Row; 2] = [
        (
            [0.9, 0.1, 0.5, 0.7],
            [0.2, 0.4, 0.5, 0.0],
            [0.3, -0.1, 0.2, 0.0],
        ),
        (
            [0.0, 0.3, 0.3, 1.0],
            [0.6, 0.1, 0.3, 0.8],
            [0.1, 0.1, -0.2, 0.4],
        ),
    ];
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (p, r, l))| {
            serde_json::json!({"prompt": format!("prompt {i}"), "policy_rewards": p,
                "reference_rewards": r, "log_ratios": l, "engine": "elsewhere"})
            .to_string()
                + "\n"
        })
        .collect();
    let input = dir.join("scored.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = dir.join("eval");
    let scored = ["eval", "--scored", input.to_str().unwrap(), "--n", "2"];
    let args = [
        &scored[..],
        &["--resamples", "200", "--out", out.to_str().unwrap()],
    ]
    .concat();
    stdout_of(&infalign(&args));
    let eval: Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    let report = &eval["report"];
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
    let standard = mean(&|(p, r, _)| brute_force_bon(p, r, 1));
    let bon2 = mean(&|(p, r, _)| brute_force_bon(p, r, 2));
    let kl = mean(&|(_, _, l)| l.iter().sum::<f64>() / 4.0);
    let close = |value: &Value, want: f64| (value.as_f64().unwrap() - want).abs() < 1e-12;
    assert!(close(&report["standard"]["estimate"], standard), "{report}");
    assert!(close(&report["kl"]["estimate"], kl), "{report}");
    let bon = report["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["procedure"] == "bon" && p["n"] == 2)
        .unwrap();
    assert!(close(&bon["win_rate"]["estimate"], bon2), "{bon}");
    assert!(eval["settings"].get("decoding").is_none(), "{eval}");
    assert_eq!(eval["report"]["samples"], 4);
    for file in ["eval.md", "samples.json", "replies.csv.gz"] {
        assert!(out.join(file).exists(), "{file}");
    }

    // A line whose counts disagree is named; nothing is written.
    std::fs::write(
        &input,
        "{\"prompt\": \"a\", \"policy_rewards\": [1, 2], \"reference_rewards\": [1, 2], \"log_ratios\": [0]}\n",
    )
    .unwrap();
    let bad = dir.join("bad");
    let run = infalign(&[&scored[..], &["--out", bad.to_str().unwrap()]].concat());
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("log_ratios"),
        "{stderr}"
    );
    assert!(!bad.exists());
}

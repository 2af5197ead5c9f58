//! Bundles: a round trip keeps the policy exactly; every broken part is a clear error; the
//! manifest and weight loaders survive arbitrary bytes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use infalign_model::backend::cpu_device;
use infalign_model::bundle::{
    policy_from_burnpack, policy_from_safetensors, policy_to_burnpack, Bundle, Manifest, Precision,
    Provenance, BASE_POLICY, FORMAT_VERSION, MANIFEST_FILE, SAFETENSORS_POLICY_KEY, TOKENIZER_FILE,
    WEIGHTS_FILE,
};
use infalign_model::policy::{generate, Policy, SamplingConfig};
use infalign_model::reward::RewardSpec;
use proptest::prelude::*;

fn written_bundle(name: &str) -> (std::path::PathBuf, Policy) {
    let tokenizer = common::tokenizer();
    let policy = Policy::init(&common::tiny(tokenizer.vocab_size()), 21, &cpu_device()).unwrap();
    let provenance = Provenance {
        created_by: "test".into(),
        seed: 21,
        ..Provenance::default()
    };
    let metrics = BTreeMap::from([("validation_loss".to_string(), 1.5)]);
    let bundle = Bundle::new(
        &policy,
        &tokenizer,
        Some(RewardSpec::Vader),
        provenance,
        metrics,
    )
    .unwrap();
    let dir = common::scratch(name);
    bundle.write_dir(&dir).unwrap();
    (dir, policy)
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn load_error(dir: &Path) -> String {
    match Bundle::read_dir(dir).and_then(|bundle| bundle.policy(&cpu_device())) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn round_trip_keeps_the_policy_and_manifest() {
    let (dir, policy) = written_bundle("round-trip");
    let bundle = Bundle::read_dir(&dir).unwrap();
    assert_eq!(bundle.manifest.policy, policy.config());
    assert_eq!(bundle.manifest.reward, Some(RewardSpec::Vader));
    assert_eq!(bundle.manifest.metrics["validation_loss"], 1.5);
    assert_eq!(bundle.manifest.provenance.seed, 21);
    let loaded = bundle.policy(&cpu_device()).unwrap();
    assert_eq!(common::fingerprint(&loaded), common::fingerprint(&policy));
    // Writing what was read gives the same files.
    let again = common::scratch("round-trip-again");
    bundle.write_dir(&again).unwrap();
    for file in [MANIFEST_FILE, WEIGHTS_FILE, TOKENIZER_FILE] {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
            "{file}"
        );
    }
}

/// The next-token distributions of `policy` at every position of a fixed sequence, row by row.
fn next_token_distributions(policy: &Policy) -> Vec<Vec<f32>> {
    let device = cpu_device();
    let len = policy.config().max_seq_len;
    let vocab = policy.config().vocab_size;
    let ids: Vec<i64> = (0..len as i64)
        .map(|i| (i * 7 + 3) % vocab as i64)
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
    let positions = Tensor::<2, Int>::from_data(
        TensorData::new((0..len as i64).collect::<Vec<_>>(), [1, len]),
        &device,
    );
    let probabilities = softmax(policy.forward(tokens, positions, &[0], None), 2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    probabilities.chunks(vocab).map(<[f32]>::to_vec).collect()
}

/// Sampled replies of `policy` to a fixed set of prompts (temperature 1, no top-k: every
/// probability matters).
fn replies(policy: &Policy, seed: u64) -> Vec<Vec<u32>> {
    let prompts: Vec<Vec<u32>> = (0..32u32).map(|i| vec![1 + i % 7, 2 + i % 5, 3]).collect();
    let config = SamplingConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        max_new_tokens: 24,
        ..SamplingConfig::default()
    };
    pollster::block_on(generate(policy, &prompts, None, &config, seed))
        .unwrap()
        .responses
}

#[test]
fn half_precision_halves_the_weights_and_samples_the_same_way() {
    let (dir, base) = written_bundle("half");
    let device = cpu_device();
    let mut bundle = Bundle::read_dir(&dir).unwrap();
    let aligned = Policy::init(&base.config(), 99, &device).unwrap();
    bundle
        .add_variant("aligned", &aligned, BTreeMap::new(), None)
        .unwrap();
    let full = bundle.total_bytes().unwrap();
    let mut half = bundle.clone();
    half.set_precision(Precision::F16, &device).unwrap();
    half.write_dir(&dir).unwrap();
    let half = Bundle::read_dir(&dir).unwrap();
    assert_eq!(half.manifest.precision, Precision::F16);
    assert_eq!(half.manifest.format_version, FORMAT_VERSION);
    let ratio = half.total_bytes().unwrap() as f64 / full as f64;
    // Weights are almost all of a bundle; the tokenizer and manifest stay as they were.
    assert!(ratio < 0.6, "f16 bundle is {ratio:.2} of the f32 one");

    for name in [BASE_POLICY, "aligned"] {
        let exact = bundle.named_policy(name, &device).unwrap();
        let rounded = half.named_policy(name, &device).unwrap();
        // Token log-probabilities move by the rounding of the weights (2^-11 relative) only.
        let worst = common::fingerprint(&exact)
            .iter()
            .zip(common::fingerprint(&rounded))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst > 0.0 && worst < 5e-3,
            "{name}: log-probabilities moved by {worst}"
        );
        // It samples from the same distributions: at every position the next-token
        // distributions are within 1e-3 in total variation (the chance that one draw differs).
        let tv = next_token_distributions(&exact)
            .iter()
            .zip(next_token_distributions(&rounded))
            .map(|(p, q)| 0.5 * p.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f32>())
            .fold(0.0f32, f32::max);
        assert!(tv < 1e-3, "{name}: total variation {tv}");
        // Draws with the same seed agree token by token until a uniform number falls between
        // two slightly moved boundaries of the cumulative distribution; after that the reply
        // differs. This random tiny policy is near-uniform over its whole vocabulary (the worst
        // case: many boundaries per draw), and still most first tokens agree.
        let (a, b) = (replies(&exact, 0), replies(&rounded, 0));
        let same_first = a.iter().zip(&b).filter(|(x, y)| x[0] == y[0]).count();
        assert!(
            same_first >= 28,
            "{name}: {same_first}/32 first tokens identical"
        );
    }
    // Converting back to f32 keeps the rounded values (it cannot restore the lost digits).
    let mut back = half.clone();
    back.set_precision(Precision::F32, &device).unwrap();
    assert_eq!(
        common::fingerprint(&back.policy(&device).unwrap()),
        common::fingerprint(&half.policy(&device).unwrap())
    );
    // A policy is recognised as the base at the bundle's precision.
    assert_eq!(
        half.base_sha256_of(&base).unwrap(),
        half.manifest.weights.sha256
    );
    assert_ne!(
        half.base_sha256_of(&aligned).unwrap(),
        half.manifest.weights.sha256
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn named_variants_round_trip_and_unknown_names_are_errors() {
    let (dir, base) = written_bundle("variants");
    let mut bundle = Bundle::read_dir(&dir).unwrap();
    let aligned = Policy::init(&base.config(), 99, &cpu_device()).unwrap();
    let metrics = BTreeMap::from([("kl".to_string(), 0.5)]);
    bundle
        .add_variant("ctrl-bon", &aligned, metrics.clone(), None)
        .unwrap();
    bundle.write_dir(&dir).unwrap();

    let loaded = Bundle::read_dir(&dir).unwrap();
    assert_eq!(loaded.policy_names(), vec![BASE_POLICY, "ctrl-bon"]);
    assert_eq!(loaded.manifest.variants[0].metrics, metrics);
    let device = cpu_device();
    assert_eq!(
        common::fingerprint(&loaded.named_policy("ctrl-bon", &device).unwrap()),
        common::fingerprint(&aligned)
    );
    assert_eq!(
        common::fingerprint(&loaded.named_policy(BASE_POLICY, &device).unwrap()),
        common::fingerprint(&base)
    );
    let unknown = loaded
        .named_policy("ctrl-won", &device)
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("ctrl-won") && unknown.contains("base, ctrl-bon"),
        "{unknown}"
    );

    // Names and shapes are checked when adding.
    let mut bundle = loaded.clone();
    for bad in ["base", "Has Space", "", "ctrl-bon"] {
        assert!(
            bundle
                .add_variant(bad, &aligned, BTreeMap::new(), None)
                .is_err(),
            "{bad:?}"
        );
    }
    let mut wider = base.config();
    wider.n_layers += 1;
    let wider = Policy::init(&wider, 1, &device).unwrap();
    let message = bundle
        .add_variant("wider", &wider, BTreeMap::new(), None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("shape"), "{message}");

    // A variant's file is checked like every part.
    std::fs::write(dir.join("policy-ctrl-bon.bpk"), b"not weights").unwrap();
    let message = load_error(&dir);
    assert!(message.contains("policy-ctrl-bon.bpk"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reward_models_are_checked_parts_and_older_layouts_still_load() {
    let (dir, _) = written_bundle("reward-parts");
    let mut bundle = Bundle::read_dir(&dir).unwrap();
    let model = common::repository().join("static/default-model/profanity_check_linear_model.tsv");
    let spec = bundle
        .add_reward_model(&RewardSpec::Linear {
            path: model.clone(),
        })
        .unwrap();
    // The manifest names the file alone, never a path of this machine.
    assert_eq!(spec.to_string(), "linear:profanity_check_linear_model.tsv");
    bundle.manifest.reward = Some(spec.clone());
    bundle.write_dir(&dir).unwrap();
    let files: Vec<String> = bundle
        .manifest
        .reward_models
        .iter()
        .map(|p| p.file.clone())
        .collect();
    assert_eq!(
        files,
        [
            "profanity_check_linear_model.tsv",
            "profanity_check_linear_model.LICENSE"
        ]
    );
    let loaded = Bundle::read_dir(&dir).unwrap();
    let reward = loaded.load_reward(&spec).unwrap();
    let scores = reward
        .score_batch(&["Hi"], &["Thank you, that is kind."])
        .unwrap();
    assert!(scores[0] > 0.5, "{scores:?}");

    // A tampered reward model is refused, and the error names the file.
    let path = dir.join("profanity_check_linear_model.tsv");
    let mut text = std::fs::read(&path).unwrap();
    let last = text.len() - 2;
    text[last] = if text[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, &text).unwrap();
    let message = load_error(&dir);
    assert!(
        message.contains("profanity_check_linear_model.tsv") && message.contains("sha256"),
        "{message}"
    );

    // A version-3 bundle kept its reward model beside it, unlisted, under a machine path; and
    // its `exp:T` meant the normalised transform. It loads, and reads as meant.
    std::fs::copy(&model, &path).unwrap();
    edit_manifest(&dir, |manifest| {
        manifest["format_version"] = 3.into();
        manifest.as_object_mut().unwrap().remove("reward_models");
        manifest["reward"] = serde_json::json!({"kind": "linear", "path": model});
    });
    std::fs::remove_file(dir.join("profanity_check_linear_model.LICENSE")).unwrap();
    let old = Bundle::read_dir(&dir).unwrap();
    assert_eq!(old.manifest.reward, Some(spec.clone()));
    assert!(old.load_reward(&spec).is_ok());
    // Written again it is version 4, the model a checked part; and a variant dropped by a later
    // write loses its weights file.
    let mut rewritten = old.clone();
    let variant = Policy::init(&old.manifest.policy, 5, &cpu_device()).unwrap();
    rewritten
        .add_variant("extra", &variant, BTreeMap::new(), None)
        .unwrap();
    rewritten.write_dir(&dir).unwrap();
    assert!(dir.join("policy-extra.bpk").exists());
    let mut fewer = Bundle::read_dir(&dir).unwrap();
    assert_eq!(fewer.manifest.format_version, FORMAT_VERSION);
    assert_eq!(fewer.manifest.reward_models.len(), 1);
    fewer.clear_variants();
    fewer.write_dir(&dir).unwrap();
    assert!(!dir.join("policy-extra.bpk").exists());
    assert!(dir.join("profanity_check_linear_model.tsv").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn safetensors_export_is_pytorch_shaped_and_loads_back() {
    let (dir, policy) = written_bundle("safetensors");
    let bundle = Bundle::read_dir(&dir).unwrap();
    let bytes = bundle.to_safetensors(BASE_POLICY, &cpu_device()).unwrap();

    // The header, as Python's `safetensors` reads it: 8 bytes of length, then JSON.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let config = policy.config();
    let shape = |name: &str| -> Vec<u64> {
        let entry = &header[name];
        assert_eq!(entry["dtype"], "F32", "{name}: {entry}");
        entry["shape"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is missing from {header}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let (v, d) = (config.vocab_size as u64, config.d_model as u64);
    assert_eq!(shape("token_embedding"), vec![v, d]);
    // PyTorch's nn.Linear layout: [out, in].
    assert_eq!(shape("blocks.0.qkv.weight"), vec![3 * d, d]);
    assert_eq!(shape("blocks.0.mlp_in.weight"), vec![config.d_ff as u64, d]);
    assert_eq!(shape("final_norm.weight"), vec![d]);
    let recorded: infalign_model::PolicyConfig = serde_json::from_str(
        header["__metadata__"][SAFETENSORS_POLICY_KEY]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded, config);

    let loaded = policy_from_safetensors(&config, bytes.clone(), &cpu_device(), "x").unwrap();
    assert_eq!(common::fingerprint(&loaded), common::fingerprint(&policy));

    let mut other = config;
    other.n_layers += 1;
    let message = policy_from_safetensors(&other, bytes, &cpu_device(), "export.safetensors")
        .unwrap_err()
        .to_string();
    assert!(message.contains("export.safetensors"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_bundles_are_clear_errors() {
    let (dir, _) = written_bundle("version");
    edit_manifest(&dir, |m| m["format_version"] = (FORMAT_VERSION + 1).into());
    let message = load_error(&dir);
    assert!(
        message.contains(&format!("format version {}", FORMAT_VERSION + 1))
            && message.contains(MANIFEST_FILE),
        "{message}"
    );

    let (dir, _) = written_bundle("architecture");
    edit_manifest(&dir, |m| m["architecture"] = "rnn".into());
    assert!(load_error(&dir).contains("\"rnn\" is not supported"));

    let (dir, _) = written_bundle("shape");
    edit_manifest(&dir, |m| m["policy"]["d_model"] = 64.into());
    let message = load_error(&dir);
    assert!(
        message.contains("do not fit") && message.contains(WEIGHTS_FILE),
        "{message}"
    );

    let (dir, _) = written_bundle("layers");
    edit_manifest(&dir, |m| m["policy"]["n_layers"] = 1.into());
    let message = load_error(&dir);
    assert!(message.contains("does not have"), "{message}");

    // A manifest with more layers than the file holds: the missing tensors are an error, not
    // the placeholder weights a policy is built with before its file is read.
    let (dir, _) = written_bundle("more layers");
    edit_manifest(&dir, |m| m["policy"]["n_layers"] = 3.into());
    let message = load_error(&dir);
    assert!(
        message.contains("do not fit") && message.contains("blocks.2"),
        "{message}"
    );

    let (dir, _) = written_bundle("truncated");
    let weights = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), &weights[..weights.len() / 2]).unwrap();
    let message = load_error(&dir);
    assert!(
        message.contains("truncated") && message.contains(WEIGHTS_FILE),
        "{message}"
    );

    let (dir, _) = written_bundle("missing");
    std::fs::remove_file(dir.join(TOKENIZER_FILE)).unwrap();
    assert!(load_error(&dir).contains("missing tokenizer.json"));

    let (dir, _) = written_bundle("format");
    edit_manifest(&dir, |m| m["format"] = "zip".into());
    assert!(load_error(&dir).contains("not an InfAlign bundle"));

    let (dir, _) = written_bundle("unknown-field");
    edit_manifest(&dir, |m| m["extra"] = 1.into());
    assert!(load_error(&dir).contains("unknown field `extra`"));

    let (dir, _) = written_bundle("path");
    edit_manifest(&dir, |m| m["weights"]["file"] = "../model.bpk".into());
    assert!(load_error(&dir).contains("plain file name"));

    let message = load_error(Path::new("no/such/bundle"));
    assert!(
        message.contains("no/such/bundle") && message.contains("not a directory"),
        "{message}"
    );
}

/// A valid manifest, built once for all fuzz cases.
fn valid_manifest() -> &'static [u8] {
    static MANIFEST: OnceLock<Vec<u8>> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let tokenizer = common::tokenizer();
        let policy = Policy::init(&common::tiny(tokenizer.vocab_size()), 1, &cpu_device()).unwrap();
        let bundle = Bundle::new(
            &policy,
            &tokenizer,
            None,
            Provenance::default(),
            BTreeMap::new(),
        )
        .unwrap();
        bundle.files().unwrap().remove(0).1
    })
}

/// Valid weights of `common::tiny(64)`, built once for all fuzz cases.
fn valid_weights() -> &'static [u8] {
    static WEIGHTS: OnceLock<Vec<u8>> = OnceLock::new();
    WEIGHTS.get_or_init(|| {
        let policy = Policy::init(&common::tiny(64), 2, &cpu_device()).unwrap();
        policy_to_burnpack(&policy, Precision::F32).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn manifest_parser_rejects_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(Manifest::parse(&bytes, "fuzz").is_err());
    }

    #[test]
    fn manifest_parser_survives_mutated_manifests(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut manifest = valid_manifest().to_vec();
        for (index, byte) in flips {
            let at = index.index(manifest.len());
            manifest[at] = byte;
        }
        // Either an error or a manifest that passed every check; never a panic.
        if let Ok(parsed) = Manifest::parse(&manifest, "fuzz") {
            prop_assert!(parsed.policy.validate().is_ok());
        }
    }

    #[test]
    fn weight_loader_survives_corrupt_bytes(cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8)) {
        let config = common::tiny(64);
        let mut bytes = valid_weights().to_vec();
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        // Corrupt weights either fail to load or load into the right shape; never a panic.
        if let Ok(loaded) = policy_from_burnpack(&config, &bytes, &cpu_device(), "fuzz") {
            prop_assert_eq!(loaded.config(), config);
        }
    }
}

#[test]
fn a_manifest_without_a_format_says_so_in_words() {
    let error = Manifest::parse(br#"{"format_version": 4}"#, "there/manifest.json")
        .unwrap_err()
        .to_string();
    assert!(error.contains("`format` is missing"), "{error}");
    assert!(
        !error.contains("None") && !error.contains("Some("),
        "{error}"
    );
    let error = Manifest::parse(br#"{"format": "zip"}"#, "there/manifest.json")
        .unwrap_err()
        .to_string();
    assert!(error.contains(r#"`format` is "zip""#), "{error}");
}

#[test]
fn a_bundle_read_without_its_variants_loads_each_from_its_own_bytes() {
    let tokenizer = common::tokenizer();
    let config = common::tiny(tokenizer.vocab_size());
    let base = Policy::init(&config, 3, &cpu_device()).unwrap();
    let aligned = Policy::init(&config, 4, &cpu_device()).unwrap();
    let mut bundle = Bundle::new(
        &base,
        &tokenizer,
        None,
        Provenance::default(),
        BTreeMap::new(),
    )
    .unwrap();
    bundle
        .add_variant("aligned", &aligned, BTreeMap::new(), None)
        .unwrap();
    let files: BTreeMap<String, Vec<u8>> = bundle.files().unwrap().into_iter().collect();
    let file = bundle.variant_file("aligned").unwrap().to_string();
    // Everything but the variant's weights is read (and checked) up front.
    let mut asked = Vec::new();
    let deferred = Bundle::from_parts_deferring_variants("here", |name| {
        asked.push(name.to_string());
        Ok(files.get(name).cloned())
    })
    .unwrap();
    assert!(!asked.contains(&file), "{asked:?}");
    assert!(!deferred.holds_variants() && bundle.holds_variants());
    let error = deferred
        .named_policy("aligned", &cpu_device())
        .unwrap_err()
        .to_string();
    assert!(error.contains("not loaded yet"), "{error}");
    // The variant from its own bytes is the variant the whole bundle holds.
    let loaded = deferred
        .variant_from_bytes("aligned", &files[&file], &cpu_device())
        .unwrap();
    let whole = bundle.named_policy("aligned", &cpu_device()).unwrap();
    assert_eq!(
        next_token_distributions(&loaded),
        next_token_distributions(&whole)
    );
    // Other bytes are refused, naming the file; the base policy loads as always.
    let error = deferred
        .variant_from_bytes("aligned", &files["model.bpk"], &cpu_device())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&file) && error.contains("from another bundle"),
        "{error}"
    );
    assert!(deferred
        .variant_from_bytes("nobody", &[], &cpu_device())
        .is_err());
    deferred.policy(&cpu_device()).unwrap();
    // Such a bundle cannot be written back.
    assert!(deferred
        .files()
        .unwrap_err()
        .to_string()
        .contains("cannot be written"));
}

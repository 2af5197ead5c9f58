//! Bundles: a round trip keeps the policy exactly; every broken part is a clear error; the
//! manifest and weight loaders survive arbitrary bytes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use infalign_model::backend::cpu_device;
use infalign_model::bundle::{
    policy_from_burnpack, policy_to_burnpack, Bundle, Manifest, Provenance, MANIFEST_FILE,
    TOKENIZER_FILE, WEIGHTS_FILE,
};
use infalign_model::policy::Policy;
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

#[test]
fn broken_bundles_are_clear_errors() {
    let (dir, _) = written_bundle("version");
    edit_manifest(&dir, |m| m["format_version"] = 2.into());
    let message = load_error(&dir);
    assert!(
        message.contains("format version 2") && message.contains(MANIFEST_FILE),
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
        policy_to_burnpack(&policy).unwrap()
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

//! The public HH-RLHF format: JSON lines of `{"chosen": "...", "rejected": "..."}`, each a whole
//! dialogue in the `\n\nHuman: ... \n\nAssistant: ...` form; optionally gzip-compressed.
//!
//! A pair's prompt is the longest shared prefix of the two dialogues that ends with
//! `"\n\nAssistant:"`; the responses are what follows it.

use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use super::dialogue::ASSISTANT_CUE;
use crate::error::{Error, Result};

/// One preference: the same prompt with a preferred and a dispreferred answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Ends with `"\n\nAssistant:"`.
    pub prompt: String,
    /// The preferred answer (without the leading space after the cue).
    pub chosen: String,
    /// The dispreferred answer.
    pub rejected: String,
}

#[derive(Deserialize)]
struct RawPair {
    chosen: String,
    rejected: String,
}

/// Split two dialogues that share a prompt into (prompt, chosen answer, rejected answer).
pub fn split_pair(chosen: &str, rejected: &str) -> Option<PreferencePair> {
    let mut end = chosen.len();
    while let Some(start) = chosen[..end].rfind(ASSISTANT_CUE) {
        let prompt_end = start + ASSISTANT_CUE.len();
        if rejected.starts_with(&chosen[..prompt_end]) {
            return Some(PreferencePair {
                prompt: chosen[..prompt_end].to_string(),
                chosen: chosen[prompt_end..].trim_start().to_string(),
                rejected: rejected[prompt_end..].trim_start().to_string(),
            });
        }
        end = start;
    }
    None
}

/// Parse HH-RLHF JSON lines from `reader`; `origin` names the input in errors. Blank lines are
/// skipped; anything else that is not a valid pair is an error naming its line.
pub fn parse_jsonl(reader: impl BufRead, origin: &str) -> Result<Vec<PreferencePair>> {
    super::parse_json_lines(
        reader,
        origin,
        "{\"chosen\", \"rejected\"}",
        |raw: RawPair| {
            split_pair(&raw.chosen, &raw.rejected).ok_or_else(|| {
                format!("`chosen` and `rejected` share no prompt ending with {ASSISTANT_CUE:?}")
            })
        },
    )
}

/// Load an HH-RLHF file, `.jsonl` or gzip-compressed (recognised by its magic bytes, whatever
/// its name).
pub fn load(path: &Path) -> Result<Vec<PreferencePair>> {
    let file = std::fs::File::open(path).map_err(|error| Error::io(path, error))?;
    let mut reader = BufReader::new(file);
    let gzip = reader
        .fill_buf()
        .map_err(|error| Error::io(path, error))?
        .starts_with(&[0x1f, 0x8b]);
    let origin = path.display().to_string();
    if gzip {
        parse_jsonl(BufReader::new(MultiGzDecoder::new(reader)), &origin)
    } else {
        parse_jsonl(reader, &origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(chosen: &str, rejected: &str) -> String {
        serde_json::json!({"chosen": chosen, "rejected": rejected}).to_string()
    }

    #[test]
    fn prompt_is_the_shared_prefix_up_to_the_last_assistant_cue() {
        let shared = "\n\nHuman: What is a good name for a cat?\n\nAssistant: Maybe Pip.\n\nHuman: Another one?\n\nAssistant:";
        let pair = split_pair(&format!("{shared} Try Mochi."), &format!("{shared} No.")).unwrap();
        assert_eq!(pair.prompt, shared);
        assert_eq!(pair.chosen, "Try Mochi.");
        assert_eq!(pair.rejected, "No.");
    }

    #[test]
    fn diverging_earlier_falls_back_to_an_earlier_cue() {
        let chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: see you";
        let rejected = "\n\nHuman: hi\n\nAssistant: go away";
        let pair = split_pair(chosen, rejected).unwrap();
        assert_eq!(pair.prompt, "\n\nHuman: hi\n\nAssistant:");
        assert_eq!(pair.rejected, "go away");
        assert!(split_pair("\n\nHuman: a", "\n\nHuman: b").is_none());
    }

    #[test]
    fn reads_plain_and_gzip_and_names_bad_lines() {
        let good = line(
            "\n\nHuman: hi\n\nAssistant: hello",
            "\n\nHuman: hi\n\nAssistant: hm",
        );
        let text = format!("{good}\n\n{good}\n");
        let dir = std::env::temp_dir().join(format!("infalign-hh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let plain = dir.join("pairs.jsonl");
        std::fs::write(&plain, &text).unwrap();
        assert_eq!(load(&plain).unwrap().len(), 2);

        let compressed = dir.join("pairs.jsonl.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        std::fs::write(&compressed, encoder.finish().unwrap()).unwrap();
        assert_eq!(load(&compressed).unwrap(), load(&plain).unwrap());

        let broken = dir.join("broken.jsonl");
        std::fs::write(&broken, format!("{good}\n{{\"chosen\": 1}}\n")).unwrap();
        let message = load(&broken).unwrap_err().to_string();
        assert!(
            message.contains("broken.jsonl, line 2"),
            "the error should name the file and line: {message}"
        );

        let missing = load(&dir.join("absent.jsonl")).unwrap_err().to_string();
        assert!(missing.contains("absent.jsonl"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

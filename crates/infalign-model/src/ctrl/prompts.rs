//! Prompt sets for calibration, CTRL training and evaluation: the users' messages.
//!
//! Two inputs are read: the `prompts-{split}.jsonl` files of `infalign data fetch`
//! (`{"id", "prompt"}` per line, the prompt in the `"\n\nHuman: ...\n\nAssistant:"` form) and
//! HH-RLHF preference files (`.jsonl` or `.jsonl.gz`, `{"chosen", "rejected"}` per line). Either
//! way a prompt becomes the text of its first human turn, which [`crate::tokenizer::chat_prompt`]
//! turns back into the policy's input; multi-turn HH prompts keep their opening turn only (the
//! policies here have short contexts).

use std::collections::HashSet;

use crate::data::dialogue::{clean_utterance, ASSISTANT_CUE, HUMAN_PREFIX};
use crate::error::{Error, Result};

/// The first human turn of a prompt in the `"\n\nHuman: ...\n\nAssistant:"` form, with its
/// whitespace collapsed; `None` when there is no human turn or it is empty.
pub fn first_human_message(prompt: &str) -> Option<String> {
    let start = prompt.find(HUMAN_PREFIX.trim_end())? + HUMAN_PREFIX.trim_end().len();
    let rest = &prompt[start..];
    let end = rest.find(ASSISTANT_CUE).unwrap_or(rest.len());
    let text = &rest[..end];
    // A further human turn before the first assistant turn belongs to the same message.
    let message = clean_utterance(text);
    (!message.is_empty()).then_some(message)
}

/// The distinct messages of `prompts` (first occurrence kept, order kept), at most `limit`.
pub fn distinct_messages(prompts: impl IntoIterator<Item = String>, limit: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    prompts
        .into_iter()
        .filter_map(|prompt| first_human_message(&prompt))
        .filter(|message| seen.insert(message.clone()))
        .take(limit)
        .collect()
}

/// Messages from the lines of a `prompts-*.jsonl` file; `origin` names it in errors.
pub fn parse_prompt_lines(text: &str, origin: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        prompt: String,
    }
    let mut prompts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Line = serde_json::from_str(line).map_err(|error| Error::Record {
            origin: origin.to_string(),
            line: index + 1,
            reason: format!("expected {{\"prompt\": ...}}: {error}"),
        })?;
        prompts.push(record.prompt);
    }
    Ok(prompts)
}

/// Read up to `limit` distinct messages from `path`: a `prompts-*.jsonl` file of
/// `infalign data fetch`, or an HH-RLHF file (recognised by a `.gz` name or a first record with
/// a `chosen` field). Errors name the file (and line), and an empty result is an error.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_prompts(path: &std::path::Path, limit: usize) -> Result<Vec<String>> {
    let origin = path.display().to_string();
    let is_gzip = path.extension().is_some_and(|ext| ext == "gz");
    let prompts = if is_gzip {
        crate::data::hh::load(path)?
            .into_iter()
            .map(|pair| pair.prompt)
            .collect()
    } else {
        let text = std::fs::read_to_string(path).map_err(|error| Error::io(path, error))?;
        let first = text.lines().find(|line| !line.trim().is_empty());
        let is_hh = first
            .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .is_some_and(|value| value.get("chosen").is_some());
        if is_hh {
            crate::data::hh::parse_jsonl(text.as_bytes(), &origin)?
                .into_iter()
                .map(|pair| pair.prompt)
                .collect()
        } else {
            parse_prompt_lines(&text, &origin)?
        }
    };
    let messages = distinct_messages(prompts, limit);
    if messages.is_empty() {
        return Err(Error::Invalid {
            what: format!("prompt set {origin}"),
            reason: "no prompt with a non-empty human turn".into(),
        });
    }
    Ok(messages)
}

/// A per-prompt file of JSON Lines (what `calibrate --from-rewards` and `eval --scored` read):
/// each non-blank line parsed as `T`, whose prompt `prompt_of` names, then turned into the
/// caller's value by `convert` (given a way to fail naming the line). Errors name `origin` and
/// the line: bad JSON or a missing field (with `expected`, the line's shape), a repeated prompt,
/// what `convert` refuses; a file with no prompts is an error too.
pub(crate) fn parse_per_prompt_lines<T: serde::de::DeserializeOwned, U>(
    text: &str,
    origin: &str,
    expected: &str,
    prompt_of: fn(&T) -> &str,
    mut convert: impl FnMut(T, &dyn Fn(String) -> Error) -> Result<U>,
) -> Result<Vec<U>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |reason: String| Error::Record {
            origin: origin.to_string(),
            line: number,
            reason,
        };
        let parsed: T = serde_json::from_str(line)
            .map_err(|error| fail(format!("{error} (expected {expected})")))?;
        if let Some(first) = seen.insert(prompt_of(&parsed).to_string(), number) {
            return Err(fail(format!("repeats the prompt of line {first}")));
        }
        out.push(convert(parsed, &fail)?);
    }
    if out.is_empty() {
        return Err(Error::Parse {
            origin: origin.to_string(),
            reason: "no prompts".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_human_turn_is_the_message() {
        assert_eq!(
            first_human_message("\n\nHuman: How are  you?\n\nAssistant:").as_deref(),
            Some("How are you?")
        );
        assert_eq!(
            first_human_message("\n\nHuman: One\n\nAssistant: Two\n\nHuman: Three\n\nAssistant:")
                .as_deref(),
            Some("One")
        );
        assert_eq!(first_human_message("\n\nHuman: \n\nAssistant:"), None);
        assert_eq!(first_human_message("no turns at all"), None);
    }

    #[test]
    fn messages_are_distinct_in_order_and_limited() {
        let prompts = ["a", "b", "a", "c"]
            .map(|m| format!("\n\nHuman: {m}\n\nAssistant:"))
            .to_vec();
        assert_eq!(distinct_messages(prompts.clone(), 10), ["a", "b", "c"]);
        assert_eq!(distinct_messages(prompts, 2), ["a", "b"]);
    }

    #[test]
    fn a_malformed_prompt_line_names_its_line() {
        let text = "{\"prompt\": \"\\n\\nHuman: hi\\n\\nAssistant:\"}\n{\"id\": 3}\n";
        let error = parse_prompt_lines(text, "prompts.jsonl")
            .unwrap_err()
            .to_string();
        assert!(error.contains("prompts.jsonl, line 2"), "{error}");
    }
}

//! The chitchat corpus (PyPI `chitchat-dataset` 0.9.0, MIT): 7,168 two-person chats.
//!
//! `dataset.json` maps a conversation id to `{"messages": [[{"text", "sender", ...}, ...], ...],
//! ...}`, where each inner list holds consecutive messages of one sender. The first sender
//! becomes the human and the other the assistant; consecutive groups of one sender merge into
//! one turn. Conversations with a third sender or with fewer than two turns are skipped and
//! counted, never silently lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dialogue::{clean_utterance, Dialogue, Role, Turn};
use crate::error::{Error, Result};

/// The exact file the corpus comes from, and its SHA-256 (checked before use).
pub const WHEEL_NAME: &str = "chitchat_dataset-0.9.0-py3-none-any.whl";
/// SHA-256 of [`WHEEL_NAME`].
pub const WHEEL_SHA256: &str = "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e";
/// The corpus inside the wheel.
pub const DATASET_PATH_IN_WHEEL: &str = "chitchat_dataset/dataset.json";

#[derive(Deserialize)]
struct RawConversation {
    messages: Vec<Vec<RawMessage>>,
}

#[derive(Deserialize)]
struct RawMessage {
    text: String,
    sender: String,
}

/// Why conversations were left out, with counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// More than two distinct senders.
    pub more_than_two_senders: usize,
    /// Fewer than two turns after merging and dropping empty messages.
    pub too_short: usize,
}

/// The converted corpus, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub dialogues: Vec<Dialogue>,
    pub skipped: Skipped,
}

/// Check that `bytes` are the published wheel ([`WHEEL_SHA256`]); `origin` names them in errors.
pub fn verify_wheel(bytes: &[u8], origin: &str) -> Result<()> {
    let actual = crate::sha256_hex(bytes);
    if actual == WHEEL_SHA256 {
        Ok(())
    } else {
        Err(Error::Parse {
            origin: origin.to_string(),
            reason: format!(
                "sha256 is {actual}, expected {WHEEL_SHA256} ({WHEEL_NAME}); the download is \
                 corrupt or not the published file"
            ),
        })
    }
}

/// Convert `dataset.json` (its bytes; `origin` names it in errors) into dialogues.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Corpus> {
    let raw: BTreeMap<String, RawConversation> =
        serde_json::from_slice(bytes).map_err(|error| Error::Parse {
            origin: origin.to_string(),
            reason: format!("not a chitchat dataset.json: {error}"),
        })?;
    let mut dialogues = Vec::with_capacity(raw.len());
    let mut skipped = Skipped::default();
    for (id, conversation) in raw {
        match convert(&conversation) {
            Ok(turns) => dialogues.push(Dialogue { id, turns }),
            Err(Skip::MoreThanTwoSenders) => skipped.more_than_two_senders += 1,
            Err(Skip::TooShort) => skipped.too_short += 1,
        }
    }
    Ok(Corpus { dialogues, skipped })
}

enum Skip {
    MoreThanTwoSenders,
    TooShort,
}

fn convert(conversation: &RawConversation) -> std::result::Result<Vec<Turn>, Skip> {
    let mut senders: Vec<&str> = Vec::with_capacity(2);
    let mut turns: Vec<Turn> = Vec::new();
    for message in conversation.messages.iter().flatten() {
        let text = clean_utterance(&message.text);
        if text.is_empty() {
            continue;
        }
        let role = match senders.iter().position(|s| *s == message.sender) {
            Some(0) => Role::Human,
            Some(_) => Role::Assistant,
            None if senders.len() < 2 => {
                senders.push(&message.sender);
                if senders.len() == 1 {
                    Role::Human
                } else {
                    Role::Assistant
                }
            }
            None => return Err(Skip::MoreThanTwoSenders),
        };
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.text.push(' ');
                last.text.push_str(&text);
            }
            _ => turns.push(Turn { role, text }),
        }
    }
    if turns.len() < 2 {
        return Err(Skip::TooShort);
    }
    Ok(turns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_groups_and_assigns_roles() {
        let json = r#"{
            "b": {"messages": [
                [{"text": "Hello", "sender": "x"}, {"text": "how are\nyou?", "sender": "x"}],
                [{"text": "fine", "sender": "y"}],
                [{"text": "  ", "sender": "x"}],
                [{"text": "thanks", "sender": "y"}],
                [{"text": "good", "sender": "x"}]
            ], "ratings": {"witty": "3"}},
            "a": {"messages": [[{"text": "only me", "sender": "x"}]]},
            "c": {"messages": [[{"text": "1", "sender": "x"}], [{"text": "2", "sender": "y"}],
                               [{"text": "3", "sender": "z"}]]}
        }"#;
        let corpus = parse(json.as_bytes(), "test.json").unwrap();
        assert_eq!(corpus.dialogues.len(), 1);
        let dialogue = &corpus.dialogues[0];
        assert_eq!(dialogue.id, "b");
        assert_eq!(
            dialogue.to_text(),
            "\n\nHuman: Hello how are you?\n\nAssistant: fine thanks\n\nHuman: good"
        );
        assert_eq!(
            corpus.skipped,
            Skipped {
                more_than_two_senders: 1,
                too_short: 1
            }
        );
    }

    #[test]
    fn a_wrong_wheel_is_rejected_with_both_digests() {
        let message = verify_wheel(b"not a wheel", "download.whl")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("download.whl: sha256 is "), "{message}");
        assert!(message.contains(WHEEL_SHA256), "{message}");
    }

    #[test]
    fn malformed_input_names_its_origin() {
        let error = parse(b"{\"a\": {\"messages\": 3}}", "dataset.json").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("dataset.json: "), "{message}");
    }
}

//! Dialogues and their text form.
//!
//! The text form is HH-RLHF's: every turn starts with a blank line and the speaker,
//! `"\n\nHuman: hi\n\nAssistant: hello"`. A prompt is a dialogue prefix that ends with
//! `"\n\nAssistant:"`, so a policy continues it with the assistant's answer.

use serde::{Deserialize, Serialize};

/// Marks the start of a human turn in the text form.
pub const HUMAN_PREFIX: &str = "\n\nHuman: ";
/// Marks the start of an assistant turn in the text form.
pub const ASSISTANT_PREFIX: &str = "\n\nAssistant: ";
/// A prompt ends here; the policy's answer follows.
pub const ASSISTANT_CUE: &str = "\n\nAssistant:";

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Human,
    Assistant,
}

impl Role {
    /// The turn marker of this role in the text form.
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Human => HUMAN_PREFIX,
            Role::Assistant => ASSISTANT_PREFIX,
        }
    }

    /// The other speaker.
    pub fn other(self) -> Role {
        match self {
            Role::Human => Role::Assistant,
            Role::Assistant => Role::Human,
        }
    }
}

/// One turn: a speaker and what they said (one line, no turn markers inside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// A conversation with a stable identifier (used for splitting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    pub id: String,
    pub turns: Vec<Turn>,
}

impl Dialogue {
    /// The whole dialogue in the text form.
    pub fn to_text(&self) -> String {
        self.to_text_with_turn_end("")
    }

    /// The text form with `turn_end` after every turn (the tokenizer's end-of-turn token).
    pub fn to_text_with_turn_end(&self, turn_end: &str) -> String {
        let mut text = String::new();
        for turn in &self.turns {
            text.push_str(turn.role.prefix());
            text.push_str(&turn.text);
            text.push_str(turn_end);
        }
        text
    }

    /// The prompt made of the first human turn: `"\n\nHuman: ...\n\nAssistant:"`. `None` when the
    /// dialogue does not start with a human turn followed by an assistant turn.
    pub fn first_prompt(&self) -> Option<String> {
        match self.turns.as_slice() {
            [first, second, ..] if first.role == Role::Human && second.role == Role::Assistant => {
                Some(format!("{HUMAN_PREFIX}{}{ASSISTANT_CUE}", first.text))
            }
            _ => None,
        }
    }
}

/// Read dialogues written one JSON object per line (`{"id", "turns", ...}`; other fields, such
/// as the `text` that `infalign data` adds for readers, are ignored). Errors name the line.
pub fn read_jsonl(reader: impl std::io::BufRead, origin: &str) -> crate::Result<Vec<Dialogue>> {
    super::parse_json_lines(reader, origin, "{\"id\", \"turns\"}", Ok)
}

/// Make free text safe for one turn: collapse runs of whitespace (newlines included) to one
/// space and trim, so that no text can forge a turn marker.
pub fn clean_utterance(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.into(),
        }
    }

    #[test]
    fn text_form_and_prompt() {
        let dialogue = Dialogue {
            id: "a".into(),
            turns: vec![
                turn(Role::Human, "hi there"),
                turn(Role::Assistant, "hello"),
                turn(Role::Human, "how are you?"),
            ],
        };
        assert_eq!(
            dialogue.to_text(),
            "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how are you?"
        );
        assert_eq!(
            dialogue.first_prompt().as_deref(),
            Some("\n\nHuman: hi there\n\nAssistant:")
        );
        let lonely = Dialogue {
            id: "b".into(),
            turns: vec![turn(Role::Human, "anyone?")],
        };
        assert_eq!(lonely.first_prompt(), None);
    }

    #[test]
    fn jsonl_round_trip_and_line_errors() {
        let dialogue = Dialogue {
            id: "x".into(),
            turns: vec![turn(Role::Human, "hi"), turn(Role::Assistant, "hello")],
        };
        let mut line = serde_json::to_value(&dialogue).unwrap();
        line["text"] = dialogue.to_text().into();
        let text = format!("{line}\n\n{line}\n");
        let read = read_jsonl(text.as_bytes(), "d.jsonl").unwrap();
        assert_eq!(read, vec![dialogue.clone(), dialogue]);
        let error = read_jsonl(format!("{line}\n{{}}\n").as_bytes(), "d.jsonl").unwrap_err();
        assert!(
            error.to_string().starts_with("d.jsonl, line 2: "),
            "{error}"
        );
    }

    #[test]
    fn utterances_cannot_forge_turns() {
        assert_eq!(
            clean_utterance("  one\n\nHuman: two \t three "),
            "one Human: two three"
        );
    }
}

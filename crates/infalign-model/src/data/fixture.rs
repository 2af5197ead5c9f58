//! A small generated corpus in the chitchat `dataset.json` format, so that tests (and anyone
//! without network access) can run the whole data pipeline without the download.
//!
//! The text is built from a fixed, friendly vocabulary; the same seed always gives the same bytes.

/// Greetings, questions and answers the generator combines.
const OPENERS: [&str; 6] = [
    "Hello",
    "Hi there",
    "Good morning",
    "Hey",
    "Nice to meet you",
    "Hi, how is your day going",
];
const QUESTIONS: [&str; 8] = [
    "what did you have for lunch?",
    "do you like hiking?",
    "have you read any good books lately?",
    "what music do you listen to?",
    "do you have any pets?",
    "where would you like to travel?",
    "what is your favourite season?",
    "do you enjoy cooking?",
];
const ANSWERS: [&str; 10] = [
    "I had a sandwich and some soup.",
    "Yes, I love walking in the mountains.",
    "I just finished a novel about the sea.",
    "Mostly jazz, and some old rock songs.",
    "I have a cat called Pepper.",
    "I would love to see Japan one day.",
    "Autumn, because of the colours.",
    "I bake bread every weekend.",
    "Not really, but I would like to try.",
    "That is a great question, let me think.",
];
const FOLLOW_UPS: [&str; 6] = [
    "That sounds lovely.",
    "Oh nice, me too!",
    "Interesting, tell me more.",
    "Haha, that is funny.",
    "I should try that sometime.",
    "Cool, thanks for sharing.",
];

/// splitmix64: a tiny, well-mixed generator, enough to vary a fixture deterministically.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }
}

/// A `dataset.json` with `conversations` chats of 2 to 7 turns each.
pub fn chitchat_json(conversations: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let mut root = serde_json::Map::new();
    for index in 0..conversations {
        let id = format!("fixture-{seed}-{index:05}");
        let senders = [format!("{id}-a"), format!("{id}-b")];
        let turns = 2 + (rng.next() % 6) as usize;
        let mut messages = Vec::with_capacity(turns);
        for turn in 0..turns {
            let sender = &senders[turn % 2];
            let mut group = Vec::new();
            let mut say = |text: String| {
                group.push(serde_json::json!({
                    "text": text,
                    "sender": sender,
                    "timestamp": "2018-05-02T19:38:15Z",
                }));
            };
            match turn {
                0 => {
                    say(rng.pick(&OPENERS).to_string());
                    say(format!("So, {}", rng.pick(&QUESTIONS)));
                }
                _ if turn % 2 == 1 => say(rng.pick(&ANSWERS).to_string()),
                _ => say(format!(
                    "{} And {}",
                    rng.pick(&FOLLOW_UPS),
                    rng.pick(&QUESTIONS)
                )),
            }
            messages.push(serde_json::Value::Array(group));
        }
        root.insert(
            id,
            serde_json::json!({"messages": messages, "ratings": {}, "start": "", "prompt": ""}),
        );
    }
    serde_json::Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{chitchat, Role};

    #[test]
    fn the_fixture_parses_into_alternating_dialogues() {
        let json = chitchat_json(50, 7);
        assert_eq!(json, chitchat_json(50, 7), "same seed, same bytes");
        assert_ne!(json, chitchat_json(50, 8));
        let corpus = chitchat::parse(json.as_bytes(), "fixture").unwrap();
        assert_eq!(corpus.dialogues.len(), 50);
        assert_eq!(corpus.skipped, chitchat::Skipped::default());
        for dialogue in &corpus.dialogues {
            assert!(dialogue.turns.len() >= 2);
            for (i, turn) in dialogue.turns.iter().enumerate() {
                let expected = if i % 2 == 0 {
                    Role::Human
                } else {
                    Role::Assistant
                };
                assert_eq!(turn.role, expected, "{}", dialogue.id);
            }
            assert!(dialogue.first_prompt().is_some());
        }
    }
}

//! The dialogue tokenizer: byte-level BPE trained with Hugging Face `tokenizers`, saved as a
//! standard `tokenizer.json`.
//!
//! Byte-level means every string has an encoding (no unknown tokens) and decoding gives the text
//! back exactly. One special token, [`END_OF_TURN`], closes every turn in training text, so a
//! policy learns to stop at the end of its answer. The regex engine is `fancy-regex` on every
//! target, so the browser build encodes exactly like the native one.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer, TokenizerBuilder};

use crate::error::{Error, Result};

/// Closes a turn; sampling stops when the policy produces it.
pub const END_OF_TURN: &str = "<|end_of_turn|>";

/// Smallest vocabulary worth training: the 256 byte symbols, the special token, a few merges.
pub const MIN_VOCAB_SIZE: usize = 300;

/// A trained byte-level BPE tokenizer with the end-of-turn token.
#[derive(Clone)]
pub struct DialogueTokenizer {
    inner: Tokenizer,
    end_of_turn: u32,
}

impl std::fmt::Debug for DialogueTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogueTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("end_of_turn", &self.end_of_turn)
            .finish()
    }
}

fn tokenizer_error(origin: &str, error: impl std::fmt::Display) -> Error {
    Error::Parse {
        origin: origin.to_string(),
        reason: error.to_string(),
    }
}

impl DialogueTokenizer {
    /// Train on `texts` (dialogues in the text form, turns closed by [`END_OF_TURN`]) up to
    /// `vocab_size` tokens, counting the 256 byte symbols and the special token.
    pub fn train<I, S>(texts: I, vocab_size: usize, show_progress: bool) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if vocab_size < MIN_VOCAB_SIZE {
            return Err(Error::Invalid {
                what: "vocab_size".into(),
                reason: format!("{vocab_size} is too small: at least {MIN_VOCAB_SIZE}"),
            });
        }
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(show_progress)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(vec![AddedToken::from(END_OF_TURN, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        // ByteLevel serves as pre-tokenizer (bytes to printable symbols, GPT-2's split regex),
        // post-processor and decoder.
        let mut tokenizer =
            TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
                .with_model(BPE::default())
                .with_normalizer(None)
                .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
                .with_post_processor(Some(ByteLevel::new(false, true, true)))
                .with_decoder(Some(ByteLevel::default()))
                .build()
                .map_err(|error| tokenizer_error("tokenizer", error))?;
        tokenizer
            .train(&mut trainer, texts)
            .map_err(|error| tokenizer_error("tokenizer training", error))?;
        let json = tokenizer
            .to_string(false)
            .map_err(|error| tokenizer_error("tokenizer", error))?;
        Self::from_bytes(json.as_bytes(), "trained tokenizer")
    }

    /// Load a `tokenizer.json` from its bytes; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|error| tokenizer_error(origin, error))?;
        let end_of_turn = inner.token_to_id(END_OF_TURN).ok_or_else(|| Error::Parse {
            origin: origin.to_string(),
            reason: format!("the tokenizer has no {END_OF_TURN} token"),
        })?;
        Ok(Self { inner, end_of_turn })
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|error| tokenizer_error("tokenizer", error))
    }

    /// Token ids of `text` (special tokens in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|error| tokenizer_error("encoding", error))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|error| tokenizer_error("decoding", error))
    }

    /// Number of tokens, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of [`END_OF_TURN`].
    pub fn end_of_turn(&self) -> u32 {
        self.end_of_turn
    }
}

/// The policy's input for one user message: a human turn (whitespace collapsed, so the message
/// cannot forge a turn marker), closed by [`END_OF_TURN`], then the assistant cue. This is how
/// every human turn looks in training text, so the policy answers it as the assistant.
pub fn chat_prompt(message: &str) -> String {
    use crate::data::dialogue::{clean_utterance, ASSISTANT_CUE, HUMAN_PREFIX};
    format!(
        "{HUMAN_PREFIX}{}{END_OF_TURN}{ASSISTANT_CUE}",
        clean_utterance(message)
    )
}

/// A dialogue's training text: each turn closed by [`END_OF_TURN`].
pub fn training_text(dialogue: &crate::data::Dialogue) -> String {
    dialogue.to_text_with_turn_end(END_OF_TURN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{chitchat, fixture};

    fn fixture_tokenizer() -> (DialogueTokenizer, Vec<String>) {
        let corpus = chitchat::parse(fixture::chitchat_json(200, 1).as_bytes(), "fixture").unwrap();
        let texts: Vec<String> = corpus.dialogues.iter().map(training_text).collect();
        let tokenizer = DialogueTokenizer::train(texts.iter(), 400, false).unwrap();
        (tokenizer, texts)
    }

    #[test]
    fn round_trips_text_and_compresses_it() {
        let (tokenizer, texts) = fixture_tokenizer();
        assert!(tokenizer.vocab_size() <= 400 && tokenizer.vocab_size() > 257);
        let mut bytes = 0;
        let mut tokens = 0;
        for text in &texts {
            let ids = tokenizer.encode(text).unwrap();
            assert_eq!(&tokenizer.decode(&ids).unwrap(), text);
            assert_eq!(
                ids.iter()
                    .filter(|id| **id == tokenizer.end_of_turn())
                    .count(),
                text.matches(END_OF_TURN).count(),
                "the end-of-turn marker is one token"
            );
            bytes += text.len();
            tokens += ids.len();
        }
        assert!(
            tokens * 2 < bytes,
            "BPE should at least halve the length: {tokens} tokens for {bytes} bytes"
        );
        // Text it never saw still encodes, byte by byte if need be.
        let unseen = "Zebras ünd ✓ 42";
        assert_eq!(
            tokenizer
                .decode(&tokenizer.encode(unseen).unwrap())
                .unwrap(),
            unseen
        );
    }

    #[test]
    fn saved_json_loads_and_encodes_identically() {
        let (tokenizer, texts) = fixture_tokenizer();
        let json = tokenizer.to_json().unwrap();
        let loaded = DialogueTokenizer::from_bytes(json.as_bytes(), "tokenizer.json").unwrap();
        for text in texts.iter().take(20) {
            assert_eq!(
                tokenizer.encode(text).unwrap(),
                loaded.encode(text).unwrap()
            );
        }
        let error = DialogueTokenizer::from_bytes(b"{\"version\": 1}", "broken.json").unwrap_err();
        assert!(error.to_string().starts_with("broken.json: "), "{error}");
    }

    #[test]
    fn refuses_a_tiny_vocabulary() {
        let error = DialogueTokenizer::train(["hi"].iter(), 10, false).unwrap_err();
        assert!(error.to_string().contains("10"), "{error}");
    }
}

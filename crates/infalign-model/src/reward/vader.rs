//! VADER's compound sentiment, computed the same in every process.
//!
//! The `vader_sentiment` crate adds booster-word weights (and picks an idiom) in the iteration
//! order of a `HashMap` seeded afresh in every process, so the same reply scored the same way
//! twice could differ in its last bits, and ties between identical replies broke when they were
//! scored by different processes. This is the same rule set with every list walked in one fixed
//! order (sorted): the crate's lexicons (`vader_sentiment::LEXICON`, `EMOJI_LEXICON`, looked up
//! only, never iterated) and VADER's published word lists, and the crate's arithmetic step for
//! step, so a score agrees with the crate's to the last bits wherever the crate itself is
//! deterministic (the parity test checks thousands of sentences).

use std::sync::OnceLock;

use regex::Regex;
use unicase::UniCase;
use vader_sentiment::{EMOJI_LEXICON, LEXICON};

/// Empirically derived increments (Hutto & Gilbert 2014).
const BOOST: f64 = 0.293;
const CAPS_BOOST: f64 = 0.733;
const NEGATION_SCALAR: f64 = -0.740;
const QUESTION_BOOST: f64 = 0.180;
const EXCLAMATION_BOOST: f64 = 0.292;
const MAX_EXCLAMATIONS: usize = 4;
const MAX_QUESTIONS: usize = 3;
const MAX_QUESTION_BOOST: f64 = 0.96;
const NORMALIZATION_ALPHA: f64 = 15.0;

/// Words that intensify (+) or dampen (-) the sentiment word after them, sorted.
const BOOSTERS: &[(&str, f64)] = &[
    ("absolutely", BOOST),
    ("almost", -BOOST),
    ("amazingly", BOOST),
    ("awfully", BOOST),
    ("barely", -BOOST),
    ("completely", BOOST),
    ("considerable", BOOST),
    ("considerably", BOOST),
    ("decidedly", BOOST),
    ("deeply", BOOST),
    ("effing", BOOST),
    ("enormous", BOOST),
    ("enormously", BOOST),
    ("entirely", BOOST),
    ("especially", BOOST),
    ("exceptional", BOOST),
    ("exceptionally", BOOST),
    ("extreme", BOOST),
    ("extremely", BOOST),
    ("fabulously", BOOST),
    ("flippin", BOOST),
    ("flipping", BOOST),
    ("frackin", BOOST),
    ("fracking", BOOST),
    ("frickin", BOOST),
    ("fricking", BOOST),
    ("friggin", BOOST),
    ("frigging", BOOST),
    ("fuckin", BOOST),
    ("fucking", BOOST),
    ("fuggin", BOOST),
    ("fugging", BOOST),
    ("fully", BOOST),
    ("greatly", BOOST),
    ("hardly", -BOOST),
    ("hella", BOOST),
    ("highly", BOOST),
    ("hugely", BOOST),
    ("incredible", BOOST),
    ("incredibly", BOOST),
    ("intensely", BOOST),
    ("just enough", -BOOST),
    ("kind of", -BOOST),
    ("kind-of", -BOOST),
    ("kinda", -BOOST),
    ("kindof", -BOOST),
    ("less", -BOOST),
    ("little", -BOOST),
    ("major", BOOST),
    ("majorly", BOOST),
    ("marginal", -BOOST),
    ("marginally", -BOOST),
    ("more", BOOST),
    ("most", BOOST),
    ("occasional", -BOOST),
    ("occasionally", -BOOST),
    ("particularly", BOOST),
    ("partly", -BOOST),
    ("purely", BOOST),
    ("quite", BOOST),
    ("really", BOOST),
    ("remarkably", BOOST),
    ("scarce", -BOOST),
    ("scarcely", -BOOST),
    ("slight", -BOOST),
    ("slightly", -BOOST),
    ("so", BOOST),
    ("somewhat", -BOOST),
    ("sort of", -BOOST),
    ("sort-of", -BOOST),
    ("sorta", -BOOST),
    ("sortof", -BOOST),
    ("substantially", BOOST),
    ("thoroughly", BOOST),
    ("total", BOOST),
    ("totally", BOOST),
    ("tremendous", BOOST),
    ("tremendously", BOOST),
    ("uber", BOOST),
    ("unbelievably", BOOST),
    ("unusually", BOOST),
    ("utter", BOOST),
    ("utterly", BOOST),
    ("very", BOOST),
];

/// Words that negate the sentiment word after them (besides any word with "n't"), sorted.
const NEGATIONS: &[&str] = &[
    "ain't",
    "aint",
    "aren't",
    "arent",
    "can't",
    "cannot",
    "cant",
    "couldn't",
    "couldnt",
    "daren't",
    "darent",
    "despite",
    "didn't",
    "didnt",
    "doesn't",
    "doesnt",
    "don't",
    "dont",
    "hadn't",
    "hadnt",
    "hasn't",
    "hasnt",
    "haven't",
    "havent",
    "isn't",
    "isnt",
    "mightn't",
    "mightnt",
    "mustn't",
    "mustnt",
    "neednt",
    "needn't",
    "neither",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtn't",
    "oughtnt",
    "rarely",
    "seldom",
    "shan't",
    "shant",
    "shouldn't",
    "shouldnt",
    "uh-uh",
    "uhuh",
    "wasn't",
    "wasnt",
    "weren't",
    "werent",
    "without",
    "won't",
    "wont",
    "wouldn't",
    "wouldnt",
];

/// Idioms around a sentiment word that set its valence, in the fixed order they are tried.
const IDIOMS: &[(&str, f64)] = &[
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("kiss of death", -1.5),
    ("the bomb", 3.0),
    ("the shit", 3.0),
    ("to die for", 3.0),
    ("yeah right", -2.0),
];

/// The characters stripped from the ends of a word.
const PUNCTUATION: &str = "[!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~]";

fn booster(token: &str) -> Option<f64> {
    let token = UniCase::new(token);
    BOOSTERS
        .iter()
        .find(|(word, _)| UniCase::new(*word) == token)
        .map(|&(_, value)| value)
}

fn is(token: &str, word: &str) -> bool {
    UniCase::new(token) == UniCase::new(word)
}

fn valence_of(token: &str) -> Option<f64> {
    LEXICON.get(&UniCase::new(token)).copied()
}

fn is_all_caps(token: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| Regex::new(r"^[A-Z\W]+$").expect("a valid pattern"));
    pattern.is_match(token) && token.len() > 1
}

fn is_negated(token: &str) -> bool {
    let folded = UniCase::new(token);
    NEGATIONS.iter().any(|word| UniCase::new(*word) == folded) || token.contains("n't")
}

/// Emoji replaced by their descriptions, as the lexicon knows them.
fn describe_emoji(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_space = true;
    for character in text.chars() {
        let mut buffer = [0u8; 4];
        match EMOJI_LEXICON.get(&*character.encode_utf8(&mut buffer)) {
            Some(description) => {
                if !after_space {
                    out.push(' ');
                }
                out.push_str(description);
                after_space = false;
            }
            None => {
                after_space = character == ' ';
                out.push(character);
            }
        }
    }
    out
}

/// Whitespace-separated words of two bytes or more, punctuation trimmed unless that leaves one
/// character or none (so emoticons survive).
fn tokens(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .filter(|word| word.len() > 1)
        .map(|word| {
            let stripped = word.trim_matches(|c| PUNCTUATION.contains(c));
            if stripped.len() <= 1 {
                word
            } else {
                stripped
            }
        })
        .collect()
}

fn punctuation_emphasis(text: &str) -> f64 {
    let exclamations = text.bytes().filter(|&b| b == b'!').count();
    let questions = text.bytes().filter(|&b| b == b'?').count();
    let question_boost = if questions > MAX_QUESTIONS {
        MAX_QUESTION_BOOST
    } else {
        questions as f64 * QUESTION_BOOST
    };
    question_boost + exclamations.min(MAX_EXCLAMATIONS) as f64 * EXCLAMATION_BOOST
}

fn booster_scalar(token: &str, valence: f64, mixed_caps: bool) -> f64 {
    let Some(mut scalar) = booster(token) else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar = -scalar;
    }
    if is_all_caps(token) && mixed_caps {
        scalar += if valence > 0.0 {
            CAPS_BOOST
        } else {
            -CAPS_BOOST
        };
    }
    scalar
}

fn negation(valence: f64, tokens: &[&str], distance: usize, i: usize) -> f64 {
    let t = |offset: usize| tokens[i - offset];
    let factor = match distance {
        0 if is_negated(t(1)) => NEGATION_SCALAR,
        1 if is(t(2), "never") && (is(t(1), "so") || is(t(1), "this")) => 1.25,
        1 if is(t(2), "without") && is(t(1), "doubt") => 1.0,
        1 if is_negated(t(2)) => NEGATION_SCALAR,
        // VADER groups these conditions this way (`a && b || c || d || e`); kept as it is.
        2 if (is(t(3), "never") && is(t(2), "so"))
            || is(t(2), "this")
            || is(t(1), "so")
            || is(t(1), "this") =>
        {
            1.25
        }
        2 if (is(t(3), "without") && is(t(2), "doubt")) || is(t(1), "doubt") => 1.0,
        2 if is_negated(t(3)) => NEGATION_SCALAR,
        _ => 1.0,
    };
    valence * factor
}

fn idioms(mut valence: f64, tokens: &[&str], i: usize) -> f64 {
    let end = if tokens.len() - 1 > i {
        (i + 3).min(tokens.len())
    } else {
        i + 1
    };
    let window = tokens[i - 3..end].join(" ").to_lowercase();
    if let Some(&(_, value)) = IDIOMS.iter().find(|(idiom, _)| window.contains(idiom)) {
        valence = value;
    }
    let before = tokens[i - 3..i].join(" ").to_lowercase();
    for (word, value) in BOOSTERS {
        if before.contains(word) {
            valence += value;
        }
    }
    valence
}

fn word_valence(tokens: &[&str], i: usize, mixed_caps: bool) -> f64 {
    let Some(mut valence) = valence_of(tokens[i]) else {
        return 0.0;
    };
    if is_all_caps(tokens[i]) && mixed_caps {
        valence += if valence > 0.0 {
            CAPS_BOOST
        } else {
            -CAPS_BOOST
        };
    }
    for distance in 0..3 {
        if i > distance && valence_of(tokens[i - distance - 1]).is_none() {
            let mut scalar = booster_scalar(tokens[i - distance - 1], valence, mixed_caps);
            if distance == 1 {
                scalar *= 0.95;
            } else if distance == 2 {
                scalar *= 0.9;
            }
            valence += scalar;
            valence = negation(valence, tokens, distance, i);
            if distance == 2 {
                valence = idioms(valence, tokens, i);
            }
        }
    }
    if i > 0 && is(tokens[i - 1], "least") {
        valence *= NEGATION_SCALAR;
    }
    valence
}

/// VADER's compound score of `text`, in [-1, 1].
pub fn compound(text: &str) -> f64 {
    let text = describe_emoji(text);
    let tokens = tokens(&text);
    if tokens.is_empty() {
        return 0.0;
    }
    let caps = tokens.iter().filter(|t| is_all_caps(t)).count();
    let mixed_caps = caps > 0 && caps < tokens.len();
    let mut sentiments: Vec<f64> = (0..tokens.len())
        .map(|i| {
            let kind_of = i + 1 < tokens.len() && is(tokens[i], "kind") && is(tokens[i + 1], "of");
            if booster(tokens[i]).is_some() || kind_of {
                0.0
            } else {
                word_valence(&tokens, i, mixed_caps)
            }
        })
        .collect();
    if let Some(but) = tokens.iter().position(|t| is(t, "but")) {
        for (i, sentiment) in sentiments.iter_mut().enumerate() {
            if i < but {
                *sentiment *= 0.5;
            } else if i > but {
                *sentiment *= 1.5;
            }
        }
    }
    let mut total: f64 = sentiments.iter().sum();
    let emphasis = punctuation_emphasis(&text);
    if total > 0.0 {
        total += emphasis;
    } else {
        total -= emphasis;
    }
    (total / (total * total + NORMALIZATION_ALPHA).sqrt()).clamp(-1.0, 1.0)
}

//! The lab's settings in the address bar: read, checked (a bad value is named and replaced),
//! and written back.

use infalign_view::lab::BUILT_IN_PROMPTS;

use super::*;
use crate::url::{query_value, write_query};

impl PromptChoice {
    pub(super) fn message(&self) -> String {
        match self {
            PromptChoice::BuiltIn(index) => BUILT_IN_PROMPTS[*index].to_string(),
            PromptChoice::Own(text) => text.clone(),
        }
    }

    pub(super) fn query(&self) -> String {
        match self {
            PromptChoice::BuiltIn(index) => index.to_string(),
            PromptChoice::Own(text) => text.clone(),
        }
    }
}

impl LabSettings {
    /// The settings in the page's URL, with a message for each value that was replaced.
    pub(super) fn from_url() -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut problems = Vec::new();
        if let Some(policy) = query_value("policy") {
            settings.policy = policy;
        }
        settings.reward = query_value("reward");
        if let Some(prompt) = query_value("prompt") {
            settings.prompt = match prompt.parse::<usize>() {
                Ok(index) if index < BUILT_IN_PROMPTS.len() => PromptChoice::BuiltIn(index),
                Ok(index) => {
                    problems.push(format!(
                        "prompt={index}: there are {} built-in prompts (0-{})",
                        BUILT_IN_PROMPTS.len(),
                        BUILT_IN_PROMPTS.len() - 1
                    ));
                    PromptChoice::BuiltIn(0)
                }
                Err(_) if prompt.trim().is_empty() => PromptChoice::BuiltIn(0),
                Err(_) => PromptChoice::Own(prompt),
            };
        }
        let mut count = |key: &str, max: usize, min: usize, into: &mut usize| {
            if let Some(given) = query_value(key) {
                match given.parse::<usize>() {
                    Ok(value) if (min..=max).contains(&value) => *into = value,
                    _ => problems.push(format!(
                        "{key}={given:?} is not a whole number from {min} to {max}"
                    )),
                }
            }
        };
        count("lab_n", N_MAX, 1, &mut settings.n);
        count("k", K_MAX, 2, &mut settings.k);
        (settings, problems)
    }

    pub(super) fn write_url(&self) {
        let mut pairs = vec![
            ("policy", self.policy.clone()),
            ("prompt", self.prompt.query()),
            ("lab_n", self.n.to_string()),
            ("k", self.k.to_string()),
        ];
        if let Some(reward) = &self.reward {
            pairs.push(("reward", reward.clone()));
        }
        write_query(&QUERY_KEYS, &pairs);
    }
}

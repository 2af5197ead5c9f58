//! Training and evaluation data: dialogues in the `Human:` / `Assistant:` form that HH-RLHF uses,
//! the chitchat corpus converted into it, deterministic splits, HH-RLHF preference pairs, and a
//! small generated corpus for tests.
//!
//! Everything here parses bytes or readers and names its input in errors; fetching from the
//! network is the CLI's business (`infalign data fetch`), so this module also builds for wasm32.

pub mod chitchat;
pub mod dialogue;
pub mod fixture;
pub mod hh;
pub mod split;

pub use dialogue::{Dialogue, Role, Turn};
pub use hh::PreferencePair;
pub use split::Split;

/// Parse JSON lines from `reader` into `T`, then `convert` each record. Blank lines are skipped;
/// a line that cannot be read, parsed (`expected` says what should be there) or converted is an
/// error naming `origin` and the line number.
fn parse_json_lines<T, U>(
    reader: impl std::io::BufRead,
    origin: &str,
    expected: &str,
    convert: impl Fn(T) -> std::result::Result<U, String>,
) -> crate::Result<Vec<U>>
where
    T: serde::de::DeserializeOwned,
{
    let mut records = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let record_error = |reason: String| crate::Error::Record {
            origin: origin.to_string(),
            line: index + 1,
            reason,
        };
        let line = line.map_err(|error| record_error(format!("unreadable: {error}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let raw: T = serde_json::from_str(&line)
            .map_err(|error| record_error(format!("expected {expected}: {error}")))?;
        records.push(convert(raw).map_err(record_error)?);
    }
    Ok(records)
}

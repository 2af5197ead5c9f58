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

//! The lab's sampling engine, off the page's thread: the messages between the page and the
//! worker that samples on the CPU.
//!
//! Sampling a policy on the CPU is seconds of work in 10-40 ms slices (one token of every row),
//! and a slice past 50 ms is a frame the page misses. The page starts its own module a second
//! time in a Web Worker, sends it the bundle it reads ([`Request::Open`]) and then jobs
//! ([`Request::Job`]): answers of a policy, a reference table's rewards, a candidate set's
//! rewards. The worker runs each with the same functions the page would run itself, and posts
//! how far it is ([`Reply::Update`]) and what came out ([`Reply::Done`]). Jobs run one at a time,
//! in the order they were sent; each names the bundle it is for, so a job never runs on a bundle
//! the page has since replaced. Where no worker can be started the page runs the jobs itself.
//!
//! Messages cross as JSON text ([`crate::solves::encode`], [`crate::solves::decode`]); the
//! bundle's files cross as bytes beside the text of [`Request::Open`].

use infalign_core::candidates::CandidatePrompt;
use serde::{Deserialize, Serialize};

use crate::train::{TrainPoint, TrainSettings};

/// From the page to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Read the bundle called `origin` from the files the page sends with this message (it has
    /// read them already: nothing is fetched twice); what they leave out (the aligned variants'
    /// weights) is fetched when first used from the folder `url` (absolute: the worker has no page
    /// to resolve a relative one against). Without a URL the files are the whole bundle.
    Open {
        /// What the page calls the bundle (its folder, or "the chosen files").
        origin: String,
        /// The folder it was fetched from.
        url: Option<String>,
    },
    /// Stop job `id` at its next frame (a training run; other jobs run to their end).
    Cancel {
        /// The job.
        id: u64,
    },
    /// Run `job` on the bundle `origin`, answering with [`Reply::Done`] for `id`.
    Job {
        /// The page's number for it.
        id: u64,
        /// The bundle it is for.
        origin: String,
        /// What to do.
        job: Job,
    },
}

/// Work for the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Job {
    /// `n` answers of `policy` to `message`, sampled with `seed` and the bundle's decoding;
    /// with `stream`, the texts so far after every token ([`Update::Texts`]).
    Answers {
        /// The policy's name in the bundle.
        policy: String,
        /// The prompt.
        message: String,
        /// How many answers.
        n: usize,
        /// The sampler's seed.
        seed: u64,
        /// Whether to send the partial texts.
        stream: bool,
    },
    /// The rewards under `reward` of the base policy's answers to `message` in `set`, sampled
    /// with the bundle's decoding and calibration seed (a reference table's come sorted).
    BaseRewards {
        /// The prompt.
        message: String,
        /// The reward's key in the bundle.
        reward: String,
        /// Which answers.
        set: BaseSet,
    },
    /// "Train it yourself": both sides of `settings` on `prompt`'s candidates at `betas`
    /// ([`crate::train::TrainPair`]), with the paths and policies after every frame
    /// ([`Update::Trained`]).
    Train {
        /// The candidates and their reference table.
        prompt: Box<CandidatePrompt>,
        /// The panel's settings.
        settings: TrainSettings,
        /// Each side's exact optimum's beta.
        betas: [f64; 2],
    },
}

/// Which of the base policy's answer sets a [`Job::BaseRewards`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BaseSet {
    /// The `k` reference answers of a reference table.
    Reference {
        /// How many answers.
        k: usize,
    },
    /// The `c` candidates of "train it yourself".
    Candidates {
        /// How many answers.
        c: usize,
    },
}

/// How far a job has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Update {
    /// The answers so far (a streamed [`Job::Answers`]).
    Texts(Vec<String>),
    /// Both sides' training paths so far and their policies now.
    Trained {
        /// Each side's points from the base policy on.
        paths: [Vec<TrainPoint>; 2],
        /// Each side's probabilities over the candidates.
        policies: [Vec<f64>; 2],
    },
    /// `finished` of `of` answers are complete.
    Progress {
        /// Answers complete.
        finished: usize,
        /// Answers in all.
        of: usize,
    },
}

/// What a job gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Done {
    /// The answers of [`Job::Answers`] and the tokens sampled for them.
    Answers {
        /// The answers.
        texts: Vec<String>,
        /// Tokens sampled (for the page's tokens per second).
        tokens: usize,
    },
    /// The rewards of [`Job::BaseRewards`].
    Rewards(Vec<f64>),
    /// [`Job::Train`] ran to its end, or to where it was cancelled.
    Trained,
}

/// From the engine to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The engine is listening: what the page posted before this may be lost, so it holds its
    /// messages until this comes.
    Ready,
    /// The bundle `origin` is read, or why it could not be.
    Opened {
        /// The bundle.
        origin: String,
        /// `Err` with the reason when it could not be read.
        result: Result<(), String>,
    },
    /// How far job `id` has come.
    Update {
        /// The job.
        id: u64,
        /// Where it stands.
        update: Update,
    },
    /// Job `id` is over: what it gave, or why it failed (in the page's words).
    Done {
        /// The job.
        id: u64,
        /// Its outcome.
        result: Result<Done, String>,
    },
    /// A message the engine could not read (a bug on the page's side, shown rather than lost).
    Unreadable(String),
}

impl Reply {
    /// The job this reply is about, if it is about one.
    pub fn job(&self) -> Option<u64> {
        match self {
            Reply::Update { id, .. } | Reply::Done { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// The bundle a job sent for `wanted` runs on: the one the engine holds (`held`, with its name),
/// if that is the one; else why the job cannot run.
pub fn job_bundle<'a, T>(wanted: &str, held: Option<(&str, &'a T)>) -> Result<&'a T, String> {
    match held {
        Some((name, bundle)) if name == wanted => Ok(bundle),
        Some((name, _)) => Err(format!(
            "the sampling worker holds the bundle {name}, not {wanted}"
        )),
        None => Err(format!(
            "the sampling worker has not read the bundle {wanted}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solves::{decode, encode};
    use infalign_core::ReferenceTable;

    fn requests() -> Vec<Request> {
        vec![
            Request::Open {
                origin: "default-model".into(),
                url: Some("http://localhost:8080/default-model".into()),
            },
            Request::Open {
                origin: "the chosen files".into(),
                url: None,
            },
            Request::Job {
                id: 7,
                origin: "default-model".into(),
                job: Job::Answers {
                    policy: "base".into(),
                    message: "Say \"hi\"\nand\tgo: ünïcödé".into(),
                    n: 8,
                    seed: u64::MAX,
                    stream: true,
                },
            },
            Request::Job {
                id: 8,
                origin: "default-model".into(),
                job: Job::BaseRewards {
                    message: "m".into(),
                    reward: "vader".into(),
                    set: BaseSet::Reference { k: 32 },
                },
            },
            Request::Cancel { id: 10 },
            Request::Job {
                id: 11,
                origin: "default-model".into(),
                job: Job::Train {
                    prompt: Box::new(
                        CandidatePrompt::new(
                            vec![0.1, 0.7, 0.7, 0.2],
                            ReferenceTable::new((0..8).map(|i| i as f64 / 8.0).collect::<Vec<_>>())
                                .unwrap(),
                        )
                        .unwrap(),
                    ),
                    settings: TrainSettings::default(),
                    betas: [0.25, 1.0 / 3.0],
                },
            },
            Request::Job {
                id: 9,
                origin: "default-model".into(),
                job: Job::BaseRewards {
                    message: "m".into(),
                    reward: "vader".into(),
                    set: BaseSet::Candidates { c: 64 },
                },
            },
        ]
    }

    fn replies() -> Vec<Reply> {
        vec![
            Reply::Ready,
            Reply::Opened {
                origin: "default-model".into(),
                result: Ok(()),
            },
            Reply::Opened {
                origin: "x".into(),
                result: Err("fetching x/manifest.json: HTTP 404".into()),
            },
            Reply::Update {
                id: 7,
                update: Update::Texts(vec!["a".into(), String::new()]),
            },
            Reply::Update {
                id: 8,
                update: Update::Progress {
                    finished: 3,
                    of: 32,
                },
            },
            Reply::Done {
                id: 7,
                result: Ok(Done::Answers {
                    texts: vec!["one".into(), "two".into()],
                    tokens: 96,
                }),
            },
            // Rewards keep every bit through the text.
            Reply::Done {
                id: 8,
                result: Ok(Done::Rewards(vec![
                    -0.1,
                    0.0,
                    1.0 / 3.0,
                    0.9999999999999999,
                ])),
            },
            Reply::Done {
                id: 9,
                result: Err("the bundle has no reward \"x\"".into()),
            },
            Reply::Update {
                id: 11,
                update: Update::Trained {
                    paths: [Vec::new(), Vec::new()],
                    policies: [vec![0.25; 4], vec![0.1, 0.2, 0.3, 0.4]],
                },
            },
            Reply::Done {
                id: 11,
                result: Ok(Done::Trained),
            },
            Reply::Unreadable("unreadable message".into()),
        ]
    }

    #[test]
    fn every_message_survives_the_crossing() {
        for request in requests() {
            assert_eq!(decode::<Request>(&encode(&request)), Ok(request));
        }
        for reply in replies() {
            assert_eq!(decode::<Reply>(&encode(&reply)), Ok(reply));
        }
    }

    #[test]
    fn replies_name_their_job() {
        let jobs: Vec<Option<u64>> = replies().iter().map(Reply::job).collect();
        assert_eq!(
            jobs,
            [
                None,
                None,
                None,
                Some(7),
                Some(8),
                Some(7),
                Some(8),
                Some(9),
                Some(11),
                Some(11),
                None
            ]
        );
    }

    #[test]
    fn a_message_of_the_wrong_kind_is_an_error_that_says_so() {
        let error = decode::<Request>(&encode(&Reply::Ready)).unwrap_err();
        assert!(error.contains("unreadable message"), "{error}");
        let error = decode::<Reply>("{\"Done\":{\"id\":1}}").unwrap_err();
        assert!(error.contains("result"), "{error}");
    }

    #[test]
    fn a_job_runs_only_on_its_own_bundle() {
        assert_eq!(job_bundle("a", Some(("a", &1))), Ok(&1));
        let other = job_bundle("a", Some(("b", &1))).unwrap_err();
        assert!(other.contains("holds the bundle b, not a"), "{other}");
        let none = job_bundle::<i32>("a", None).unwrap_err();
        assert!(none.contains("has not read the bundle a"), "{none}");
    }
}

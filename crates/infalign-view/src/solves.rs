//! The explorer's slow solves, off the page's thread: the optimal envelopes of an N and the two
//! optima at the current setting.
//!
//! A single solve can take a second (one envelope budget of BoN at a large N, the optimum near
//! BoN's unreachable region), which on the page's thread freezes every control. The page hands
//! them to a Web Worker instead: it sends a [`Request`] whenever the setting changes and draws the
//! [`Reply`]s as they come. The worker runs a [`Desk`]: it keeps every envelope it has solved
//! (for warm starts and for going back to an N), solves the latest setting only, and works in
//! slices so that a newer request is read between two budgets. Where no worker can be started,
//! the page runs the same desk itself between paints (the work, and the messages, are the same).
//!
//! Messages cross as JSON text ([`encode`], [`decode`]): one codec, tested here.

use std::collections::HashMap;

use infalign_core::theory::{EnvelopeSolver, OptimalSolution};
use infalign_core::Procedure;
use serde::{Deserialize, Serialize};

use crate::explorer::{
    envelope_budgets, envelope_points, optimal_near, plain_error, row, short, Optima, Policy,
    Regularisation, Row, Settings, ENVELOPE_POINTS, KL_RANGE,
};
use crate::procedure_label;

/// How long the worker works before it reads its messages again (a budget's solve usually takes
/// a few milliseconds, so a slice overruns this by about one of them).
pub const WORKER_SLICE_MS: f64 = 25.0;
/// The same, where the page runs the desk on its own thread (no worker): short enough to keep a
/// frame.
pub const PAGE_SLICE_MS: f64 = 6.0;

/// From the page to the desk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The explorer now shows N under this regularisation: solve N's envelopes (unless known)
    /// and the optima at this setting. Replaces any earlier request.
    Show {
        /// N.
        n: u32,
        /// The KL budget or the beta.
        regularisation: Regularisation,
    },
}

/// From the desk to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The worker is listening: requests posted before this may have been lost (a worker's
    /// messages are delivered as soon as its script has run, before its wasm is instantiated),
    /// so the page sends its latest one again.
    Ready,
    /// N's optimal envelopes, complete: `(KL, win rate)` points from `(0, 0.5)` for BoN_N and
    /// WoN_N (empty when none could be solved), and what the page should say about them (an
    /// envelope that stops short, and why).
    Envelopes {
        /// N.
        n: u32,
        /// BoN_N's envelope.
        bon: Vec<(f64, f64)>,
        /// WoN_N's envelope.
        won: Vec<(f64, f64)>,
        /// Notes in the page's words.
        notes: Vec<String>,
    },
    /// The two optima at one setting with their table rows, or why they could not be solved
    /// (in the page's words).
    Optima {
        /// N.
        n: u32,
        /// The regularisation they were solved under.
        regularisation: Regularisation,
        /// The optima and the rows of the optimal policies (boxed: the other messages are small).
        result: Result<Box<(Optima, Vec<Row>)>, String>,
    },
    /// A message the desk could not read (a bug on the page's side, shown rather than lost).
    Unreadable(String),
}

/// A message as it crosses to or from the worker.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Every message type here is plain data (no maps with non-string keys), so this cannot fail;
    // an error would still come out as text rather than a panic.
    serde_json::to_string(message)
        .unwrap_or_else(|error| format!("{{\"unencodable\":\"{error}\"}}"))
}

/// A message read back; the error says what was wrong with it.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|error| format!("unreadable message ({error})"))
}

/// One envelope's solve: going on, or ended (every budget, or the first it could not reach,
/// with why).
enum Track {
    Solving(Box<EnvelopeSolver>),
    Ended(Vec<OptimalSolution>, Option<String>),
}

impl Track {
    fn new(procedure: Procedure, n: u32) -> Result<Self, String> {
        let budgets = envelope_budgets(KL_RANGE.1, ENVELOPE_POINTS);
        EnvelopeSolver::new(procedure, n, &budgets)
            .map(|solver| Track::Solving(Box::new(solver)))
            .map_err(|error| format!("No optimal envelope: {}", plain_error(&error)))
    }

    /// One more budget; `true` once ended.
    fn step(&mut self, procedure: Procedure, n: u32) -> bool {
        let Track::Solving(solver) = self else {
            return true;
        };
        let outcome = solver.step();
        if let Ok(false) = outcome {
            return false;
        }
        let Track::Solving(solver) = std::mem::replace(self, Track::Ended(Vec::new(), None)) else {
            return true;
        };
        let solutions = solver.into_solutions();
        let note = outcome.err().map(|error| {
            let reached = solutions.last().map_or(0.0, |s| s.kl);
            format!(
                "The optimal {} envelope is drawn up to {} nats; beyond, {}",
                procedure_label(procedure, n),
                short(reached),
                plain_error(&error)
            )
        });
        *self = Track::Ended(solutions, note);
        true
    }

    fn into_parts(self) -> (Vec<OptimalSolution>, Option<String>) {
        match self {
            Track::Solving(solver) => (solver.into_solutions(), None),
            Track::Ended(solutions, note) => (solutions, note),
        }
    }
}

/// A finished pair of envelopes (whole solutions, kept for warm starts).
#[derive(Default)]
struct Envelopes {
    bon: Vec<OptimalSolution>,
    won: Vec<OptimalSolution>,
    notes: Vec<String>,
}

impl Envelopes {
    fn of(&self, procedure: Procedure) -> &[OptimalSolution] {
        match procedure {
            Procedure::BestOfN => &self.bon,
            Procedure::WorstOfN => &self.won,
        }
    }

    fn reply(&self, n: u32) -> Reply {
        let points = |solutions: &[OptimalSolution]| {
            if solutions.is_empty() {
                Vec::new()
            } else {
                envelope_points(solutions)
            }
        };
        Reply::Envelopes {
            n,
            bon: points(&self.bon),
            won: points(&self.won),
            notes: self.notes.clone(),
        }
    }
}

/// The solves, worked through in slices for the latest request (see the module's notes).
#[derive(Default)]
pub struct Desk {
    wanted: Option<(u32, Regularisation)>,
    answered: Option<(u32, Regularisation)>,
    envelopes: HashMap<u32, Envelopes>,
    /// Envelopes begun and left when N moved on: going back to N resumes them.
    partial: HashMap<u32, (Track, Track)>,
    /// The N whose envelopes were sent last (the page keeps every N's it was sent).
    sent_envelopes: Option<u32>,
}

impl Desk {
    /// A desk with nothing solved.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a request (it replaces the one before).
    pub fn receive(&mut self, request: Request) {
        match request {
            Request::Show { n, regularisation } => self.wanted = Some((n, regularisation)),
        }
    }

    /// Whether anything is left to do for the latest request.
    pub fn busy(&self) -> bool {
        match self.wanted {
            None => false,
            Some(key) => self.answered != Some(key) || self.sent_envelopes != Some(key.0),
        }
    }

    /// Work until `slice_ms` have passed on `clock` (milliseconds) or nothing is left, and return
    /// the replies that are ready. The optima at the setting come first (the table waits for
    /// them), then N's envelopes, one budget at a time.
    pub fn work(&mut self, slice_ms: f64, clock: &dyn Fn() -> f64) -> Vec<Reply> {
        let start = clock();
        let mut replies = Vec::new();
        let Some((n, regularisation)) = self.wanted else {
            return replies;
        };
        if self.answered != Some((n, regularisation)) {
            replies.push(self.optima(n, regularisation));
            self.answered = Some((n, regularisation));
        }
        if self.sent_envelopes == Some(n) {
            return replies;
        }
        if let Some(done) = self.envelopes.get(&n) {
            replies.push(done.reply(n));
            self.sent_envelopes = Some(n);
            return replies;
        }
        let tracks = match self.partial.remove(&n) {
            Some(tracks) => Ok(tracks),
            None => Track::new(Procedure::BestOfN, n)
                .and_then(|bon| Ok((bon, Track::new(Procedure::WorstOfN, n)?))),
        };
        let (mut bon, mut won) = match tracks {
            Ok(tracks) => tracks,
            Err(note) => {
                let failed = Envelopes {
                    notes: vec![note],
                    ..Envelopes::default()
                };
                replies.push(failed.reply(n));
                self.envelopes.insert(n, failed);
                self.sent_envelopes = Some(n);
                return replies;
            }
        };
        loop {
            // BoN first, then WoN (an ended track's step is a no-op that says so). At least one
            // budget per call, however short the slice.
            if bon.step(Procedure::BestOfN, n) && won.step(Procedure::WorstOfN, n) {
                let (bon, bon_note) = bon.into_parts();
                let (won, won_note) = won.into_parts();
                let done = Envelopes {
                    bon,
                    won,
                    notes: bon_note.into_iter().chain(won_note).collect(),
                };
                replies.push(done.reply(n));
                self.envelopes.insert(n, done);
                self.sent_envelopes = Some(n);
                return replies;
            }
            if clock() - start >= slice_ms {
                break;
            }
        }
        self.partial.insert(n, (bon, won));
        replies
    }

    /// The optima at (N, regularisation), each warm-started from N's envelope when it is known.
    fn optima(&self, n: u32, regularisation: Regularisation) -> Reply {
        let solve = |procedure: Procedure| {
            let known = self
                .envelopes
                .get(&n)
                .map_or(&[][..], |envelopes| envelopes.of(procedure));
            optimal_near(procedure, n, regularisation, known)
        };
        let at = Settings {
            n,
            regularisation,
            ..Settings::default()
        };
        let result = solve(Procedure::BestOfN)
            .and_then(|bon| {
                Ok(Optima {
                    bon,
                    won: solve(Procedure::WorstOfN)?,
                })
            })
            .map(|optima| {
                let rows = [Policy::OptimalBon, Policy::OptimalWon]
                    .into_iter()
                    .filter_map(|policy| row(&at, policy, Some(&optima)))
                    .collect();
                Box::new((optima, rows))
            })
            .map_err(|error| plain_error(&error));
        Reply::Optima {
            n,
            regularisation,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infalign_core::theory;

    /// A clock that never advances: with a zero slice, every `work` call solves the optima (when
    /// due) and one envelope budget.
    fn frozen() -> f64 {
        0.0
    }

    /// Work until idle, collecting the replies (a clock that jumps past the slice at every
    /// read, so the desk yields after every budget, as it would under a slow one).
    fn drain(desk: &mut Desk) -> (Vec<Reply>, usize) {
        let ticks = std::cell::Cell::new(0.0);
        let clock = || {
            ticks.set(ticks.get() + WORKER_SLICE_MS);
            ticks.get()
        };
        let (mut replies, mut calls) = (Vec::new(), 0);
        while desk.busy() {
            replies.extend(desk.work(WORKER_SLICE_MS, &clock));
            calls += 1;
            assert!(calls < 1000, "the desk never finished");
        }
        (replies, calls)
    }

    #[test]
    fn messages_survive_the_codec_and_bad_text_is_an_error() {
        let request = Request::Show {
            n: 7,
            regularisation: Regularisation::Beta(0.25),
        };
        assert_eq!(decode::<Request>(&encode(&request)), Ok(request));
        let reply = Reply::Envelopes {
            n: 3,
            bon: vec![(0.0, 0.5), (0.1, 0.61)],
            won: vec![],
            notes: vec!["a note".into()],
        };
        assert_eq!(decode::<Reply>(&encode(&reply)), Ok(reply));
        assert_eq!(decode::<Reply>(&encode(&Reply::Ready)), Ok(Reply::Ready));
        let error = decode::<Request>("{\"Show\":{\"n\":\"four\"}}").unwrap_err();
        assert!(error.starts_with("unreadable message"), "{error}");
    }

    #[test]
    fn the_desk_answers_the_setting_then_the_envelopes_as_the_page_would_compute_them() {
        let mut desk = Desk::new();
        assert!(!desk.busy());
        let at = Regularisation::KlBudget(0.7);
        desk.receive(Request::Show {
            n: 4,
            regularisation: at,
        });
        let (replies, calls) = drain(&mut desk);
        assert!(
            calls > 2,
            "the envelopes were solved over several slices ({calls})"
        );
        assert_eq!(replies.len(), 2, "{replies:?}");
        // The optima first, and through the codec they are the ones solved in place.
        let optima = decode::<Reply>(&encode(&replies[0])).unwrap();
        let Reply::Optima {
            n: 4,
            regularisation,
            result: Ok(solved),
        } = optima
        else {
            panic!("optima first: {optima:?}");
        };
        let (optima, rows) = *solved;
        assert_eq!(regularisation, at);
        let cold = Optima::solve(4, at).unwrap();
        assert!((optima.bon.win_rate - cold.bon.win_rate).abs() < 1e-9);
        assert!((optima.won.kl - 0.7).abs() < 1e-8);
        assert_eq!(rows.len(), 2);
        // Then the envelopes: the whole solve's points.
        let budgets = envelope_budgets(KL_RANGE.1, ENVELOPE_POINTS);
        let expected =
            |procedure| envelope_points(&theory::optimal_envelope(procedure, 4, &budgets).unwrap());
        assert_eq!(
            replies[1],
            Reply::Envelopes {
                n: 4,
                bon: expected(Procedure::BestOfN),
                won: expected(Procedure::WorstOfN),
                notes: vec![],
            }
        );
    }

    #[test]
    fn a_newer_request_takes_over_and_going_back_resumes_without_resolving() {
        let mut desk = Desk::new();
        let beta = Regularisation::Beta(0.5);
        desk.receive(Request::Show {
            n: 6,
            regularisation: beta,
        });
        // One slice: the optima at N = 6 and a budget or two of its envelopes.
        let first = desk.work(0.0, &frozen);
        assert!(
            matches!(first[..], [Reply::Optima { n: 6, .. }]),
            "{first:?}"
        );
        // The page moves to N = 3 before N = 6's envelopes are done.
        desk.receive(Request::Show {
            n: 3,
            regularisation: beta,
        });
        let (replies, _) = drain(&mut desk);
        let ns: Vec<u32> = replies
            .iter()
            .map(|reply| match reply {
                Reply::Optima { n, .. } | Reply::Envelopes { n, .. } => *n,
                Reply::Ready | Reply::Unreadable(_) => 0,
            })
            .collect();
        assert_eq!(ns, vec![3, 3], "only the latest setting is answered");
        // Back to N = 6: its optima again (only the latest setting's are kept on the page), its
        // envelopes resumed where they were left; asking for the same setting again is free.
        desk.receive(Request::Show {
            n: 6,
            regularisation: beta,
        });
        let (replies, _) = drain(&mut desk);
        assert!(
            matches!(
                replies[..],
                [Reply::Optima { n: 6, .. }, Reply::Envelopes { n: 6, .. }]
            ),
            "{replies:?}"
        );
        desk.receive(Request::Show {
            n: 6,
            regularisation: beta,
        });
        assert!(!desk.busy(), "an answered setting asks for nothing more");
        // Back at N = 3 with a new beta: the optima again, the known envelopes at once.
        desk.receive(Request::Show {
            n: 3,
            regularisation: Regularisation::Beta(0.2),
        });
        let replies = desk.work(0.0, &frozen);
        assert!(
            matches!(
                replies[..],
                [Reply::Optima { n: 3, .. }, Reply::Envelopes { n: 3, .. }]
            ),
            "{replies:?}"
        );
        assert!(!desk.busy());
    }

    #[test]
    fn an_unsolvable_setting_is_answered_in_the_pages_words() {
        let mut desk = Desk::new();
        desk.receive(Request::Show {
            n: 4,
            regularisation: Regularisation::Beta(-1.0),
        });
        let replies = desk.work(0.0, &frozen);
        let Reply::Optima {
            result: Err(error), ..
        } = &replies[0]
        else {
            panic!("{replies:?}");
        };
        assert!(!error.is_empty() && !error.contains("Err("), "{error}");
    }
}

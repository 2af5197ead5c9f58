//! The training step split across the cores (`policy::split_gradients`) gives the gradient of the
//! whole batch: the parts' summed gradients against one pass over the batch, for pretraining's
//! language-model loss over 1 to 5 parts (uneven ones included) and for rows of different lengths.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use infalign_model::policy::{split_gradients, split_rows, PartLoss, TokenBatch};
use infalign_model::pretrain::language_model_gradients;
use infalign_model::{Policy, PolicyConfig};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every float parameter's gradient, in the module's order.
struct Collect<'a> {
    grads: &'a GradientsParams,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grad = self
            .grads
            .get::<D>(param.id)
            .map(|g| g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .unwrap_or_default();
        self.out.push(grad);
    }
}

fn gradients(policy: &Policy, grads: &GradientsParams) -> Vec<Vec<f32>> {
    let mut collect = Collect {
        grads,
        out: Vec::new(),
    };
    policy.visit(&mut collect);
    collect.out
}

fn policy() -> Policy {
    let config = PolicyConfig {
        vocab_size: 67,
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        d_ff: 32,
        max_seq_len: 24,
    };
    Policy::init(&config, 3, &Device::flex().autodiff()).unwrap()
}

fn windows(rows: usize, seed: u64, ragged: bool) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows)
        .map(|_| {
            let len = if ragged {
                3 + (rng.next_u32() % 22) as usize
            } else {
                25
            };
            (0..len).map(|_| rng.next_u32() % 67).collect()
        })
        .collect()
}

fn assert_close(split: &[Vec<f32>], whole: &[Vec<f32>], what: &str) {
    assert_eq!(split.len(), whole.len());
    let mut largest = 0f32;
    for (a, b) in split.iter().zip(whole) {
        assert_eq!(
            a.len(),
            b.len(),
            "{what}: a parameter's gradient is missing"
        );
        for (x, y) in a.iter().zip(b) {
            largest = largest.max((x - y).abs() / (1e-3 + y.abs()));
        }
    }
    assert!(largest < 1e-4, "{what}: largest relative gap {largest:e}");
}

#[test]
fn split_language_model_gradients_are_the_whole_batchs() {
    let policy = policy();
    for (rows, ragged) in [(7, false), (9, true)] {
        let batch = windows(rows, rows as u64, ragged);
        let count: usize = batch.iter().map(|w| w.len() - 1).sum();
        // One pass over the whole batch, as the step was before it was split.
        let first = vec![1; rows];
        let tokens = TokenBatch::new(&batch, &first, 25, &policy.device()).unwrap();
        let loss = policy.loss(&tokens);
        let whole_loss = f64::from(loss.clone().into_data().try_to_vec::<f32>().unwrap()[0]);
        let whole = gradients(
            &policy,
            &GradientsParams::from_grads(loss.backward(), &policy),
        );
        assert_eq!(tokens.target_count(), count);

        for parts in 1..=5 {
            let split = split_gradients(
                &policy,
                split_rows(rows, parts)
                    .into_iter()
                    .map(|range| &batch[range])
                    .collect(),
                |model, part: &[Vec<u32>]| {
                    let first = vec![1; part.len()];
                    let tokens = TokenBatch::new(part, &first, 25, &model.device())?;
                    Ok(PartLoss {
                        loss: model.token_logprobs(&tokens).sum().neg() / count as f64,
                        extra: part.len(),
                    })
                },
            )
            .unwrap();
            assert_eq!(
                split.extras.iter().sum::<usize>(),
                rows,
                "every row in one part"
            );
            assert_eq!(split.extras.len(), parts.min(rows));
            assert!(
                (split.loss - whole_loss).abs() < 1e-5,
                "{} vs {whole_loss}",
                split.loss
            );
            assert_close(
                &gradients(&policy, &split.grads),
                &whole,
                &format!("{rows} rows in {parts} parts"),
            );
        }
        // What pretraining runs: split as the machine's cores say.
        let step = language_model_gradients(&policy, &batch).unwrap();
        assert!((step.loss - whole_loss).abs() < 1e-5);
        assert_close(
            &gradients(&policy, &step.grads),
            &whole,
            "pretraining's step",
        );
    }
}

#[test]
fn a_parts_error_is_returned_not_panicked() {
    let policy = policy();
    let batch = windows(4, 1, false);
    let outcome = split_gradients(
        &policy,
        split_rows(4, 2).into_iter().map(|r| &batch[r]).collect(),
        |model, part: &[Vec<u32>]| {
            // Too long for the model: TokenBatch refuses it.
            let first = vec![1; part.len()];
            let tokens = TokenBatch::new(part, &first, 5, &model.device())?;
            Ok(PartLoss {
                loss: model.loss(&tokens),
                extra: (),
            })
        },
    );
    let error = outcome.err().expect("the parts' error").to_string();
    assert!(error.contains("expected 2 to 5"), "{error}");
}

use infalign_core::theory;
use infalign_core::{ExpFamily, Procedure, Transform};
use std::time::Instant;
fn main() {
    let lambdas = theory::log_spaced(1e-2, 1e3, 200).unwrap();
    let tr = Transform::NormExp { t: 12.0 };
    let mut best = std::time::Duration::from_secs(100);
    for _ in 0..40 { let t0 = Instant::now(); theory::win_rate_curve(&tr, 4, &lambdas).unwrap(); best = best.min(t0.elapsed()); }
    println!("curve min: {:?}", best);
    let mut best = std::time::Duration::from_secs(100);
    let budgets: Vec<f64> = (1..=50).map(|i| 0.04 * i as f64).collect();
    for _ in 0..10 { let t0 = Instant::now(); theory::optimal_envelope(Procedure::BestOfN, 4, &budgets).unwrap(); best = best.min(t0.elapsed()); }
    println!("envelope bon4 min: {:?}", best);
    if std::env::var_os("QUICK").is_some() { return; }
    let budgets: Vec<f64> = (1..=50).map(|i| 0.04 * i as f64).collect();
    let t0 = Instant::now();
    let env = theory::optimal_envelope(Procedure::BestOfN, 4, &budgets).unwrap();
    println!("envelope bon4: {:?} iters {}", t0.elapsed(), env.iter().map(|s| s.iterations).sum::<usize>());
    let t0 = Instant::now();
    let envw = theory::optimal_envelope(Procedure::WorstOfN, 4, &budgets).unwrap();
    println!("envelope won4: {:?}", t0.elapsed());
    for (i, b) in budgets.iter().enumerate().step_by(12) { println!("  kl {b:.2} bon {:.6} won {:.6}", env[i].win_rate, envw[i].win_rate); }
    for (proc, fam) in [(Procedure::BestOfN, ExpFamily::Exp), (Procedure::WorstOfN, ExpFamily::NegExp)] {
        for n in [1u32, 2, 4, 8, 32] {
            for kl in [0.1, 0.25, 0.5, 1.0] {
                let t0 = Instant::now();
                let b = theory::best_t(fam, proc, n, kl).unwrap();
                let tb = t0.elapsed();
                let t0 = Instant::now();
                let o = theory::optimal_envelope(proc, n, &[kl]).unwrap();
                let to = t0.elapsed();
                let id = theory::evaluate_at_kl(&Transform::Identity, n, kl).unwrap().win_rate_for(proc);
                println!("{proc} N={n} kl={kl}: id {id:.5} best {} t={:.2} w={:.5} opt {:.5} gap {:.5} ({tb:?}, {to:?}, iters {})", fam.as_str(), b.t, b.win_rate, o[0].win_rate, o[0].win_rate - b.win_rate, o[0].iterations);
            }
        }
    }
    let t0 = Instant::now();
    for _ in 0..1000 { theory::evaluate(&tr, 10.0, 4).unwrap(); }
    println!("evaluate: {:?}", t0.elapsed() / 1000);
    let p = infalign_core::TiltedPolicy::new(&tr, 10.0).unwrap();
    println!("panels {}", p.panel_count());
    for lam in [0.01, 1.0, 100.0, 1e4] { let p = infalign_core::TiltedPolicy::new(&tr, lam).unwrap(); println!("lam {lam} panels {}", p.panel_count()); }
}

use infalign_core::theory;
use infalign_core::Procedure;
fn main() {
    let proc: Procedure = std::env::args().nth(1).unwrap().parse().unwrap();
    let n: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let kls: Vec<f64> = std::env::args().skip(3).map(|s| s.parse().unwrap()).collect();
    let t0 = std::time::Instant::now();
    match theory::optimal_envelope(proc, n, &kls) {
        Ok(sols) => for s in sols { println!("lambda {} kl {} w {} iters {}", s.lambda, s.kl, s.win_rate, s.iterations); },
        Err(e) => println!("error {e}"),
    }
    println!("time {:?}", t0.elapsed());
}

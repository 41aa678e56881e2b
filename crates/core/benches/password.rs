//! The password hash alone, at the default costs (`PasswordParams::OWASP`: argon2id, 19 MiB, 2 passes), as
//! the server's hashing threads run it (a [`Verifier`] reusing its working area) and as a one-off check
//! (a fresh area each time).
//!
//! Its time bounds logins: `hash_threads` threads verify one password each at a time, so no server can sign in
//! more than `hash_threads / verify time` users a second. That ceiling assumes a second thread's hash costs
//! what one hash alone does; `parallel_2` checks it: two threads, each with its own [`Verifier`] (19 MiB each,
//! more than the last-level cache of small machines), verifying at the same time, as two hashing threads do
//! under a login flood. Its time per iteration is one hash *per thread*, so the honest two-thread ceiling is
//! `2 / parallel_2`. README (Performance) compares `msgr-load login` with these ceilings.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use msgr_core::password::{hash_password, verify_password, Verifier};
use std::sync::{Arc, Barrier};

fn argon2(c: &mut Criterion) {
    let phc = hash_password("correct horse").expect("hashes");
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let mut g = c.benchmark_group("argon2id_owasp");
    g.throughput(Throughput::Elements(1));
    // Each run takes tens of milliseconds: fewer samples keep the bench under a minute.
    g.sample_size(20);
    let mut verifier = Verifier::new();
    g.bench_function("verify_reused_area", |b| {
        b.iter(|| assert!(verifier.verify("correct horse", &phc)))
    });
    g.bench_function("verify_fresh_area", |b| {
        b.iter(|| assert!(verify_password("correct horse", &phc)))
    });
    g.finish();

    // Two hashing threads at once. The helper thread lives for the whole case and is released
    // by a barrier for each batch, so thread start-up is not timed.
    let mut g = c.benchmark_group("argon2id_owasp");
    g.throughput(Throughput::Elements(2));
    g.sample_size(20);
    g.bench_function("parallel_2", |b| {
        b.iter_custom(|iters| parallel_pair(&phc, iters))
    });
    g.finish();
}

/// Wall time of `iters` verifications on this thread while another thread does `iters` of its
/// own, both starting together (each with its own reused working area, warmed first).
fn parallel_pair(phc: &str, iters: u64) -> std::time::Duration {
    let start = Arc::new(Barrier::new(2));
    let helper = {
        let (start, phc) = (start.clone(), phc.to_owned());
        std::thread::spawn(move || {
            let mut v = Verifier::new();
            assert!(v.verify("correct horse", &phc));
            start.wait();
            for _ in 0..iters {
                assert!(v.verify("correct horse", &phc));
            }
        })
    };
    let mut v = Verifier::new();
    assert!(v.verify("correct horse", phc));
    start.wait();
    let t = std::time::Instant::now();
    for _ in 0..iters {
        assert!(v.verify("correct horse", phc));
    }
    helper.join().expect("helper thread");
    // Until both are done: the slower thread bounds a pair of hashing threads.
    t.elapsed()
}

criterion_group!(benches, argon2);
criterion_main!(benches);

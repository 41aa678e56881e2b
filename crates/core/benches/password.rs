//! The password hash alone, at the default costs (`PasswordParams::OWASP`: argon2id, 19 MiB, 2 passes), as
//! the server's hashing threads run it (a [`Verifier`] reusing its working area) and as a one-off check
//! (a fresh area each time).
//!
//! Its time bounds logins: `hash_threads` threads verify one password each at a time, so no server can sign in
//! more than `hash_threads / verify time` users a second. README (Performance) compares `msgr-load login`
//! with this ceiling.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use msgr_core::password::{hash_password, verify_password, Verifier};

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
}

criterion_group!(benches, argon2);
criterion_main!(benches);

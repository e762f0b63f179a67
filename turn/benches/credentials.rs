//! Cost of minting and checking TURN REST credentials, and of deriving the long-term keys the
//! TURN server checks MESSAGE-INTEGRITY against (per request, per configured secret).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use parlor_turn::{mint, CredentialValidator};

const NOW: u64 = 1_700_000_000;

fn bench(c: &mut Criterion) {
    let one = CredentialValidator::new(["primary-secret"]).unwrap();
    let three = CredentialValidator::new(["primary-secret", "old-1", "old-2"]).unwrap();
    let cred = one.mint("user-1234", 86_400, NOW);
    let old = mint(b"old-2", "user-1234", 86_400, NOW);

    c.bench_function("mint", |b| {
        b.iter(|| one.mint(black_box("user-1234"), 86_400, black_box(NOW)))
    });
    c.bench_function("validate/1 secret/valid", |b| {
        b.iter(|| {
            one.validate(black_box(&cred.username), black_box(&cred.credential), NOW)
                .unwrap()
        })
    });
    c.bench_function("validate/1 secret/wrong password", |b| {
        b.iter(|| {
            one.validate(
                black_box(&cred.username),
                black_box("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                NOW,
            )
            .unwrap_err()
        })
    });
    c.bench_function("validate/3 secrets/last matches", |b| {
        b.iter(|| {
            three
                .validate(black_box(&old.username), black_box(&old.credential), NOW)
                .unwrap()
        })
    });
    c.bench_function("validate/expired (no HMAC)", |b| {
        b.iter(|| {
            one.validate(
                black_box(&cred.username),
                black_box(&cred.credential),
                NOW + 86_401,
            )
            .unwrap_err()
        })
    });
    c.bench_function("long_term_keys/3 secrets", |b| {
        b.iter(|| {
            three
                .long_term_keys(black_box(&cred.username), "parlor", NOW)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

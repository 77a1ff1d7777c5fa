//! Ward clustering benchmark: exact vs micro-cluster approximation on
//! synthetic topic-like embeddings.
//!
//! ```text
//! cargo bench -p uno-core --bench cluster                       # 10k, 100k, 1M
//! cargo bench -p uno-core --bench cluster -- --sizes 10000,20000
//! UNO_CLUSTER_BENCH_SIZES=5000 cargo bench -p uno-core --bench cluster
//! ```
//!
//! Options (after `--`): `--sizes a,b,c`, `--exact-max N` (largest size to
//! also run exact Ward on; default 20000), `--threshold T` (default 4, the
//! method's), `--dim D` (default 384), `--topics K` (default 50),
//! `--micro K` (micro-clusters; default the library's), `--threads N`.
//!
//! Data: `K` topics of very different sizes (Zipf-like), each with a few
//! sub-topics; a vector is a unit-normalised sub-topic direction plus
//! Gaussian noise, normalised again, and all topics share a common direction
//! (real sentence embeddings are far from orthogonal). Deterministic.
//!
//! Targets checked: 1M vectors clustered in under 60 s, and an adjusted Rand
//! index ≥ 0.9 of the approximation against exact Ward wherever exact runs.

use std::time::{Duration, Instant};

use uno_core::cluster::{WardOptions, adjusted_rand_index, l2_normalize, ward_auto, ward_tree};

/// SplitMix64, as in the library (private there).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal pair (Box–Muller).
    fn normal2(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        (r * t.cos(), r * t.sin())
    }
    fn fill_normal(&mut self, out: &mut [f32], scale: f64) {
        for pair in out.chunks_mut(2) {
            let (a, b) = self.normal2();
            pair[0] = (a * scale) as f32;
            if pair.len() > 1 {
                pair[1] = (b * scale) as f32;
            }
        }
    }
}

/// Synthetic topic-like unit vectors and their topic ids.
struct Data {
    points: Vec<f32>,
    topics: Vec<usize>,
}

const SUBTOPICS: usize = 4;

fn generate(n: usize, dim: usize, topics: usize, threads: usize) -> Data {
    let seed = 0x5EED;
    let mut rng = Rng::new(seed, 0);
    let mut common = vec![0.0f32; dim];
    rng.fill_normal(&mut common, 1.0);
    l2_normalize(&mut common);
    // Sub-topic directions: common·0.6 + topic + 0.5·sub-topic, normalised.
    let mut dirs = vec![0.0f32; topics * SUBTOPICS * dim];
    for t in 0..topics {
        let mut topic = vec![0.0f32; dim];
        rng.fill_normal(&mut topic, 1.0);
        l2_normalize(&mut topic);
        for s in 0..SUBTOPICS {
            let mut sub = vec![0.0f32; dim];
            rng.fill_normal(&mut sub, 1.0);
            l2_normalize(&mut sub);
            let row = &mut dirs[(t * SUBTOPICS + s) * dim..(t * SUBTOPICS + s + 1) * dim];
            for k in 0..dim {
                row[k] = 0.6 * common[k] + topic[k] + 0.45 * sub[k];
            }
            l2_normalize(row);
        }
    }
    // Zipf-like topic weights (1/(rank+3)): the biggest topic is ~10× the smallest.
    let weights: Vec<f64> = (0..topics).map(|t| 1.0 / (t as f64 + 3.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(topics);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut points = vec![0.0f32; n * dim];
    let mut labels = vec![0usize; n];
    let rows_per = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (c, (pts, labs)) in points
            .chunks_mut(rows_per * dim)
            .zip(labels.chunks_mut(rows_per))
            .enumerate()
        {
            let (dirs, cdf) = (&dirs, &cdf);
            s.spawn(move || {
                for (i, (row, lab)) in pts.chunks_mut(dim).zip(labs.iter_mut()).enumerate() {
                    let mut r = Rng::new(seed, 1 + (c * rows_per + i) as u64);
                    let u = r.uniform();
                    let t = cdf.iter().position(|&c| u <= c).unwrap_or(topics - 1);
                    let s = (r.next() % SUBTOPICS as u64) as usize;
                    // Noise of norm ~0.8 against a unit direction.
                    r.fill_normal(row, 0.8 / (dim as f64).sqrt());
                    let d = &dirs[(t * SUBTOPICS + s) * dim..(t * SUBTOPICS + s + 1) * dim];
                    for (x, &c) in row.iter_mut().zip(d) {
                        *x += c;
                    }
                    l2_normalize(row);
                    *lab = t;
                }
            });
        }
    });
    Data {
        points,
        topics: labels,
    }
}

struct Args {
    sizes: Vec<usize>,
    exact_max: usize,
    threshold: f64,
    dim: usize,
    topics: usize,
    micro: Option<usize>,
    threads: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        exact_max: 20_000,
        threshold: 4.0,
        dim: 384,
        topics: 50,
        micro: None,
        threads: 0,
    };
    let list = |s: &str| -> Vec<usize> {
        s.split(',')
            .filter_map(|v| v.trim().replace('_', "").parse().ok())
            .collect()
    };
    if let Ok(s) = std::env::var("UNO_CLUSTER_BENCH_SIZES") {
        a.sizes = list(&s);
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        let mut used = true;
        match argv[i].as_str() {
            "--sizes" => a.sizes = list(&val),
            "--exact-max" => a.exact_max = val.parse().unwrap_or(a.exact_max),
            "--threshold" => a.threshold = val.parse().unwrap_or(a.threshold),
            "--dim" => a.dim = val.parse().unwrap_or(a.dim),
            "--topics" => a.topics = val.parse().unwrap_or(a.topics),
            "--micro" => a.micro = val.parse().ok(),
            "--threads" => a.threads = val.parse().unwrap_or(0),
            _ => used = false, // e.g. cargo's `--bench`
        }
        i += if used { 2 } else { 1 };
    }
    a
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// CPU time (user + system, all threads) of this process so far, from
/// `/proc/self/stat` (Linux; `None` elsewhere). Unlike wall time it hardly
/// moves when other processes compete for the cores.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `f`, returning its result, wall time and CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Option<Duration>) {
    let (c0, t0) = (cpu_time(), Instant::now());
    let out = f();
    let wall = t0.elapsed();
    let cpu = cpu_time().zip(c0).map(|(b, a)| b.saturating_sub(a));
    (out, wall, cpu)
}

fn cpu_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), secs)
}

fn main() {
    let args = parse_args();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut options = WardOptions {
        exact_max_points: 0, // force the approximation; exact runs separately
        threads: args.threads,
        ..WardOptions::default()
    };
    if let Some(m) = args.micro {
        options.micro_clusters = m;
    }
    println!(
        "Ward clustering: dim {}, {} topics × {SUBTOPICS} sub-topics, threshold {}, {} micro-clusters, {} threads available",
        args.dim, args.topics, args.threshold, options.micro_clusters, threads
    );
    println!();
    println!(
        "{:>9} | {:>6} | {:>8} | {:>8} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} | {:>7}",
        "n",
        "gen s",
        "exact s",
        "(cpu s)",
        "exact k",
        "approx s",
        "(cpu s)",
        "approx k",
        "ARI a/e",
        "ARI e/t",
        "ARI a/t"
    );
    println!("{}", "-".repeat(112));
    let mut failures = Vec::new();
    for &n in &args.sizes {
        let (data, gen_time, _) = timed(|| generate(n, args.dim, args.topics, threads));

        let exact = (n <= args.exact_max).then(|| {
            timed(|| {
                ward_tree(&data.points, args.dim, args.threads)
                    .expect("valid data")
                    .cut(args.threshold)
            })
        });
        let (approx, approx_time, approx_cpu) = timed(|| {
            ward_auto(&data.points, args.dim, args.threshold, &options).expect("valid data")
        });

        let ari = |a: &[usize], b: &[usize]| adjusted_rand_index(a, b).expect("same length");
        let ari_at = ari(&approx.labels, &data.topics);
        let (exact_s, exact_cpu, exact_k, ari_ae, ari_et) = match &exact {
            Some((c, wall, cpu)) => (
                secs(*wall),
                cpu_secs(*cpu),
                c.n_clusters.to_string(),
                format!("{:.4}", ari(&approx.labels, &c.labels)),
                format!("{:.4}", ari(&c.labels, &data.topics)),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:>9} | {:>6} | {:>8} | {:>8} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} | {:>7.4}",
            n,
            secs(gen_time),
            exact_s,
            exact_cpu,
            exact_k,
            secs(approx_time),
            cpu_secs(approx_cpu),
            approx.n_clusters,
            ari_ae,
            ari_et,
            ari_at
        );
        if let Some(a) = &approx.approximation {
            println!(
                "{:>9}   approximation: {} micro-clusters, max internal height {:.2}",
                "", a.micro_clusters, a.max_internal_height
            );
        }
        if n >= 1_000_000 && approx_time >= Duration::from_secs(60) {
            failures.push(format!(
                "{n} vectors took {} s (target < 60 s)",
                secs(approx_time)
            ));
        }
        if let Some((c, _, _)) = &exact {
            let v = ari(&approx.labels, &c.labels);
            if v < 0.9 {
                failures.push(format!(
                    "{n} vectors: ARI approx vs exact {v:.4} (target ≥ 0.9)"
                ));
            }
        }
    }
    println!();
    println!(
        "ARI a/e: approximation vs exact Ward; e/t, a/t: vs the generating topics (informative)."
    );
    println!(
        "cpu s: CPU time of all threads (robust to other load; wall ≈ cpu / cores when idle)."
    );
    let checked_1m = args.sizes.iter().any(|&n| n >= 1_000_000);
    let checked_ari = args.sizes.iter().any(|&n| n <= args.exact_max);
    println!(
        "target 1M in < 60 s: {}",
        if !checked_1m {
            "not run"
        } else if failures.iter().any(|f| f.contains("took")) {
            "FAIL"
        } else {
            "PASS"
        }
    );
    println!(
        "target ARI(approx, exact) ≥ 0.9: {}",
        if !checked_ari {
            "not run"
        } else if failures.iter().any(|f| f.contains("ARI")) {
            "FAIL"
        } else {
            "PASS"
        }
    );
    for f in &failures {
        println!("FAIL: {f}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

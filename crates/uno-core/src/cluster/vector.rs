//! The method's vector conventions (design §2.5 "Embeddings").

use super::error::ClusterError;

/// Scales `v` to unit Euclidean length in place and returns its original
/// length. A zero vector (or one whose length is not finite) is left as it
/// is, since it has no direction to keep.
pub fn l2_normalize(v: &mut [f32]) -> f32 {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x = (f64::from(*x) * inv) as f32);
    }
    norm as f32
}

/// UNO's combined clustering vector: the query embedding and the rules
/// embedding are each L2-normalised, concatenated (query first) and the
/// result normalised again, so each half weighs the same
/// (`len = query.len() + rules.len()`).
pub fn combine(query: &[f32], rules: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; query.len() + rules.len()];
    // Cannot fail: `out` has exactly the right length.
    let _ = combine_into(query, rules, &mut out);
    out
}

/// [`combine`] into a caller-provided buffer of length
/// `query.len() + rules.len()`.
///
/// # Errors
///
/// [`ClusterError::Length`] when `out` has another length (it is left
/// untouched).
pub fn combine_into(query: &[f32], rules: &[f32], out: &mut [f32]) -> Result<(), ClusterError> {
    let expected = query.len() + rules.len();
    if out.len() != expected {
        return Err(ClusterError::Length {
            what: "output buffer",
            got: out.len(),
            expected,
        });
    }
    let (q, r) = out.split_at_mut(query.len());
    q.copy_from_slice(query);
    r.copy_from_slice(rules);
    l2_normalize(q);
    l2_normalize(r);
    l2_normalize(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_and_combine() {
        let mut v = [3.0f32, 4.0];
        assert_eq!(l2_normalize(&mut v), 5.0);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0f32; 3];
        assert_eq!(l2_normalize(&mut z), 0.0);
        assert_eq!(z, [0.0; 3]);

        let c = combine(&[3.0, 4.0], &[0.0, 0.0, 2.0]);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let expect = [0.6 * s, 0.8 * s, 0.0, 0.0, s];
        assert!(
            c.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-7),
            "{c:?}"
        );
        // An all-zero half leaves the other half unit length.
        assert_eq!(combine(&[0.0, 0.0], &[0.0, 5.0]), vec![0.0, 0.0, 0.0, 1.0]);
        let mut small = [0.0f32; 2];
        assert!(combine_into(&[1.0], &[1.0, 2.0], &mut small).is_err());
    }
}

//! The one error type of the clustering module.

/// Why a clustering or routing call rejected its input.
///
/// These are caller bugs or corrupt data (an embedding batch with a NaN, a
/// matrix of the wrong width), reported instead of panicking so that a
/// background job can log them and carry on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    /// The vector dimension was zero.
    #[error("vector dimension must be at least 1")]
    ZeroDim,
    /// The matrix length is not a multiple of the dimension.
    #[error("matrix of {len} values is not a whole number of rows of {dim}")]
    Ragged {
        /// Number of values given.
        len: usize,
        /// Dimension given.
        dim: usize,
    },
    /// A value is NaN or infinite.
    #[error("value at flat index {index} is not finite")]
    NonFinite {
        /// Flat index of the first bad value.
        index: usize,
    },
    /// Two inputs that must have the same number of entries do not.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    Length {
        /// Which input is off.
        what: &'static str,
        /// Entries given.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
    /// A cluster weight is not a positive finite number.
    #[error("weight at index {index} is not positive and finite")]
    BadWeight {
        /// Index of the first bad weight.
        index: usize,
    },
    /// The distance threshold is NaN.
    #[error("distance threshold is NaN")]
    NanThreshold,
    /// A quantile is outside `[0, 1]`.
    #[error("quantile {0} is outside [0, 1]")]
    BadQuantile(f64),
    /// A label refers to a cluster that does not exist.
    #[error("label {label} at index {index} is not below the cluster count {clusters}")]
    LabelOutOfRange {
        /// Index of the offending point.
        index: usize,
        /// Its label.
        label: usize,
        /// Number of clusters (centroid rows).
        clusters: usize,
    },
}

//! Clustering and routing maths for the UNO method (design §2.5, §2.9, §6.4).
//!
//! UNO groups logs by Ward agglomerative clustering of their combined
//! query-and-rules embeddings, cut at a distance threshold (4 by default), and
//! routes a new query to the nearest cluster centroid. Everything here is pure
//! CPU work on `f32` row-major matrices (`n × dim`, one vector per row), so it
//! can run in the background worker or a tool without any runtime.
//!
//! - [`ward()`] / [`ward_tree`]: exact Ward clustering with scikit-learn's
//!   conventions (`AgglomerativeClustering(distance_threshold=t,
//!   linkage="ward")`), verified against scikit-learn by a golden test.
//! - [`ward_auto`]: exact up to [`WardOptions::exact_max_points`] points,
//!   micro-cluster approximation above (1M × 384 in well under a minute).
//! - [`adjusted_rand_index`]: scikit-learn's `adjusted_rand_score`, to compare
//!   partitions.
//! - [`nearest`], [`centroids`], [`unseen_thresholds`], [`add_to_centroid`]:
//!   the routing side; [`calibrate`] and [`route_choice`]: acceptance radii
//!   calibrated against negatives, and the router's decision with its
//!   minority guard.
//! - [`l2_normalize`], [`combine`]: the method's vector conventions.
//!
//! Functions that take a user-supplied matrix validate it and return
//! [`ClusterError`] rather than panic, because a bad embedding batch must not
//! take the worker down.

mod agree;
mod approx;
mod ari;
mod average;
mod calibrate;
mod dendrogram;
mod error;
mod examples;
mod kmeans;
mod parallel;
mod projection;
mod rng;
mod route;
mod templates;
mod vector;
mod ward;

pub use agree::merge_agreeing;
pub use approx::{Approximation, WardOptions, ward_auto};
pub use ari::adjusted_rand_index;
pub use average::{AVERAGE_EXACT_MAX, average_auto};
pub use calibrate::{
    Calibration, CalibrationOptions, ClusterCalibration, RoutePoints, calibrate, route_choice,
};
pub use dendrogram::{Clustering, Dendrogram, Merge};
pub use error::ClusterError;
pub use examples::{
    Candidate, DEFINING_MIN_EXAMPLES, DEFINING_SHARE, ExampleCalibration,
    ExampleClusterCalibration, ExampleInputs, RouteMarks, STRANGER_SHARE, admits, admits_query,
    best_two, calibrate_examples, choose_by_examples, defining_features, edit_examples,
    route_marks, select_examples, sparse_dot,
};
pub use route::{add_to_centroid, centroids, linear_quantile, nearest, unseen_thresholds};
pub use templates::{
    MAX_TEMPLATES, RouteTemplate, TEMPLATE_MIN_SHARE, TEMPLATE_WORD_SHARE, cluster_templates,
    fits_template, question_forms,
};
pub use vector::{combine, combine_into, l2_normalize};
pub use ward::{ward, ward_tree, ward_tree_weighted};

/// What every `*_auto` clustering checks first: a cut that is a number
/// and a finite `n × dim` matrix of points; returns `n`.
fn check_cut_input(points: &[f32], dim: usize, threshold: f64) -> Result<usize, ClusterError> {
    if threshold.is_nan() {
        return Err(ClusterError::NanThreshold);
    }
    check_matrix(points, dim)
}

/// Checks that `data` is a finite `n × dim` row-major matrix and returns `n`.
fn check_matrix<T: Copy + Into<f64>>(data: &[T], dim: usize) -> Result<usize, ClusterError> {
    if dim == 0 {
        return Err(ClusterError::ZeroDim);
    }
    if !data.len().is_multiple_of(dim) {
        return Err(ClusterError::Ragged {
            len: data.len(),
            dim,
        });
    }
    if let Some(index) = data.iter().position(|v| !(*v).into().is_finite()) {
        return Err(ClusterError::NonFinite { index });
    }
    Ok(data.len() / dim)
}

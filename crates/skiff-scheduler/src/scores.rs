//! Scores for the nodes that passed the filters, each 0–100, combined with upstream's
//! default weights: least-allocated resources (1), balanced allocation (1), and spreading
//! the pods of one owner across nodes (2, as PodTopologySpread's default constraints).

use crate::cache::{NodeInfo, PodInfo};

pub fn score(pod: &PodInfo, node: &NodeInfo, most_of_owner: u32) -> i64 {
    let cpu = fraction(
        node.scoring.milli_cpu + pod.scoring.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let memory = fraction(
        node.scoring.memory + pod.scoring.memory,
        node.allocatable.memory,
    );
    let least_allocated = ((1.0 - cpu) * 100.0 + (1.0 - memory) * 100.0) / 2.0;
    let balanced = (1.0 - (cpu - memory).abs() / 2.0) * 100.0;
    let spread = match &pod.owner {
        Some(owner) if most_of_owner > 0 => {
            let here = node.owners.get(owner).copied().unwrap_or(0);
            100.0 * f64::from(most_of_owner - here.min(most_of_owner)) / f64::from(most_of_owner)
        }
        _ => 100.0,
    };
    (least_allocated + balanced + 2.0 * spread).round() as i64
}

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).clamp(0.0, 1.0)
}

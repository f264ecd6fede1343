//! Reading a scrape in the Prometheus text format.

/// The sum of the samples of metric `name` whose label text contains `labels` (`""`: every
/// sample), e.g. `metric_value(text, "x_total", "reason=\"kicked\"")`.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name && key.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

package io.moecluster.router;

import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.DataPointSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;

/** Reads the default Prometheus registry, for tests. */
final class Metrics {
  private Metrics() {}

  /** The family named {@code name} (a counter's name with or without {@code _total}), or null. */
  static MetricSnapshot family(String name) {
    String bare = name.endsWith("_total") ? name.substring(0, name.length() - "_total".length()) : name;
    for (MetricSnapshot s : PrometheusRegistry.defaultRegistry.scrape()) {
      String n = s.getMetadata().getPrometheusName();
      if (n.equals(bare) || n.equals(name)) {
        return s;
      }
    }
    return null;
  }

  /** Sum over the family's data points (with the label, if given): values, or counts of histograms. */
  static double sum(String name, String... label) {
    MetricSnapshot s = family(name);
    if (s == null) {
      throw new AssertionError("no metric " + name + " registered");
    }
    double sum = 0;
    for (DataPointSnapshot p : s.getDataPoints()) {
      if (label.length == 2 && !label[1].equals(p.getLabels().get(label[0]))) {
        continue;
      }
      sum += switch (p) {
        case CounterSnapshot.CounterDataPointSnapshot c -> c.getValue();
        case GaugeSnapshot.GaugeDataPointSnapshot g -> g.getValue();
        case HistogramSnapshot.HistogramDataPointSnapshot h -> h.getCount();
        default -> 0;
      };
    }
    return sum;
  }

  /** Whether the family has a data point with {@code label = value}. */
  static boolean exists(String name, String label, String value) {
    MetricSnapshot s = family(name);
    return s != null && s.getDataPoints().stream().anyMatch(p -> value.equals(p.getLabels().get(label)));
  }
}

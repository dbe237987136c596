package io.moecluster.deploy.stats;

import io.moecluster.deploy.stats.PrometheusText.Sample;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * The terminal report of {@code moe stats}: from the scrapes of some nodes' {@code /metrics}, the
 * tokens routed per layer and expert (a table and a heat map), each expert node's hosting, cache
 * and prefetch figures, the router's prefetch accuracy per layer, the gateway's requests and
 * latencies, and the cluster's members. Counters of several targets are added up; a target that
 * lacks a family adds nothing.
 */
public final class StatsReport {
  /** Shades of the heat map, from none to the most routed. */
  static final String SHADES = " ░▒▓█";

  private StatsReport() {}

  /** One scraped endpoint. */
  public record Scrape(String target, PrometheusText metrics) {}

  public static List<String> render(List<Scrape> scrapes) {
    List<String> out = new ArrayList<>();
    routing(scrapes, out);
    expertNodes(scrapes, out);
    prefetch(scrapes, out);
    gateway(scrapes, out);
    cluster(scrapes, out);
    return out;
  }

  // ---- tokens routed per layer x expert

  private static void routing(List<Scrape> scrapes, List<String> out) {
    Map<Integer, Map<Integer, Double>> routed = new TreeMap<>();
    for (Scrape s : scrapes) {
      for (Sample m : s.metrics().samples("moe_tokens_routed_total")) {
        Integer layer = intLabel(m, "layer");
        Integer expert = intLabel(m, "expert");
        if (layer != null && expert != null) {
          routed.computeIfAbsent(layer, l -> new TreeMap<>()).merge(expert, m.value(), Double::sum);
        }
      }
    }
    out.add("Tokens routed per layer x expert (moe_tokens_routed_total):");
    if (routed.isEmpty()) {
      out.add("  none yet (no router among the targets, or no request served)");
      out.add("");
      return;
    }
    int experts = 1 + routed.values().stream().flatMap(m -> m.keySet().stream()).mapToInt(Integer::intValue).max()
        .orElse(0);
    double max = routed.values().stream().flatMap(m -> m.values().stream()).mapToDouble(Double::doubleValue).max()
        .orElse(0);
    int width = Math.max(6, String.format(Locale.ROOT, "%.0f", max).length() + 1);
    StringBuilder header = new StringBuilder("  layer");
    for (int e = 0; e < experts; e++) {
      header.append(String.format(Locale.ROOT, "%" + width + "s", "e" + e));
    }
    header.append(String.format(Locale.ROOT, "%" + (width + 2) + "s", "total"));
    out.add(header.toString());
    for (var layer : routed.entrySet()) {
      StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "  %5d", layer.getKey()));
      double total = 0;
      for (int e = 0; e < experts; e++) {
        double v = layer.getValue().getOrDefault(e, 0.0);
        total += v;
        row.append(String.format(Locale.ROOT, "%" + width + ".0f", v));
      }
      row.append(String.format(Locale.ROOT, "%" + (width + 2) + ".0f", total));
      out.add(row.toString());
    }
    out.add("  heat map (darker = more tokens; '" + SHADES.charAt(SHADES.length() - 1) + "' = the busiest expert, "
        + String.format(Locale.ROOT, "%.0f", max) + " tokens):");
    for (var layer : routed.entrySet()) {
      StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "  %5d |", layer.getKey()));
      for (int e = 0; e < experts; e++) {
        row.append(shade(layer.getValue().getOrDefault(e, 0.0), max));
      }
      out.add(row.append('|').toString());
    }
    out.add("");
  }

  static char shade(double v, double max) {
    if (v <= 0 || max <= 0) {
      return SHADES.charAt(0);
    }
    int levels = SHADES.length() - 1;
    int i = (int) Math.ceil(v / max * levels);
    return SHADES.charAt(Math.max(1, Math.min(levels, i)));
  }

  // ---- expert nodes

  private static void expertNodes(List<Scrape> scrapes, List<String> out) {
    Map<String, String> targetOf = new TreeMap<>();
    for (Scrape s : scrapes) {
      for (String name : List.of("moe_expert_cache_budget_bytes", "moe_sharding_entities")) {
        for (Sample m : s.metrics().samples(name)) {
          targetOf.putIfAbsent(m.label("node"), s.target());
        }
      }
    }
    targetOf.remove("");
    out.add("Expert nodes:");
    if (targetOf.isEmpty()) {
      out.add("  none among the targets");
      out.add("");
      return;
    }
    out.add(String.format(Locale.ROOT, "  %-30s %7s %9s %9s %8s %21s %9s  %s", "node", "experts", "hits", "misses",
        "hit rate", "warm / budget", "evictions", "prefetch received/loads/useful/wasted"));
    for (var e : targetOf.entrySet()) {
      String node = e.getKey();
      double hits = sumNode(scrapes, "moe_expert_cache_hits_total", node);
      double misses = sumNode(scrapes, "moe_expert_cache_misses_total", node);
      double warm = sumNode(scrapes, "moe_expert_cache_warm_bytes", node);
      double budget = sumNode(scrapes, "moe_expert_cache_budget_bytes", node);
      double evictions = sumNode(scrapes, "moe_expert_cache_evictions_total", node);
      String experts = hasNode(scrapes, "moe_sharding_entities", node)
          ? String.format(Locale.ROOT, "%.0f", sumNode(scrapes, "moe_sharding_entities", node))
          : "?";
      String rate = hits + misses == 0 ? "-" : String.format(Locale.ROOT, "%.1f%%", 100 * hits / (hits + misses));
      out.add(String.format(Locale.ROOT, "  %-30s %7s %9.0f %9.0f %8s %21s %9.0f  %.0f/%.0f/%.0f/%.0f",
          shortNode(node), experts, hits, misses, rate, bytes(warm) + " / " + bytes(budget), evictions,
          sumNode(scrapes, "moe_prefetch_received_total", node), sumNode(scrapes, "moe_prefetch_loads_total", node),
          sumNode(scrapes, "moe_prefetch_useful_total", node), sumNode(scrapes, "moe_prefetch_wasted_total", node)));
    }
    out.add("");
  }

  // ---- prefetch, router side

  private static void prefetch(List<Scrape> scrapes, List<String> out) {
    Map<Integer, double[]> byLayer = new TreeMap<>(); // issued, routed, predicted
    for (Scrape s : scrapes) {
      add(byLayer, s.metrics().samples("moe_prefetch_issued_total"), 0);
      add(byLayer, s.metrics().samples("moe_prefetch_routed_total"), 1);
      add(byLayer, s.metrics().samples("moe_prefetch_predicted_total"), 2);
    }
    out.add("Prefetch (router): experts hinted per layer, and how many real top-k choices were predicted:");
    if (byLayer.isEmpty()) {
      out.add("  none yet (no router among the targets, prefetch off, or no request served)");
      out.add("");
      return;
    }
    out.add(String.format(Locale.ROOT, "  %5s %10s %10s %10s %9s", "layer", "issued", "routed", "predicted", "accuracy"));
    double routed = 0;
    double predicted = 0;
    for (var e : byLayer.entrySet()) {
      double[] v = e.getValue();
      routed += v[1];
      predicted += v[2];
      out.add(String.format(Locale.ROOT, "  %5d %10.0f %10.0f %10.0f %9s", e.getKey(), v[0], v[1], v[2],
          v[1] == 0 ? "-" : String.format(Locale.ROOT, "%.1f%%", 100 * v[2] / v[1])));
    }
    out.add(String.format(Locale.ROOT, "  prediction accuracy overall: %s",
        routed == 0 ? "-" : String.format(Locale.ROOT, "%.1f%%", 100 * predicted / routed)));
    out.add("");
  }

  private static void add(Map<Integer, double[]> byLayer, List<Sample> samples, int column) {
    for (Sample m : samples) {
      Integer layer = intLabel(m, "layer");
      if (layer != null) {
        byLayer.computeIfAbsent(layer, l -> new double[3])[column] += m.value();
      }
    }
  }

  // ---- gateway

  private static void gateway(List<Scrape> scrapes, List<String> out) {
    boolean any = scrapes.stream().anyMatch(s -> s.metrics().types().containsKey("moe_time_to_first_token_seconds")
        || s.metrics().has("moe_requests_running"));
    out.add("Gateway:");
    if (!any) {
      out.add("  none among the targets");
      out.add("");
      return;
    }
    Map<String, Double> byCode = new TreeMap<>();
    for (Scrape s : scrapes) {
      for (Sample m : s.metrics().samples("moe_requests_total")) {
        byCode.merge(m.label("code"), m.value(), Double::sum);
      }
    }
    double requests = byCode.values().stream().mapToDouble(Double::doubleValue).sum();
    StringBuilder codes = new StringBuilder();
    for (var e : byCode.entrySet()) {
      codes.append(codes.length() == 0 ? " (" : ", ").append(e.getKey()).append(' ')
          .append(String.format(Locale.ROOT, "%.0f", e.getValue()));
    }
    if (codes.length() > 0) {
      codes.append(')');
    }
    out.add(String.format(Locale.ROOT, "  requests: %.0f%s; running %.0f, waiting %.0f", requests, codes,
        total(scrapes, "moe_requests_running"), total(scrapes, "moe_requests_waiting")));
    out.add(String.format(Locale.ROOT, "  tokens: prompt %.0f, generated %.0f", total(scrapes, "moe_prompt_tokens_total"),
        total(scrapes, "moe_generated_tokens_total")));
    out.add("  time to first token: " + average(scrapes, "moe_time_to_first_token_seconds"));
    out.add("  inter-token latency: " + average(scrapes, "moe_inter_token_latency_seconds"));
    out.add("  request duration:    " + average(scrapes, "moe_request_duration_seconds"));
    out.add("");
  }

  private static String average(List<Scrape> scrapes, String histogram) {
    double count = total(scrapes, histogram + "_count");
    if (count == 0) {
      return "-";
    }
    double avg = total(scrapes, histogram + "_sum") / count;
    return String.format(Locale.ROOT, "avg %s over %.0f", seconds(avg), count);
  }

  // ---- cluster

  private static void cluster(List<Scrape> scrapes, List<String> out) {
    // Each node reports its own view: take the largest count per (role, status).
    Map<String, Map<String, Double>> members = new TreeMap<>();
    for (Scrape s : scrapes) {
      Map<String, Map<String, Double>> view = new TreeMap<>();
      for (Sample m : s.metrics().samples("moe_cluster_members")) {
        view.computeIfAbsent(m.label("role"), r -> new TreeMap<>()).merge(m.label("status"), m.value(), Double::sum);
      }
      view.forEach((role, byStatus) -> byStatus.forEach((status, n) ->
          members.computeIfAbsent(role, r -> new TreeMap<>()).merge(status, n, Math::max)));
    }
    if (members.isEmpty()) {
      return;
    }
    List<String> parts = new ArrayList<>();
    members.forEach((role, byStatus) -> byStatus.forEach((status, n) ->
        parts.add(String.format(Locale.ROOT, "%s %s %.0f", role, status, n))));
    out.add("Cluster members (role status count): " + String.join(", ", parts));
    double unreachable = 0;
    for (Scrape s : scrapes) {
      unreachable = Math.max(unreachable, s.metrics().sum("moe_cluster_unreachable_members"));
    }
    if (unreachable > 0) {
      out.add(String.format(Locale.ROOT, "  unreachable members: %.0f", unreachable));
    }
  }

  // ---- helpers

  private static double total(List<Scrape> scrapes, String name) {
    double t = 0;
    for (Scrape s : scrapes) {
      t += s.metrics().sum(name);
    }
    return t;
  }

  private static double sumNode(List<Scrape> scrapes, String name, String node) {
    double t = 0;
    for (Scrape s : scrapes) {
      t += s.metrics().sum(name, m -> m.label("node").equals(node));
    }
    return t;
  }

  private static boolean hasNode(List<Scrape> scrapes, String name, String node) {
    return scrapes.stream().anyMatch(s -> s.metrics().samples(name).stream().anyMatch(m -> m.label("node").equals(node)));
  }

  private static Integer intLabel(Sample m, String key) {
    try {
      return Integer.valueOf(m.label(key));
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /** {@code pekko://moe@127.0.0.1:25521} as {@code 127.0.0.1:25521}. */
  static String shortNode(String node) {
    int at = node.indexOf('@');
    return at >= 0 ? node.substring(at + 1) : node;
  }

  static String bytes(double b) {
    String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < units.length - 1) {
      b /= 1024;
      u++;
    }
    return u == 0 ? String.format(Locale.ROOT, "%.0f %s", b, units[u]) : String.format(Locale.ROOT, "%.1f %s", b, units[u]);
  }

  static String seconds(double s) {
    return s < 1 ? String.format(Locale.ROOT, "%.1f ms", s * 1000) : String.format(Locale.ROOT, "%.2f s", s);
  }

  /** The families the report reads (a target without some of them is not an error). */
  public static final List<String> FAMILIES = List.of(
      "moe_tokens_routed_total", "moe_expert_cache_hits_total", "moe_expert_cache_misses_total",
      "moe_expert_cache_warm_bytes", "moe_expert_cache_budget_bytes", "moe_expert_cache_evictions_total",
      "moe_sharding_entities", "moe_prefetch_received_total", "moe_prefetch_loads_total", "moe_prefetch_useful_total",
      "moe_prefetch_wasted_total", "moe_prefetch_issued_total", "moe_prefetch_routed_total",
      "moe_prefetch_predicted_total", "moe_requests_total", "moe_requests_running", "moe_requests_waiting",
      "moe_prompt_tokens_total", "moe_generated_tokens_total", "moe_time_to_first_token_seconds",
      "moe_inter_token_latency_seconds", "moe_request_duration_seconds", "moe_cluster_members");
}

package io.moecluster.deploy.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class PrometheusTextTest {
  private static final String TEXT = """
      # HELP moe_tokens_routed_total Rows
      # TYPE moe_tokens_routed_total counter
      moe_tokens_routed_total{expert="0",layer="0"} 30.0
      moe_tokens_routed_total{expert="1",layer="0"} 10.0
      moe_tokens_routed_total{expert="1",layer="1"} 40.0
      # TYPE moe_time_to_first_token_seconds histogram
      moe_time_to_first_token_seconds_bucket{le="0.005"} 0
      moe_time_to_first_token_seconds_bucket{le="+Inf"} 4
      moe_time_to_first_token_seconds_count 4
      moe_time_to_first_token_seconds_sum 0.2
      # TYPE moe_requests_total counter
      moe_requests_total{code="OK"} 3.0
      moe_requests_total{code="RESOURCE_EXHAUSTED"} 1.0 1700000000000
      # TYPE moe_expert_cache_hits_total counter
      moe_expert_cache_hits_total{node="pekko://moe@127.0.0.1:25521"} 9.0
      # TYPE moe_expert_cache_misses_total counter
      moe_expert_cache_misses_total{node="pekko://moe@127.0.0.1:25521"} 1.0
      # TYPE moe_expert_cache_budget_bytes gauge
      moe_expert_cache_budget_bytes{node="pekko://moe@127.0.0.1:25521"} 2097152.0
      # TYPE odd gauge
      odd{path="a \\"quoted\\" \\\\ value\\n"} NaN
      """;

  @Test
  void parsesTypesLabelsEscapesAndValues() {
    PrometheusText t = PrometheusText.parse(TEXT);
    assertEquals("counter", t.types().get("moe_tokens_routed_total"));
    assertEquals("histogram", t.types().get("moe_time_to_first_token_seconds"));
    assertEquals(80.0, t.sum("moe_tokens_routed_total"));
    assertEquals(40.0, t.sum("moe_tokens_routed_total", s -> s.label("layer").equals("0")));
    assertEquals(Double.POSITIVE_INFINITY, Double.parseDouble("Infinity"));
    assertEquals("+Inf", t.samples("moe_time_to_first_token_seconds_bucket").get(1).label("le"));
    assertEquals(1.0, t.sum("moe_requests_total", s -> s.label("code").equals("RESOURCE_EXHAUSTED")));
    assertEquals("a \"quoted\" \\ value\n", t.samples("odd").get(0).label("path"));
    assertTrue(Double.isNaN(t.samples("odd").get(0).value()));
  }

  @Test
  void aBrokenLineIsNamed() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> PrometheusText.parse("ok 1\nbroken{a=\"x} 2\n"));
    assertTrue(e.getMessage().startsWith("line 2 "), e.getMessage());
  }

  @Test
  void reportRendersTablesFromScrapes() {
    List<String> lines = StatsReport.render(List.of(new StatsReport.Scrape("h:1", PrometheusText.parse(TEXT))));
    assertTrue(lines.contains("  layer    e0    e1   total"), String.join("\n", lines));
    assertTrue(lines.contains("      0    30    10      40"), String.join("\n", lines));
    assertTrue(lines.contains("      1     0    40      40"), String.join("\n", lines));
    assertTrue(lines.contains("      0 |▓░|"), String.join("\n", lines));
    assertTrue(lines.contains("      1 | █|"), String.join("\n", lines));
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("  127.0.0.1:25521") && l.contains("90.0%")
        && l.contains("0 B / 2.0 MiB")), String.join("\n", lines));
    assertTrue(lines.contains("  requests: 4 (OK 3, RESOURCE_EXHAUSTED 1); running 0, waiting 0"), String.join("\n", lines));
    assertTrue(lines.contains("  time to first token: avg 50.0 ms over 4"), String.join("\n", lines));
  }

  @Test
  void shadesGrowWithTheValue() {
    assertEquals(' ', StatsReport.shade(0, 10));
    assertEquals('░', StatsReport.shade(1, 10));
    assertEquals('█', StatsReport.shade(10, 10));
  }
}

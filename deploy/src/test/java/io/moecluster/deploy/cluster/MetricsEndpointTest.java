package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.grpc.ManagedChannel;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.MoeRun;
import io.moecluster.deploy.stats.PrometheusText;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.SamplingParams;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A {@code moe serve} node (gateway, router and expert in this JVM) on a TINY checkpoint with
 * {@code /metrics} on a free port: a real HTTP scrape shows every role's families with their
 * types, Generate requests move the counters, {@code moe stats} prints its tables from it, and the
 * Grafana dashboard names only metrics the scrape has.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class MetricsEndpointTest {
  private static final int REQUESTS = 3;
  private static final int MAX_TOKENS = 5;

  @TempDir static Path dir;
  private ClusterNode node;
  private ManagedChannel channel;
  private HostPort metrics;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private PrometheusText before;
  private PrometheusText after;
  private int promptTokens;

  @BeforeAll
  void startNode() throws Exception {
    Path model = dir.resolve("tiny");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);
    node = ClusterNode.start(new NodeSpec(EnumSet.allOf(Role.class), "127.0.0.1", 0, List.of(), model, "127.0.0.1", 0,
        Map.of("moe.expert.compute-threads", "1", "moe.router.compute-threads", "1",
            "moe.metrics.sharding-poll-interval", "300ms"),
        0));
    metrics = node.metricsAddress().orElseThrow();
    assertTrue(metrics.port() > 0);
    channel = Gateways.channel(node.grpcAddress().orElseThrow());
    Gateways.awaitServing(channel, Duration.ofSeconds(90), Optional::empty);
  }

  @AfterAll
  void stopNode() {
    if (channel != null) {
      Gateways.close(channel);
    }
    if (node != null) {
      node.shutdown();
    }
  }

  private String get(HostPort target) throws Exception {
    HttpResponse<String> r = http.send(
        HttpRequest.newBuilder(URI.create("http://" + target + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
        HttpResponse.BodyHandlers.ofString());
    assertEquals(200, r.statusCode());
    return r.body();
  }

  private PrometheusText scrape() throws Exception {
    return PrometheusText.parse(get(metrics));
  }

  @Test
  @Order(1)
  void generateRequestsMoveTheCounters() throws Exception {
    before = scrape();
    InferenceGrpc.InferenceBlockingStub stub = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS);
    for (int i = 0; i < REQUESTS; i++) {
      Iterator<GenerateResponse> it = stub.generate(GenerateRequest.newBuilder()
          .setText("metrics request " + i + " the quick brown fox")
          .setMaxTokens(MAX_TOKENS).setIgnoreEos(true)
          .setSampling(SamplingParams.newBuilder().setTemperature(0f).setSeed(1))
          .build());
      int generated = 0;
      while (it.hasNext()) {
        GenerateResponse r = it.next();
        generated += r.getTokensCount();
        if (r.hasUsage()) {
          promptTokens += r.getUsage().getPromptTokens();
        }
      }
      assertEquals(MAX_TOKENS, generated);
    }
    // Sharding is polled; wait for the first poll that sees the entities.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    do {
      after = scrape();
    } while (after.sum("moe_sharding_entities") == 0 && System.nanoTime() < deadline && sleep(200));

    assertEquals(promptTokens, delta("moe_prompt_tokens_total"), 1e-9);
    assertEquals(REQUESTS * MAX_TOKENS, delta("moe_generated_tokens_total"), 1e-9);
    assertEquals(REQUESTS, delta("moe_time_to_first_token_seconds_count"), 1e-9);
    assertEquals(REQUESTS * (MAX_TOKENS - 1), delta("moe_inter_token_latency_seconds_count"), 1e-9);
    assertEquals(REQUESTS, delta("moe_request_duration_seconds_count"), 1e-9);
    assertEquals(REQUESTS, after.sum("moe_requests_total", s -> s.label("code").equals("OK"))
        - before.sum("moe_requests_total", s -> s.label("code").equals("OK")), 1e-9);
    assertTrue(delta("moe_tokens_routed_total") > 0, "tokens routed");
    assertTrue(delta("moe_expert_tokens_total") > 0, "expert tokens");
    assertTrue(delta("moe_expert_cache_hits_total") + delta("moe_expert_cache_misses_total") > 0, "cache acquires");
    assertTrue(delta("moe_expert_compute_seconds_count") > 0, "expert compute");

    String self = node.address().toString();
    assertEquals(0, after.sum("moe_requests_running", s -> s.label("node").equals(self)));
    assertEquals(1, after.sum("moe_cluster_members",
        s -> s.label("node").equals(self) && s.label("role").equals("expert") && s.label("status").equals("up")));
    assertEquals(8, after.sum("moe_sharding_entities", s -> s.label("node").equals(self)), "TINY: 2 layers x 4 experts");
    assertTrue(after.sum("moe_sharding_shards", s -> s.label("node").equals(self)) > 0);
  }

  private double delta(String name) {
    return after.sum(name) - before.sum(name);
  }

  private static boolean sleep(long ms) throws InterruptedException {
    Thread.sleep(ms);
    return true;
  }

  @Test
  @Order(2)
  void everyRoleFamilyIsExposedWithItsType() {
    Map<String, String> expected = new java.util.LinkedHashMap<>();
    // gateway
    expected.put("moe_time_to_first_token_seconds", "histogram");
    expected.put("moe_inter_token_latency_seconds", "histogram");
    expected.put("moe_request_duration_seconds", "histogram");
    expected.put("moe_requests_running", "gauge");
    expected.put("moe_requests_waiting", "gauge");
    expected.put("moe_prompt_tokens_total", "counter");
    expected.put("moe_generated_tokens_total", "counter");
    expected.put("moe_requests_total", "counter");
    // router
    expected.put("moe_tokens_routed_total", "counter");
    expected.put("moe_expert_request_seconds", "histogram");
    expected.put("moe_expert_retries_total", "counter");
    expected.put("moe_router_running_sequences", "gauge");
    expected.put("moe_router_waiting_sequences", "gauge");
    expected.put("moe_prefetch_issued_total", "counter");
    // expert
    expected.put("moe_expert_cache_hits_total", "counter");
    expected.put("moe_expert_cache_misses_total", "counter");
    expected.put("moe_expert_cache_evictions_total", "counter");
    expected.put("moe_expert_cache_warm_bytes", "gauge");
    expected.put("moe_expert_cache_budget_bytes", "gauge");
    expected.put("moe_expert_compute_seconds", "histogram");
    expected.put("moe_expert_tokens_total", "counter");
    expected.put("moe_prefetch_received_total", "counter");
    // cluster
    expected.put("moe_cluster_members", "gauge");
    expected.put("moe_cluster_unreachable_members", "gauge");
    expected.put("moe_sharding_shards", "gauge");
    expected.put("moe_sharding_entities", "gauge");
    // JVM
    expected.put("jvm_memory_used_bytes", "gauge");
    for (var e : expected.entrySet()) {
      assertEquals(e.getValue(), after.types().get(e.getKey()), "# TYPE of " + e.getKey());
    }
    // Histogram buckets for LLM serving: 5 ms to 60 s.
    Set<String> les = after.samples("moe_time_to_first_token_seconds_bucket").stream().map(s -> s.label("le"))
        .collect(Collectors.toSet());
    assertTrue(les.contains("0.005") && les.contains("60.0") && les.contains("+Inf"), les.toString());
  }

  // ---- moe stats


  private static MoeRun moe(String... args) {
    return MoeRun.of(args);
  }

  @Test
  @Order(3)
  void statsPrintsTheTablesOfARunningNode() {
    MoeRun r = moe("stats", "--target", metrics.toString());
    assertEquals(0, r.exitCode(), r.err());
    List<String> lines = r.out().lines().toList();
    assertTrue(lines.contains("Tokens routed per layer x expert (moe_tokens_routed_total):"), r.out());
    assertTrue(lines.stream().anyMatch(l -> l.matches("  layer\\s+e0\\s+e1\\s+e2\\s+e3\\s+total")), r.out());
    assertTrue(lines.stream().anyMatch(l -> l.matches("\\s+0 \\|[ ░▒▓█]{4}\\|")), "heat map row of layer 0:\n" + r.out());
    String self = node.address().toString();
    String shortNode = self.substring(self.indexOf('@') + 1);
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("  " + shortNode) && l.contains(" 8 ")),
        "expert node row with 8 experts:\n" + r.out());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("  requests: ") && l.contains("OK ")), r.out());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("  time to first token: avg ")), r.out());
    assertTrue(lines.stream().anyMatch(l -> l.startsWith("Cluster members (role status count): ")
        && l.contains("expert up 1")), r.out());
  }

  @Test
  @Order(4)
  void statsSaysWhichTargetCannotBeScraped() throws IOException {
    int closed;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      closed = s.getLocalPort();
    }
    MoeRun r = moe("stats", "--target", "127.0.0.1:" + closed);
    assertEquals(1, r.exitCode());
    assertTrue(r.err().startsWith("moe: cannot scrape 127.0.0.1:" + closed + ": "), r.err());
    assertEquals("", r.out());

    // One reachable, one not: the report still comes, the exit code says something failed.
    MoeRun mixed = moe("stats", "--target", metrics + ",127.0.0.1:" + closed);
    assertEquals(1, mixed.exitCode());
    assertTrue(mixed.out().contains("1 of 2 endpoint(s) scraped"), mixed.out());

    MoeRun malformed = moe("stats", "--target", "no-port");
    assertEquals(2, malformed.exitCode());
    assertTrue(malformed.err().contains("--target"), malformed.err());
  }

  // ---- the dashboard and the scrape config name only metrics that exist

  private static final Pattern METRIC = Pattern.compile("\\b((?:moe|jvm)_[a-z0-9_]+)\\b");

  @Test
  @Order(5)
  void grafanaDashboardNamesOnlyScrapedMetrics() throws Exception {
    JsonNode dash = new ObjectMapper().readTree(Files.readString(Path.of("grafana/moe-cluster.json")));
    assertEquals("moe-cluster", dash.get("uid").asText());
    assertTrue(dash.get("schemaVersion").asInt() >= 36);
    List<String> exprs = new ArrayList<>();
    collectExprs(dash, exprs);
    assertTrue(exprs.size() >= 20, "expressions: " + exprs.size());
    Set<String> names = after.samples().stream().map(PrometheusText.Sample::name).collect(Collectors.toSet());
    names.addAll(after.types().keySet());
    Set<String> missing = new TreeSet<>();
    for (String expr : exprs) {
      Matcher m = METRIC.matcher(expr);
      while (m.find()) {
        if (!names.contains(m.group(1))) {
          missing.add(m.group(1));
        }
      }
    }
    assertTrue(missing.isEmpty(), "the dashboard names metrics the node does not expose: " + missing);
    String all = String.join("\n", exprs);
    for (String needed : List.of("sum by (layer, expert) (rate(moe_tokens_routed_total[1m]))",
        "histogram_quantile(0.99, sum by (le) (rate(moe_time_to_first_token_seconds_bucket[5m])))",
        "histogram_quantile(0.5, sum by (le) (rate(moe_inter_token_latency_seconds_bucket[5m])))",
        "moe_expert_cache_warm_bytes", "moe_expert_cache_budget_bytes", "moe_expert_cache_evictions_total",
        "moe_prefetch_wasted_total", "moe_prefetch_useful_total", "moe_prefetch_issued_total",
        "moe_prefetch_predicted_total", "moe_expert_compute_seconds", "moe_requests_running", "moe_requests_waiting")) {
      assertTrue(all.contains(needed), "the dashboard has no panel with " + needed);
    }
  }

  private static void collectExprs(JsonNode node, List<String> out) {
    if (node.isObject()) {
      node.fields().forEachRemaining(e -> {
        if (e.getKey().equals("expr") && e.getValue().isTextual()) {
          out.add(e.getValue().asText());
        } else {
          collectExprs(e.getValue(), out);
        }
      });
    } else if (node.isArray()) {
      node.forEach(n -> collectExprs(n, out));
    }
  }

  @Test
  @Order(6)
  void prometheusConfigScrapesTheLocalClusterPorts() throws Exception {
    String yml = Files.readString(Path.of("prometheus/prometheus.yml"));
    assertTrue(yml.contains("job_name: moe-gateway") && yml.contains("job_name: moe-expert"), yml);
    assertTrue(yml.contains("\"127.0.0.1:9400\"") && yml.contains("\"127.0.0.1:9401\""), yml);
    assertTrue(yml.contains("kubernetes_sd_configs"));
    assertFalse(yml.contains("\t"), "YAML must not contain tabs");
  }
}

package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.TestClusters;
import io.moecluster.proto.cluster.v1.Located;
import java.lang.ref.WeakReference;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * With {@code moe.expert.replicas = 2}: the two entities of every expert live on different
 * expert nodes, and when one node crashes mid-generation the router hedges and fails over to the
 * other replica: the streams barely stall and finish with the tokens of a fault-free run.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ReplicaFailoverTest {
  /** The target is 0.5 s; a loaded two-core build machine gets some slack. */
  private static final long STALL_LIMIT_MS = 2_000;

  @TempDir static Path dir;
  static FailoverCluster cluster;

  @BeforeAll
  static void start() {
    cluster = new FailoverCluster(dir, 2, "", 1);
  }

  @AfterAll
  static void stop() {
    if (cluster != null) {
      cluster.close();
    }
  }

  @Test
  @Order(1)
  void theReplicasOfEveryExpertLiveOnDifferentNodes() {
    var config = cluster.local.config();
    var placement = cluster.router.placement().placement();
    assertEquals(config.numLayers() * config.numExperts() * 2, placement.size());
    Map<String, String> nodeOf = new HashMap<>();
    for (Located l : placement) {
      String other = nodeOf.put(l.getLayer() + "/" + l.getExpert(), l.getNode());
      if (other != null) {
        assertNotEquals(other, l.getNode(), "both replicas of " + l.getLayer() + "/" + l.getExpert() + " on " + other);
      }
    }
    assertEquals(config.numLayers() * config.numExperts(), nodeOf.size());
  }

  @Test
  @Order(2)
  void aReplicaDueForItsProbeGetsACopyWhileTheHealthyReplicaServes() throws Exception {
    FailoverSettings d = FailoverSettings.defaults();
    FailoverSettings shortCoolDown = new FailoverSettings(d.attemptTimeout(), d.maxRetries(), d.backoffMin(),
        d.backoffMax(), d.jitter(), d.breakerFailures(), Duration.ofMillis(20), d.hedgeEnabled(),
        d.hedgePercentile(), d.hedgeMinDelay(), d.hedgeMaxDelay(), d.suspectAfter());
    ShardedExperts experts = new ShardedExperts(cluster.routerKit.system(), Duration.ofSeconds(20), 1 << 20,
        cluster.router::placement, shortCoolDown);
    int hidden = cluster.local.config().hiddenSize();
    float[] x = new float[3 * hidden];
    Random random = new Random(5);
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    List<ExpertTask> tasks = List.of(new ExpertTask(1, 3, x));
    float[] reference = experts.run(0, tasks).get(0);
    // Layer 0, expert 1 prefers replica 1 ((0 * 31 + 1) mod 2): open its breaker and let the
    // cool-down pass. The chunk goes to replica 0 at once, and replica 1 gets its probe as a copy.
    CircuitBreaker preferred = experts.breaker(0, 1, 1);
    preferred.forceOpen();
    Thread.sleep(50);
    double probes = Metrics.sum("moe_expert_breaker_probes_total");
    assertArrayEquals(reference, experts.run(0, tasks).get(0), "the same output, from the healthy replica or the probe");
    assertEquals(probes + 1, Metrics.sum("moe_expert_breaker_probes_total"), 0.0, "one probe copy");
    TestClusters.await(Duration.ofSeconds(10), "the probe's answer closes the breaker",
        () -> preferred.state() == CircuitBreaker.State.CLOSED);
    assertEquals(CircuitBreaker.State.CLOSED, experts.breaker(0, 1, 0).state());
  }

  /**
   * A closed executor takes back what it added to the router's actor system (the crash check's
   * schedule, the watcher of its entities and of the members, its listener for refused cluster
   * ports): nothing there keeps it, however many are made and closed on one system.
   */
  @Test
  @Order(3)
  void aClosedExecutorIsNotKeptByTheActorSystem() {
    WeakReference<ShardedExperts> closed = runAndClose();
    TestClusters.await(Duration.ofSeconds(20), "the closed executor to be collected", () -> {
      System.gc();
      return closed.get() == null;
    });
  }

  /** Runs a layer on a new executor with data channels, closes it and keeps only a weak reference. */
  private static WeakReference<ShardedExperts> runAndClose() {
    ShardedExperts experts = new ShardedExperts(cluster.routerKit.system(), Duration.ofSeconds(20), 1 << 20,
        cluster.router::placement, FailoverSettings.defaults(), true);
    int hidden = cluster.local.config().hiddenSize();
    experts.run(0, List.of(new ExpertTask(0, 1, new float[hidden])));
    experts.close();
    return new WeakReference<>(experts);
  }

  @Test
  @Order(4)
  void aCrashedNodeStallsTheStreamsBrieflyAndChangesNoToken() throws Exception {
    double[] before = redirects();
    long stall = cluster.streamThroughKill(1, 4, 400);
    double[] after = redirects();
    System.err.printf("expert node crash with 2 replicas: longest stall of a running stream %d ms; "
            + "hedges %.0f, failovers %.0f, requests through sharding %.0f%n", TimeUnit.NANOSECONDS.toMillis(stall),
        after[0] - before[0], after[1] - before[1], after[2] - before[2]);
    assertTrue(TimeUnit.NANOSECONDS.toMillis(stall) < STALL_LIMIT_MS, "stall " + stall / 1_000_000 + " ms");
    // Which way the requests of the lost entities go depends on what the router learns first: a
    // failed or silent request sends its chunk to the other replica (a failover or a hedge); the
    // entities' stop (death watch) or the node's removal sends the next requests through sharding,
    // which reaches the entities' new home.
    assertTrue(after[0] + after[1] + after[2] > before[0] + before[1] + before[2],
        "requests of the lost entities went elsewhere");
  }

  /** Hedges, failovers to the other replica, and requests sent through sharding, so far. */
  private static double[] redirects() {
    return new double[] {Metrics.sum("moe_expert_hedges_sent_total"), Metrics.sum("moe_expert_failovers_total"),
        Metrics.sum("moe_expert_calls_total", "path", "sharding")};
  }
}

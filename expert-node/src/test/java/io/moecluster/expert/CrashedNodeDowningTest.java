package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Three members with the failover settings of a real node (split brain resolver after 1.5 s, a
 * failure detector that gives up after ~2.5 s); one of them crashes: its ActorSystem terminates
 * without leaving, so its cluster port then refuses connections. Told of it, the crash downing
 * has the member removed well before the failure detector alone would even mark it unreachable.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class CrashedNodeDowningTest {
  private static final String FAILOVER = """
      pekko.cluster.downing-provider-class = "org.apache.pekko.cluster.sbr.SplitBrainResolverProvider"
      pekko.cluster.split-brain-resolver.active-strategy = keep-majority
      pekko.cluster.split-brain-resolver.stable-after = 1.5s
      pekko.cluster.down-removal-margin = 100ms
      pekko.cluster.failure-detector.heartbeat-interval = 500ms
      pekko.cluster.failure-detector.acceptable-heartbeat-pause = 2s
      pekko.cluster.unreachable-nodes-reaper-interval = 250ms
      pekko.cluster.leader-actions-interval = 250ms
      """;
  /** Terminating the system does not leave the cluster: a crash, as far as the others can tell. */
  private static final String CRASHABLE = "pekko.coordinated-shutdown.run-by-actor-system-terminate = off\n";

  private final List<ActorTestKit> kits = new ArrayList<>();

  private void form(String extra) {
    for (int i = 0; i < 3; i++) {
      kits.add(ActorTestKit.create("moe", TestClusters.nodeConfig("expert", (i == 2 ? CRASHABLE : "") + FAILOVER + extra)));
    }
    TestClusters.form(kits, Duration.ofSeconds(30));
  }

  @AfterEach
  void stop() {
    TestClusters.stopAll(kits);
  }

  private String crashLast() throws Exception {
    ActorTestKit victim = kits.remove(2);
    String address = TestClusters.address(victim.system());
    victim.system().terminate();
    victim.system().getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
    return address;
  }

  private boolean removed(String address) {
    for (var m : Cluster.get(kits.get(0).system()).state().getMembers()) {
      if (m.address().toString().equals(address) && m.status() != MemberStatus.removed()) {
        return false;
      }
    }
    return true;
  }

  private static double downs() {
    double sum = 0;
    for (var s : PrometheusRegistry.defaultRegistry.scrape().stream().toList()) {
      if (s instanceof CounterSnapshot c && c.getMetadata().getPrometheusName().equals("moe_cluster_crash_downs")) {
        for (var d : c.getDataPoints()) {
          sum += d.getValue();
        }
      }
    }
    return sum;
  }

  /** What one crash of the last node, suspected from node 0, led to. */
  private record Crash(String address, long tookMs, List<String> refused, List<String> toldAfterRemoval,
      double downsBefore) {}

  /** Crashes the last node, has node 0 suspect it (as a router does) and waits for its removal. */
  private Crash crashAndSuspect(Duration removal) throws Exception {
    CrashedNodeDowning downing = CrashedNodeDowning.ID.apply(kits.get(0).system());
    List<String> refused = new java.util.concurrent.CopyOnWriteArrayList<>();
    downing.onRefusal(refused::add);
    List<String> toldAfterRemoval = new java.util.concurrent.CopyOnWriteArrayList<>();
    java.util.function.Consumer<String> removedListener = toldAfterRemoval::add; // a closed router's
    downing.onRefusal(removedListener);
    downing.removeRefusalListener(removedListener);
    double before = downs();
    String address = crashLast();
    long crashedAt = System.nanoTime();
    downing.suspect(address); // as the router does when a request to it times out
    TestClusters.await(removal, address + " removed", () -> removed(address));
    return new Crash(address, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - crashedAt), refused,
        toldAfterRemoval, before);
  }

  @Test
  void aCrashedMemberIsRemovedBeforeTheFailureDetectorGivesUp() throws Exception {
    form("");
    Crash crash = crashAndSuspect(Duration.ofSeconds(20));
    assertTrue(crash.refused().contains(crash.address()),
        "the first refusal was told (routers route around it): " + crash.refused());
    assertTrue(crash.toldAfterRemoval().isEmpty(), "a removed listener is told nothing: " + crash.toldAfterRemoval());
    System.err.printf("crashed member removed %d ms after the crash%n", crash.tookMs());
    // The failure detector alone marks it unreachable after ~2.5 s and the resolver downs it 1.5 s
    // later; probing takes ~0.2 s. The bound leaves room for a loaded machine.
    assertTrue(crash.tookMs() < 2_500, "removed after " + crash.tookMs() + " ms");
    assertTrue(downs() > crash.downsBefore(), "the down is counted in moe_cluster_crash_downs_total");
  }

  @Test
  void offLeavesTheCrashToTheResolver() throws Exception {
    form("moe.cluster.down-crashed-nodes = off\n");
    Crash crash = crashAndSuspect(Duration.ofSeconds(30));
    assertTrue(crash.refused().isEmpty(), "off: nothing probed, nothing told");
    assertTrue(crash.tookMs() > 3_000,
        "removed after " + crash.tookMs() + " ms: only the failure detector and the resolver act");
    assertTrue(downs() == crash.downsBefore(), "nothing downed by the crash path");
  }
}

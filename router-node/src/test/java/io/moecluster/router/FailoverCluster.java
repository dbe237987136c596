package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.generate.TokenEvent;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.expert.TestClusters;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;

/**
 * A router and two expert nodes in this JVM with the failover settings of a real node
 * (deploy's moe-node.conf: split brain resolver, failure detector, removal margin), for the
 * tests that kill an expert node: its ActorSystem terminates without leaving the cluster (no
 * coordinated shutdown), so the others only learn of it through the failure detector and the
 * resolver must down it.
 */
final class FailoverCluster implements AutoCloseable {
  /** The failover settings of deploy/src/main/resources/moe-node.conf. */
  static final String NODE_FAILOVER = """
      pekko.cluster.downing-provider-class = "org.apache.pekko.cluster.sbr.SplitBrainResolverProvider"
      pekko.cluster.split-brain-resolver.active-strategy = keep-majority
      pekko.cluster.split-brain-resolver.stable-after = 1.5s
      pekko.cluster.down-removal-margin = 100ms
      pekko.cluster.failure-detector.heartbeat-interval = 500ms
      pekko.cluster.failure-detector.acceptable-heartbeat-pause = 2s
      pekko.cluster.unreachable-nodes-reaper-interval = 250ms
      pekko.cluster.leader-actions-interval = 250ms
      """;

  /**
   * For a test that kills the last expert node: a router and a single expert node are a tie for
   * keep-majority (the lower address stays, sometimes the expert, and the router would shut down
   * under the test), so the router alone decides. With a router and two expert nodes the
   * decision is the same as keep-majority's.
   */
  static final String ROUTER_DECIDES = """
      pekko.cluster.split-brain-resolver.active-strategy = static-quorum
      pekko.cluster.split-brain-resolver.static-quorum.role = "router"
      pekko.cluster.split-brain-resolver.static-quorum.quorum-size = 1
      """;

  /** Terminating this node's ActorSystem does not leave the cluster: a crash, as far as the others can tell. */
  private static final String CRASHABLE = "pekko.coordinated-shutdown.run-by-actor-system-terminate = off\n";

  final LocalGenerator local;
  final List<ActorTestKit> kits = new ArrayList<>();
  final List<ExpertNode> experts = new ArrayList<>();
  final ActorTestKit routerKit;
  final RouterNode router;

  /** @param crashable indexes (0, 1) of the expert nodes a test may kill */
  FailoverCluster(Path dir, int replicas, String extra, int... crashable) {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 11), dir);
    local = LocalGenerator.open(dir, 1);
    String model = """
        moe.expert.model-dir = "%1$s"
        moe.expert.compute-threads = 1
        moe.expert.replicas = %2$d
        moe.router.model-dir = "%1$s"
        moe.router.compute-threads = 1
        moe.router.max-running-sequences = 8
        moe.router.min-expert-nodes = 2
        moe.router.placement-retry-interval = 300ms
        """.formatted(dir.toString().replace("\\", "/"), replicas) + NODE_FAILOVER + extra;
    routerKit = ActorTestKit.create("moe", TestClusters.nodeConfig("router", model));
    kits.add(routerKit);
    for (int i = 0; i < 2; i++) {
      boolean crash = false;
      for (int c : crashable) {
        crash |= c == i;
      }
      kits.add(ActorTestKit.create("moe", TestClusters.nodeConfig("expert", (crash ? CRASHABLE : "") + model)));
    }
    TestClusters.form(kits, Duration.ofSeconds(20));
    for (ActorTestKit kit : kits.subList(1, 3)) {
      experts.add(ExpertNode.start(kit.system(), ExpertNodeSettings.fromConfig(kit.system().settings().config())));
    }
    router = RouterNode.start(routerKit.system(), RouterSettings.fromConfig(routerKit.system().settings().config()));
    TestClusters.await(Duration.ofSeconds(30), "experts ready", () -> router.placement().ready());
  }

  ActorTestKit expertKit(int index) {
    return kits.get(1 + index);
  }

  /** Terminates expert node {@code index} without leaving; returns when its system is gone. */
  void kill(int index) throws Exception {
    ActorTestKit kit = expertKit(index);
    kit.system().terminate();
    kit.system().getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
    kits.remove(kit);
    experts.remove(index).close();
  }

  /** Waits until the router's cluster view has dropped {@code address} (downed by the resolver, then removed). */
  void awaitRemoved(String address, Duration timeout) {
    TestClusters.await(timeout, address + " removed", () -> {
      for (var m : Cluster.get(routerKit.system()).state().getMembers()) {
        if (m.address().toString().equals(address) && m.status() != MemberStatus.removed()) {
          return false;
        }
      }
      return true;
    });
  }

  /** Long requests (greedy and sampled) that are still generating when a node is killed. */
  List<GenerationRequest> requests(int count, int maxTokens) {
    Random random = new Random(17);
    int vocab = local.tokenizer().vocabSize();
    List<GenerationRequest> requests = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      int[] prompt = new int[2 + 4 * i];
      for (int p = 0; p < prompt.length; p++) {
        prompt[p] = random.nextInt(vocab);
      }
      SamplingParams sampling = i % 2 == 0 ? SamplingParams.GREEDY : new SamplingParams(0.8f, 20, 0.9f, 0f, 1.1f, 90L + i);
      requests.add(new GenerationRequest(prompt, sampling, maxTokens, List.of(), true));
    }
    return requests;
  }

  /** Records when each token arrived. */
  static final class TimedListener extends RecordingListener {
    final List<Long> arrivals = new CopyOnWriteArrayList<>();

    @Override
    public void onToken(TokenEvent token) {
      arrivals.add(System.nanoTime());
      super.onToken(token);
    }

    /** The longest wait for a token that came after {@code since}, from the token before it. */
    long longestGapAfter(long since) {
      long worst = 0;
      for (int i = 1; i < arrivals.size(); i++) {
        if (arrivals.get(i) > since) {
          worst = Math.max(worst, arrivals.get(i) - Math.max(arrivals.get(i - 1), 0));
        }
      }
      return worst;
    }
  }

  /** Runs the requests on the router's engine, kills expert {@code victim} mid-stream and checks every stream. */
  long streamThroughKill(int victim, int requests, int maxTokens) throws Exception {
    List<GenerationRequest> reqs = requests(requests, maxTokens);
    List<TimedListener> listeners = new ArrayList<>();
    for (int i = 0; i < reqs.size(); i++) {
      TimedListener l = new TimedListener();
      listeners.add(l);
      router.engine().submit("kill-" + victim + "-" + i, reqs.get(i), l);
    }
    TestClusters.await(Duration.ofSeconds(20), "every stream started",
        () -> listeners.stream().allMatch(l -> l.tokens.size() >= 3));
    String address = TestClusters.address(expertKit(victim).system());
    long killedAt = System.nanoTime();
    kill(victim);
    for (TimedListener l : listeners) {
      assertTrue(l.tokens.size() < maxTokens, "a stream finished before the kill: make the requests longer");
    }
    long worst = 0;
    for (int i = 0; i < reqs.size(); i++) {
      TimedListener l = listeners.get(i);
      assertEquals("LENGTH", l.end.get(60, TimeUnit.SECONDS), "request " + i);
      assertArrayEquals(local.generate(reqs.get(i), e -> {}).generatedIds(), l.ids(), "request " + i);
      worst = Math.max(worst, l.longestGapAfter(killedAt));
    }
    awaitRemoved(address, Duration.ofSeconds(30));
    return worst;
  }

  @Override
  public void close() {
    if (router != null) {
      router.close();
    }
    TestClusters.stopAll(kits);
    experts.forEach(ExpertNode::close);
    local.close();
  }
}

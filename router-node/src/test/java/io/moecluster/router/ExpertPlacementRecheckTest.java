package io.moecluster.router;

import io.moecluster.expert.TestClusters;

import static io.moecluster.router.RouterTestSupport.events;
import static io.moecluster.router.RouterTestSupport.greedy;
import static io.moecluster.router.RouterTestSupport.last;
import static io.moecluster.router.RouterTestSupport.submit;
import static io.moecluster.router.RouterTestSupport.tokenIds;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * An expert node leaves: the router's placement drops its entities, locates them again on the
 * remaining node, and the cluster still gives the single-JVM tokens.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ExpertPlacementRecheckTest {
  @TempDir static Path dir;
  static final List<ActorTestKit> kits = new ArrayList<>();
  static final List<ExpertNode> expertNodes = new ArrayList<>();
  static RouterNode routerNode;

  @BeforeAll
  static void start() {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 13), dir);
    String model = """
        moe.expert.model-dir = "%1$s"
        moe.expert.compute-threads = 1
        moe.router.model-dir = "%1$s"
        moe.router.compute-threads = 1
        moe.router.expert-timeout = 5s
        moe.router.placement-retry-interval = 300ms
        """.formatted(dir.toString().replace("\\", "/"));
    kits.add(ActorTestKit.create("moe", TestClusters.nodeConfig("router", model)));
    kits.add(ActorTestKit.create("moe", TestClusters.nodeConfig("expert", model)));
    kits.add(ActorTestKit.create("moe", TestClusters.nodeConfig("expert", model)));
    TestClusters.form(kits, Duration.ofSeconds(20));
    for (ActorTestKit kit : kits.subList(1, 3)) {
      expertNodes.add(ExpertNode.start(kit.system(), ExpertNodeSettings.fromConfig(kit.system().settings().config())));
    }
    routerNode = RouterNode.start(kits.get(0).system(), RouterSettings.fromConfig(kits.get(0).system().settings().config()));
  }

  @AfterAll
  static void stop() {
    if (routerNode != null) {
      routerNode.close();
    }
    TestClusters.stopAll(kits);
    expertNodes.forEach(ExpertNode::close);
  }

  @Test
  void aLeavingExpertNodeIsReplacedByTheOther() {
    String first = TestClusters.address(kits.get(1).system());
    String second = TestClusters.address(kits.get(2).system());
    TestClusters.await(Duration.ofSeconds(20), "experts on both nodes",
        () -> routerNode.placement().ready() && routerNode.placement().nodes().equals(Set.of(first, second)));

    // The second expert node leaves the cluster (its shards are handed off).
    ActorTestKit leaving = kits.remove(2);
    ActorTestKit.shutdown(leaving.system(), Duration.ofSeconds(20), false);
    expertNodes.remove(1).close();
    TestClusters.await(Duration.ofSeconds(30), "experts re-located on the remaining node",
        () -> routerNode.placement().ready() && routerNode.placement().nodes().equals(Set.of(first)));

    int[] prompt = {3, 1, 4, 1, 5};
    TestProbe<SequenceEvent> probe = kits.get(0).createTestProbe(SequenceEvent.class);
    routerNode.router().tell(submit(kits.get(0).system(), "after", prompt, greedy(), 6, true, probe));
    List<SequenceEvent> events = events(probe, Duration.ofSeconds(20));
    assertTrue(last(events).hasFinished(), last(events).toString());
    try (LocalGenerator local = LocalGenerator.open(dir, 1)) {
      int[] expected = local.generate(
          new GenerationRequest(prompt, SamplingParams.GREEDY, 6, List.of(), true), e -> {}).generatedIds();
      assertArrayEquals(expected, tokenIds(events));
    }
    assertEquals(0, routerNode.engine().running());
  }
}

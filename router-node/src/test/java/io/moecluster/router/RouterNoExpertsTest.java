package io.moecluster.router;

import io.moecluster.expert.TestClusters;

import static io.moecluster.router.RouterTestSupport.events;
import static io.moecluster.router.RouterTestSupport.greedy;
import static io.moecluster.router.RouterTestSupport.last;
import static io.moecluster.router.RouterTestSupport.submit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.cluster.v1.Failed;
import io.moecluster.proto.cluster.v1.GetStatus;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** A router alone in its cluster: requests fail fast and clearly instead of hanging. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RouterNoExpertsTest {
  @TempDir static Path dir;
  static ActorTestKit kit;
  static RouterNode routerNode;

  @BeforeAll
  static void start() {
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.BF16, 9), dir);
    String model = """
        moe.router.model-dir = "%s"
        moe.router.compute-threads = 1
        moe.router.expert-timeout = 1s
        moe.router.placement-retry-interval = 300ms
        """.formatted(dir.toString().replace("\\", "/"));
    kit = ActorTestKit.create("moe", TestClusters.nodeConfig("router", model));
    TestClusters.form(List.of(kit), Duration.ofSeconds(20));
    routerNode = RouterNode.start(kit.system(), RouterSettings.fromConfig(kit.system().settings().config()));
  }

  @AfterAll
  static void stop() {
    if (routerNode != null) {
      routerNode.close();
    }
    TestClusters.stopAll(List.of(kit));
  }

  @Test
  void noExpertNodeFailsUnavailableWithinTheTimeout() {
    for (int attempt = 0; attempt < 2; attempt++) { // the engine keeps serving after a failed step
      TestProbe<SequenceEvent> probe = kit.createTestProbe(SequenceEvent.class);
      long start = System.nanoTime();
      routerNode.router().tell(submit(kit.system(), "r" + attempt, new int[] {1, 2, 3}, greedy(), 5, false, probe));
      SequenceEvent end = last(events(probe, Duration.ofSeconds(10)));
      assertTrue(end.hasFailed(), end.toString());
      assertEquals("UNAVAILABLE", end.getFailed().getCode());
      assertTrue(end.getFailed().getMessage().contains("no expert node answered in time"), end.getFailed().getMessage());
      assertTrue(end.getFailed().getMessage().contains("expert 0/"), end.getFailed().getMessage());
      assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(8));
    }
    TestClusters.await(Duration.ofSeconds(5), "engine idle", () -> routerNode.engine().running() == 0);
  }

  @Test
  void invalidSamplingFailsNamingTheField() {
    TestProbe<SequenceEvent> probe = kit.createTestProbe(SequenceEvent.class);
    SamplingSpec bad = greedy().toBuilder().setTopP(1.5f).build();
    routerNode.router().tell(submit(kit.system(), "bad", new int[] {1}, bad, 5, false, probe));
    Failed failed = probe.receiveMessage(Duration.ofSeconds(5)).getFailed();
    assertEquals("INVALID_ARGUMENT", failed.getCode());
    assertTrue(failed.getMessage().contains("top_p"), failed.getMessage());

    SamplingSpec badTemperature = greedy().toBuilder().setTemperature(-1f).build();
    routerNode.router().tell(submit(kit.system(), "bad2", new int[] {1}, badTemperature, 5, false, probe));
    failed = probe.receiveMessage(Duration.ofSeconds(5)).getFailed();
    assertEquals("INVALID_ARGUMENT", failed.getCode());
    assertTrue(failed.getMessage().contains("temperature"), failed.getMessage());

    routerNode.router().tell(submit(kit.system(), "bad3", new int[] {1}, greedy(), 0, false, probe));
    failed = probe.receiveMessage(Duration.ofSeconds(5)).getFailed();
    assertEquals("INVALID_ARGUMENT", failed.getCode());
    assertTrue(failed.getMessage().contains("max_tokens"), failed.getMessage());
  }

  @Test
  void statusSaysExpertsAreNotReady() {
    TestProbe<RouterStatus> probe = kit.createTestProbe(RouterStatus.class);
    routerNode.router().tell(RouterCommand.newBuilder()
        .setGetStatus(GetStatus.newBuilder()
            .setReplyTo(ActorRefResolver.get(kit.system()).toSerializationFormat(probe.getRef()))
            .setWithPlacement(true))
        .build());
    RouterStatus status = probe.receiveMessage(Duration.ofSeconds(5));
    assertFalse(status.getExpertsReady());
    assertFalse(status.getDetail().isEmpty());
    assertEquals(0, status.getPlacedLayerCount());
  }

  @Test
  void aRouterWhoseEngineStoppedIsNotReadyEvenWithEveryExpertPlaced() {
    try (var local = io.moecluster.core.generate.LocalGenerator.open(dir, 1)) {
      Engine engine = new Engine(local.model(), local.tokenizer(), local.model().experts(), 1, 1);
      engine.close();
      var router = kit.spawn(RouterActor.create(engine, () -> new ExpertPlacement.Snapshot(true, List.of(), "")));
      TestProbe<RouterStatus> probe = kit.createTestProbe(RouterStatus.class);
      router.tell(RouterCommand.newBuilder()
          .setGetStatus(GetStatus.newBuilder()
              .setReplyTo(ActorRefResolver.get(kit.system()).toSerializationFormat(probe.getRef())))
          .build());
      RouterStatus status = probe.receiveMessage(Duration.ofSeconds(5));
      assertFalse(status.getExpertsReady());
      assertTrue(status.getDetail().contains("engine has stopped"), status.getDetail());
      kit.stop(router);
    }
  }
}

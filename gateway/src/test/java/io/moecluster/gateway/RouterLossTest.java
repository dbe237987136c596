package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.grpc.stub.StreamObserver;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.TokenIds;
import io.moecluster.router.RouterNode;
import io.moecluster.router.RouterSettings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Router loss: a cluster of three ActorSystems in this JVM (experts and gateway; two routers),
 * every message serialized. Eight seeded streams run over both routers; one router's system is
 * killed mid-generation without leaving the cluster (as a crash looks: unreachable, then downed by
 * the split brain resolver). Every stream still finishes with exactly the tokens and text of the
 * fault-free single-process run, each token once, indices contiguous.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RouterLossTest {
  private static final int STREAMS = 8;
  private static final int MAX_TOKENS = 200; // long enough that a loaded machine still kills mid-stream

  @TempDir static Path dir;
  private static LocalGenerator local;
  private static final List<ActorSystem<Void>> systems = new ArrayList<>();
  private static ExpertNode expertNode;
  private static final List<RouterNode> routers = new ArrayList<>();
  private static GatewayFixture gateway;

  @BeforeAll
  static void startCluster() {
    Path model = dir.resolve("tiny-loss");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 3), model);
    local = LocalGenerator.open(model, 1);
    String common =
        """
        moe.expert.model-dir = "%1$s"
        moe.expert.compute-threads = 1
        moe.router.model-dir = "%1$s"
        moe.router.compute-threads = 1
        moe.router.min-expert-nodes = 1
        moe.router.expert-timeout = 3s
        moe.router.placement-retry-interval = 300ms
        pekko.cluster.sharding.retry-interval = 200ms
        # A crashed node is unreachable; the resolver downs it soon, which ends the watches on it.
        pekko.cluster.downing-provider-class = "org.apache.pekko.cluster.sbr.SplitBrainResolverProvider"
        pekko.cluster.split-brain-resolver.active-strategy = keep-majority
        pekko.cluster.split-brain-resolver.stable-after = 1s
        pekko.cluster.failure-detector.heartbeat-interval = 200ms
        pekko.cluster.failure-detector.acceptable-heartbeat-pause = 1s
        pekko.cluster.shutdown-after-unsuccessful-join-seed-nodes = off
        pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off
        """
            .formatted(model.toString().replace("\\", "/"));
    ActorSystem<Void> front = system(common, List.of("expert", "gateway"));
    Cluster.get(front).manager().tell(Join.create(Cluster.get(front).selfMember().address()));
    // The router that will be killed terminates without running coordinated shutdown: no
    // graceful leave, no engine shutdown, no last message to the gateway.
    ActorSystem<Void> doomed =
        system("pekko.coordinated-shutdown.run-by-actor-system-terminate = off\n" + common, List.of("router"));
    ActorSystem<Void> survivor = system(common, List.of("router"));
    for (ActorSystem<Void> s : List.of(doomed, survivor)) {
      Cluster.get(s).manager().tell(Join.create(Cluster.get(front).selfMember().address()));
    }
    GatewayFixture.await(
        "3 members Up",
        Duration.ofSeconds(30),
        () ->
            systems.stream()
                .allMatch(
                    s -> {
                      long up = 0;
                      for (var m : Cluster.get(s).state().getMembers()) {
                        up += m.status() == MemberStatus.up() ? 1 : 0;
                      }
                      return up == 3;
                    }));
    expertNode = ExpertNode.start(front, ExpertNodeSettings.fromConfig(front.settings().config()));
    for (ActorSystem<Void> s : List.of(doomed, survivor)) {
      routers.add(RouterNode.start(s, RouterSettings.fromConfig(s.settings().config())));
    }
    gateway = GatewayFixture.start(front, GatewayFixture.settings("max-running = 16"), model);
    GatewayFixture.await(
        "both routers ready",
        Duration.ofSeconds(60),
        () -> gateway.server.directory().readyCount() == 2);
  }

  private static ActorSystem<Void> system(String config, List<String> roles) {
    Config c = ConfigFactory.parseString(config).withFallback(TestClusters.config(roles));
    ActorSystem<Void> s = ActorSystem.create(Behaviors.empty(), "moe", c);
    systems.add(s);
    return s;
  }

  @AfterAll
  static void stopCluster() {
    if (gateway != null) {
      gateway.close();
    }
    for (RouterNode r : routers) {
      r.close();
    }
    if (expertNode != null) {
      expertNode.close();
    }
    for (int i = systems.size() - 1; i >= 0; i--) {
      TestClusters.stop(systems.get(i));
    }
    if (local != null) {
      local.close();
    }
  }

  /** One stream's messages as they arrive. */
  private static final class Collector implements StreamObserver<GenerateResponse> {
    final List<GenerateResponse> responses = new ArrayList<>();
    final CountDownLatch done = new CountDownLatch(1);
    final AtomicInteger tokens = new AtomicInteger();
    volatile Throwable error;

    @Override
    public synchronized void onNext(GenerateResponse r) {
      responses.add(r);
      tokens.addAndGet(r.getTokensCount());
    }

    @Override
    public void onError(Throwable t) {
      error = t;
      done.countDown();
    }

    @Override
    public void onCompleted() {
      done.countDown();
    }
  }

  /** Resubmissions for any reason: unreachable first, usually; removed, or refusing. */
  private static double resubmissions() {
    return GatewayMetrics.resubmissions("router_unreachable")
        + GatewayMetrics.resubmissions("router_lost")
        + GatewayMetrics.resubmissions("router_unavailable");
  }

  @Test
  void killingARouterMidStreamLosesAndDuplicatesNoToken() throws Exception {
    double resubmittedBefore = resubmissions();
    List<int[]> prompts = new ArrayList<>();
    List<GenerationResult> expected = new ArrayList<>();
    List<Collector> streams = new ArrayList<>();
    for (int i = 0; i < STREAMS; i++) {
      int[] prompt = local.tokenizer().encode("Stream " + i + " tells a story about", true);
      prompts.add(prompt);
      SamplingParams sampling = new SamplingParams(0.9f, 0, 0.95f, 0f, 1.1f, 100 + i);
      expected.add(
          local.generate(
              new GenerationRequest(prompt, sampling, MAX_TOKENS, List.of(), true, 2), e -> {}));
      TokenIds.Builder ids = TokenIds.newBuilder();
      for (int id : prompt) {
        ids.addIds(id);
      }
      GenerateRequest request =
          GenerateRequest.newBuilder()
              .setTokenIds(ids)
              .setMaxTokens(MAX_TOKENS)
              .setIgnoreEos(true)
              .setLogprobs(2)
              .setSampling(
                  io.moecluster.proto.v1.SamplingParams.newBuilder()
                      .setTemperature(0.9f)
                      .setTopP(0.95f)
                      .setRepetitionPenalty(1.1f)
                      .setSeed(100 + i))
              .build();
      Collector c = new Collector();
      gateway.async().withDeadlineAfter(90, TimeUnit.SECONDS).generate(request, c);
      streams.add(c);
    }
    // Mid-generation: every stream has tokens, none has all of them.
    GatewayFixture.await(
        "every stream under way",
        Duration.ofSeconds(60),
        () -> streams.stream().allMatch(c -> c.tokens.get() >= 3));
    assertTrue(
        streams.stream().filter(c -> c.tokens.get() < MAX_TOKENS).count() >= STREAMS / 2,
        "the kill must come before most streams end; generation is too fast for this test");
    TestClusters.stop(systems.get(1)); // the first router: an abrupt stop

    for (int i = 0; i < STREAMS; i++) {
      Collector c = streams.get(i);
      assertTrue(c.done.await(90, TimeUnit.SECONDS), "stream " + i + " did not end");
      assertNull(c.error, "stream " + i + " failed: " + c.error);
      GenerationResult want = expected.get(i);
      List<Integer> ids = new ArrayList<>();
      StringBuilder text = new StringBuilder();
      for (GenerateResponse r : c.responses) {
        if (r.getTokensCount() > 0) {
          assertEquals(ids.size(), r.getIndex(), "stream " + i + ": indices contiguous");
        }
        r.getTokensList().forEach(t -> ids.add(t.getId()));
        text.append(r.getText());
      }
      assertArrayEquals(
          want.generatedIds(),
          ids.stream().mapToInt(Integer::intValue).toArray(),
          "stream " + i + ": every token once, in order");
      assertEquals(want.text(), text.toString(), "stream " + i);
      GenerateResponse last = c.responses.getLast();
      assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
      assertEquals(MAX_TOKENS, last.getUsage().getCompletionTokens());
      assertEquals(prompts.get(i).length, last.getUsage().getPromptTokens());
    }
    double resubmitted = resubmissions() - resubmittedBefore;
    assertTrue(resubmitted >= 1, "the streams of the killed router were resubmitted");
  }
}

package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.v1.CompleteResponse;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.TokenIds;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole path in one JVM: one cluster node with the expert, router and gateway roles on a TINY
 * checkpoint, every message serialized. Generate and Complete over a real channel give exactly the
 * tokens of the single-process {@link LocalGenerator} (greedy and seeded sampling).
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class EndToEndTest {
  @TempDir static Path dir;
  private static Path modelDir;
  private static ActorSystem<Void> system;
  private static OneNodeCluster cluster;
  private static GatewayFixture gateway;
  private static LocalGenerator local;

  @BeforeAll
  static void startCluster() {
    Path model = dir.resolve("tiny-e2e");
    modelDir = model;
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);
    local = LocalGenerator.open(model, 1);
    cluster = OneNodeCluster.start(model);
    system = cluster.system();
    gateway = cluster.gateway();
  }

  @AfterAll
  static void stopCluster() {
    if (cluster != null) {
      cluster.close();
    }
    if (local != null) {
      local.close();
    }
  }

  private static GenerationResult expected(
      int[] prompt, SamplingParams sampling, int maxTokens, List<String> stop, boolean ignoreEos) {
    return local.generate(
        new GenerationRequest(prompt, sampling, maxTokens, stop, ignoreEos), e -> {});
  }

  private static FinishReason finishReason(GenerationResult r) {
    return switch (r.finishReason()) {
      case EOS -> FinishReason.FINISH_REASON_STOP;
      case STOP_SEQUENCE -> FinishReason.FINISH_REASON_STOP_SEQUENCE;
      case LENGTH -> FinishReason.FINISH_REASON_LENGTH;
      case CANCELLED -> FinishReason.FINISH_REASON_CANCELLED;
    };
  }

  private static void assertStreamMatches(GenerateRequest request, GenerationResult expected) {
    List<GenerateResponse> responses = new ArrayList<>();
    gateway.blocking().generate(request).forEachRemaining(responses::add);
    List<Integer> ids = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    for (GenerateResponse r : responses) {
      r.getTokensList().forEach(t -> ids.add(t.getId()));
      text.append(r.getText());
    }
    assertArrayEquals(
        expected.generatedIds(),
        ids.stream().mapToInt(Integer::intValue).toArray(),
        "streamed ids");
    assertEquals(expected.text(), text.toString());
    GenerateResponse last = responses.getLast();
    assertEquals(finishReason(expected), last.getFinishReason());
    assertEquals(expected.promptIds().length, last.getUsage().getPromptTokens());
    assertEquals(expected.generatedIds().length, last.getUsage().getCompletionTokens());

    CompleteResponse complete = gateway.blocking().complete(request);
    assertEquals(ids, complete.getTokenIdsList(), "Complete gives the same tokens as Generate");
    assertEquals(expected.text(), complete.getText());
  }

  @Test
  void greedyTextPromptGivesTheTokensOfOneJvm() {
    String prompt = "Once upon a time there was";
    GenerateRequest request =
        GenerateRequest.newBuilder()
            .setText(prompt)
            .setMaxTokens(12)
            .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(0f))
            .build();
    assertStreamMatches(
        request,
        expected(
            local.tokenizer().encode(prompt, true), SamplingParams.GREEDY, 12, List.of(), false));
  }

  @Test
  void seededSamplingGivesTheTokensOfOneJvm() {
    int[] prompt = local.tokenizer().encode("The cluster serves experts", true);
    TokenIds.Builder ids = TokenIds.newBuilder();
    for (int id : prompt) {
      ids.addIds(id);
    }
    GenerateRequest request =
        GenerateRequest.newBuilder()
            .setTokenIds(ids)
            .setMaxTokens(16)
            .setIgnoreEos(true)
            .setSampling(
                io.moecluster.proto.v1.SamplingParams.newBuilder()
                    .setTemperature(0.9f)
                    .setTopK(40)
                    .setTopP(0.95f)
                    .setRepetitionPenalty(1.1f)
                    .setSeed(1234))
            .build();
    assertStreamMatches(
        request,
        expected(
            prompt, new SamplingParams(0.9f, 40, 0.95f, 0f, 1.1f, 1234L), 16, List.of(), true));
  }

  @Test
  void healthIsServingAndModelInfoHasThePlacement() {
    assertEquals(
        ServingStatus.SERVING,
        HealthGrpc.newBlockingStub(gateway.channel)
            .check(HealthCheckRequest.getDefaultInstance())
            .getStatus());
    ModelInfo info = gateway.blocking().getModelInfo(GetModelInfoRequest.getDefaultInstance());
    assertEquals("tiny-e2e", info.getName());
    assertEquals(
        local.config().numLayers() * local.config().numExperts(), info.getPlacementCount());
    assertTrue(
        info.getPlacementList().stream().allMatch(p -> p.getLoaded() && !p.getNode().isEmpty()));
  }

  @Test
  void chatPromptGivesTheTokensOfOneJvm() {
    String rendered =
        local
            .tokenizer()
            .chatTemplate()
            .orElseThrow()
            .render(List.of(new io.moecluster.core.tokenizer.ChatMessage("user", "Hello!")), true);
    GenerateRequest request =
        GenerateRequest.newBuilder()
            .setText("Hello!")
            .setChat(true)
            .setMaxTokens(8)
            .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(0f))
            .build();
    assertStreamMatches(
        request,
        expected(
            local.tokenizer().encode(rendered, false), SamplingParams.GREEDY, 8, List.of(), false));
  }

  @Test
  void logprobsAreTheSingleJvmOnes() {
    int[] prompt = local.tokenizer().encode("Logprobs please", true);
    List<io.moecluster.core.generate.TokenEvent> events = new ArrayList<>();
    local.generate(
        new GenerationRequest(
            prompt, new SamplingParams(0.8f, 0, 1f, 0f, 1f, 99L), 5, List.of(), true, 3),
        events::add);
    CompleteResponse r =
        gateway
            .blocking()
            .complete(
                GenerateRequest.newBuilder()
                    .setText("Logprobs please")
                    .setMaxTokens(5)
                    .setIgnoreEos(true)
                    .setLogprobs(3)
                    .setSampling(
                        io.moecluster.proto.v1.SamplingParams.newBuilder()
                            .setTemperature(0.8f)
                            .setSeed(99))
                    .build());
    assertEquals(events.size(), r.getTokensCount());
    for (int i = 0; i < events.size(); i++) {
      var want = events.get(i);
      var got = r.getTokens(i);
      assertEquals(want.tokenId(), got.getId());
      assertEquals(local.tokenizer().decode(new int[] {want.tokenId()}), got.getText());
      assertEquals(want.logprob(), got.getLogprob(), "token " + i);
      assertEquals(3, got.getTopLogprobsCount());
      for (int k = 0; k < 3; k++) {
        assertEquals(want.topLogprobs().get(k).tokenId(), got.getTopLogprobs(k).getId());
        assertEquals(want.topLogprobs().get(k).logprob(), got.getTopLogprobs(k).getLogprob());
      }
    }
  }

  /** A greedy request that runs for seconds on TINY (thousands of tokens, EOS ignored). */
  private static GenerateRequest endless() {
    return GenerateRequest.newBuilder()
        .setText("Hi")
        .setMaxTokens(4000)
        .setIgnoreEos(true)
        .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(0f))
        .build();
  }

  private static GenerateRequest shortGreedy() {
    return GenerateRequest.newBuilder()
        .setText("Once upon a time there was")
        .setMaxTokens(6)
        .setSampling(io.moecluster.proto.v1.SamplingParams.newBuilder().setTemperature(0f))
        .build();
  }

  private static void assertShortGreedyRunsNow(GatewayFixture g) {
    GenerationResult expected =
        expected(
            local.tokenizer().encode("Once upon a time there was", true),
            SamplingParams.GREEDY,
            6,
            List.of(),
            false);
    CompleteResponse r =
        g.blocking().withDeadlineAfter(10, TimeUnit.SECONDS).complete(shortGreedy());
    assertArrayEquals(
        expected.generatedIds(),
        r.getTokenIdsList().stream().mapToInt(Integer::intValue).toArray());
  }

  /** Sequences the router is running or holding, from its own status. */
  private static int routerLoad(GatewayFixture g) {
    RouterStatus s = g.server.directory().status().toCompletableFuture().join().orElseThrow();
    return s.getRunning() + s.getWaiting();
  }

  @Test
  void fullGatewayRejectsAndCancellationFreesTheSlotAtOnce() throws Exception {
    try (GatewayFixture small =
        GatewayFixture.start(
            system, GatewayFixture.settings("max-running = 1, max-queued = 0"), modelDir)) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), small.server::isServing);
      double exhausted = GatewayMetrics.requests(Status.Code.RESOURCE_EXHAUSTED);
      double cancelled = GatewayMetrics.requests(Status.Code.CANCELLED);
      GrpcStream running = GrpcStream.start(small, endless());
      running.awaitFirstToken();
      StatusRuntimeException e =
          assertThrows(
              StatusRuntimeException.class,
              () -> small.blocking().generate(shortGreedy()).forEachRemaining(r -> {}));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      assertTrue(
          e.getStatus()
              .getDescription()
              .startsWith("server is at capacity: 1 streams running, 0 queued"),
          e.getStatus().getDescription());

      running.context.cancel(null);
      assertEquals(Status.Code.CANCELLED, running.end.get(5, TimeUnit.SECONDS).getCode());
      GatewayFixture.await(
          "slot freed", Duration.ofSeconds(2), () -> small.server.runningStreams() == 0);
      assertEquals(exhausted + 1, GatewayMetrics.requests(Status.Code.RESOURCE_EXHAUSTED));
      assertEquals(cancelled + 1, GatewayMetrics.requests(Status.Code.CANCELLED));
      assertShortGreedyRunsNow(small);
      GatewayFixture.await(
          "the router dropped the sequence", Duration.ofSeconds(5), () -> routerLoad(small) == 0);
    }
  }

  @Test
  void deadlineFreesTheSlotAndTheRoutersSequence() throws Exception {
    try (GatewayFixture small =
        GatewayFixture.start(
            system, GatewayFixture.settings("max-running = 1, max-queued = 0"), modelDir)) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), small.server::isServing);
      double expired = GatewayMetrics.requests(Status.Code.DEADLINE_EXCEEDED);
      Iterator<GenerateResponse> it =
          small.blocking().withDeadlineAfter(500, TimeUnit.MILLISECONDS).generate(endless());
      StatusRuntimeException e =
          assertThrows(StatusRuntimeException.class, () -> it.forEachRemaining(r -> {}));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
      GatewayFixture.await(
          "slot freed", Duration.ofSeconds(2), () -> small.server.runningStreams() == 0);
      assertEquals(expired + 1, GatewayMetrics.requests(Status.Code.DEADLINE_EXCEEDED));
      assertShortGreedyRunsNow(small);
      GatewayFixture.await(
          "the router dropped the sequence", Duration.ofSeconds(5), () -> routerLoad(small) == 0);
    }
  }

  @Test
  void queuedRequestRunsWhenTheSlotFrees() throws Exception {
    try (GatewayFixture small =
        GatewayFixture.start(
            system, GatewayFixture.settings("max-running = 1, max-queued = 1"), modelDir)) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), small.server::isServing);
      GrpcStream first = GrpcStream.start(small, endless());
      first.awaitFirstToken();
      GrpcStream second = GrpcStream.start(small, shortGreedy());
      GatewayFixture.await(
          "queued", Duration.ofSeconds(5), () -> small.server.queuedStreams() == 1);
      assertTrue(second.received.isEmpty());
      first.context.cancel(null);
      assertEquals(Status.Code.OK, second.end.get(10, TimeUnit.SECONDS).getCode());
      assertEquals(FinishReason.FINISH_REASON_LENGTH, second.received.getLast().getFinishReason());
      GatewayFixture.await(
          "all freed", Duration.ofSeconds(5), () -> small.server.runningStreams() == 0);
    }
  }

  @Test
  void gracefulShutdownLetsShortStreamsFinishAndCancelsTheRest() throws Exception {
    try (GatewayFixture g = GatewayFixture.start(system, GatewayFixture.settings(""), modelDir)) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), g.server::isServing);
      GrpcStream endless = GrpcStream.start(g, endless());
      endless.awaitFirstToken();
      long start = System.nanoTime();
      assertFalse(
          g.server.shutdownGracefully(Duration.ofMillis(500)), "an endless stream cannot drain");
      assertTrue(System.nanoTime() - start >= 400_000_000L, "waited for the drain time");
      assertFalse(endless.end.get(5, TimeUnit.SECONDS).isOk());
      // The client sees the end before the session's slot is released (another thread): wait for it.
      GatewayFixture.await("slot freed", Duration.ofSeconds(5), () -> g.server.runningStreams() == 0);
      StatusRuntimeException refused =
          assertThrows(StatusRuntimeException.class, () -> g.blocking().complete(shortGreedy()));
      assertEquals(Status.Code.UNAVAILABLE, refused.getStatus().getCode());
      GatewayFixture.await(
          "the router dropped the sequence", Duration.ofSeconds(5), () -> routerLoad(gateway) == 0);
    }
    try (GatewayFixture g = GatewayFixture.start(system, GatewayFixture.settings(""), modelDir)) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), g.server::isServing);
      GrpcStream shortOne = GrpcStream.start(g, shortGreedy());
      shortOne.awaitFirstTokenOrEnd();
      assertTrue(g.server.shutdownGracefully(Duration.ofSeconds(10)));
      assertEquals(Status.Code.OK, shortOne.end.get(1, TimeUnit.SECONDS).getCode());
      assertEquals(
          FinishReason.FINISH_REASON_LENGTH, shortOne.received.getLast().getFinishReason());
    }
  }
}

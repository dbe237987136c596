package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.moecluster.proto.cluster.v1.Submit;
import io.moecluster.proto.v1.DetokenizeRequest;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.SamplingParams;
import io.moecluster.proto.v1.TokenizeRequest;
import io.moecluster.proto.v1.TokenizeResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The gateway against a {@link TestRouter} over a real channel: streaming, Complete, the local
 * RPCs, admission (RESOURCE_EXHAUSTED, slots freed by cancellation and deadlines) and router faults
 * a real router does not produce on demand (silence, failures).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class TestRouterStreamingTest {
  private static ActorSystem<Void> system;
  private static TestRouter router;
  private static org.apache.pekko.actor.typed.ActorRef<Object> routerRef;
  private static int routers;
  private static GatewayFixture gateway;

  @BeforeAll
  static void start() {
    system = TestClusters.start("streaming", List.of("gateway"));
    router = new TestRouter();
    routerRef = system.systemActorOf(router.behavior(), "test-router-" + routers++, Props.empty());
    gateway =
        GatewayFixture.start(
            system, GatewayFixture.settings("first-event-timeout = 1s"), TestModel.tiny());
    GatewayFixture.await("SERVING", Duration.ofSeconds(10), gateway.server::isServing);
  }

  @AfterAll
  static void stop() {
    if (gateway != null) {
      gateway.close();
    }
    TestClusters.stop(system);
  }

  @AfterEach
  void resetRouter() {
    router.silent = false;
    router.failCode = null;
    router.tokens = 3;
    router.interval = Duration.ofMillis(5);
    router.ready = true;
    GatewayFixture.await("SERVING", Duration.ofSeconds(10), gateway.server::isServing);
  }

  private static GenerateRequest request(int maxTokens) {
    return GenerateRequest.newBuilder()
        .setText("Once upon a time")
        .setMaxTokens(maxTokens)
        .setSampling(SamplingParams.newBuilder().setTemperature(0f))
        .build();
  }

  @Test
  void streamIndexesUsageAndTheSubmitsResolvedDefaults() {
    List<GenerateResponse> responses = new ArrayList<>();
    gateway.blocking().generate(request(16)).forEachRemaining(responses::add);
    List<Integer> ids = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    for (GenerateResponse r : responses) {
      if (!r.getTokensList().isEmpty()) {
        assertEquals(ids.size(), r.getIndex());
      }
      r.getTokensList().forEach(t -> ids.add(t.getId()));
      text.append(r.getText());
    }
    assertEquals(List.of(10, 11, 12), ids);
    assertEquals("a0a1a2", text.toString());
    GenerateResponse last = responses.getLast();
    assertEquals(FinishReason.FINISH_REASON_STOP, last.getFinishReason());
    assertEquals(3, last.getUsage().getCompletionTokens());
    assertTrue(last.getUsage().getPromptTokens() > 0);
    for (GenerateResponse r : responses.subList(0, responses.size() - 1)) {
      assertEquals(FinishReason.FINISH_REASON_UNSPECIFIED, r.getFinishReason());
    }
    // What the router received: resolved sampling, prompt with BOS, the request's max_tokens.
    var submit =
        router.submits.values().stream()
            .filter(s -> s.getMaxTokens() == 16)
            .findFirst()
            .orElseThrow();
    assertEquals(0f, submit.getSampling().getTemperature());
    assertEquals(1f, submit.getSampling().getTopP());
    assertEquals(1f, submit.getSampling().getRepetitionPenalty());
  }

  @Test
  void resumedAfterTheLastTokenTheOnlyMessageHasTheResumedCountAsIndex() {
    // The router has 3 tokens (10, 11, 12): all of them resumed, only the finish is left.
    GenerateRequest resumed =
        request(16).toBuilder().addAllResumeTokenIds(List.of(10, 11, 12)).build();
    List<GenerateResponse> responses = new ArrayList<>();
    gateway.blocking().generate(resumed).forEachRemaining(responses::add);
    assertEquals(1, responses.size(), responses.toString());
    GenerateResponse only = responses.getFirst();
    assertEquals(0, only.getTokensCount());
    assertEquals(FinishReason.FINISH_REASON_STOP, only.getFinishReason());
    assertEquals(3, only.getIndex(), "index = the count of tokens delivered before it");
  }

  @Test
  void routerFailureBecomesItsStatus() {
    router.failCode = "INTERNAL";
    StatusRuntimeException e =
        assertThrows(StatusRuntimeException.class, () -> gateway.blocking().complete(request(4)));
    assertEquals(Status.Code.INTERNAL, e.getStatus().getCode());
    assertEquals("test failure", e.getStatus().getDescription());
    GatewayFixture.await(
        "slot freed", Duration.ofSeconds(2), () -> gateway.server.runningStreams() == 0);
  }

  @Test
  void silentRouterIsUnavailableAfterTheFirstEventTimeout() {
    router.silent = true;
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class,
            () -> gateway.blocking().generate(request(4)).forEachRemaining(r -> {}));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertTrue(
        e.getStatus().getDescription().contains("did not answer"), e.getStatus().getDescription());
    GatewayFixture.await(
        "slot freed", Duration.ofSeconds(2), () -> gateway.server.runningStreams() == 0);
  }

  @Test
  void tokenizeDetokenizeAndModelInfo() {
    TokenizeResponse t =
        gateway.blocking().tokenize(TokenizeRequest.newBuilder().setText("Hello world").build());
    assertEquals(t.getIdsCount(), t.getTokensCount());
    assertFalse(t.getIdsList().isEmpty());
    String back =
        gateway
            .blocking()
            .detokenize(DetokenizeRequest.newBuilder().addAllIds(t.getIdsList()).build())
            .getText();
    assertEquals("Hello world", back);
    ModelInfo info = gateway.blocking().getModelInfo(GetModelInfoRequest.getDefaultInstance());
    assertEquals("tiny", info.getName());
    assertEquals("mixtral", info.getModelType());
    assertEquals(4096, info.getContextLength());
    assertEquals("f32", info.getDtype());
    // The health polls, every interval, ask for no placement; GetModelInfo asks for it.
    assertTrue(router.placementLessPolls.get() > 0, "polls answered: " + router.statusAsked.get());
    // Sorted by layer, expert, then replica; each with the replica the router reported.
    assertEquals(
        List.of("0/1/0@n", "0/1/1@n2", "1/0/0@n"),
        info.getPlacementList().stream()
            .map(p -> p.getLayer() + "/" + p.getExpert() + "/" + p.getReplica() + "@" + p.getNode())
            .toList());
  }

  @Test
  void leastLoadedRouterIsChosenAndALostRoutersStreamMovesToTheOther() throws Exception {
    twoRoutersAndOneLost(gateway, true);
  }

  @Test
  void withoutResubmissionALostRouterFailsItsStreamsWithUnavailable() throws Exception {
    try (GatewayFixture noRetry =
        GatewayFixture.start(
            system,
            GatewayFixture.settings("first-event-timeout = 1s, max-resubmissions = 0"),
            TestModel.tiny())) {
      GatewayFixture.await("SERVING", Duration.ofSeconds(10), noRetry.server::isServing);
      twoRoutersAndOneLost(noRetry, false);
    }
  }

  /**
   * One stream on each of two routers, then one router stops mid-stream: its stream either moves
   * to the other router, resumed after the tokens it had (indices go on without gap or repeat), or
   * fails with UNAVAILABLE; slots are freed either way.
   */
  private void twoRoutersAndOneLost(GatewayFixture gateway, boolean resubmit) throws Exception {
    router.tokens = 1_000_000;
    router.interval = Duration.ofMillis(20);
    TestRouter other = new TestRouter();
    other.tokens = 1_000_000;
    other.interval = Duration.ofMillis(20);
    var otherRef =
        system.systemActorOf(other.behavior(), "test-router-" + routers++, Props.empty());
    GrpcStream a = null;
    GrpcStream b = null;
    try {
      GatewayFixture.await(
          "two ready routers",
          Duration.ofSeconds(5),
          () -> gateway.server.directory().readyCount() == 2);
      int before = router.order.size();
      a = GrpcStream.start(gateway, request(4000));
      a.awaitFirstToken();
      b = GrpcStream.start(gateway, request(4000));
      b.awaitFirstToken();
      assertEquals(1, router.order.size() - before, "one stream on each router");
      assertEquals(1, other.order.size());
      String lostId = other.order.getFirst();

      // The other router goes away mid-stream.
      otherRef.tell(TestRouter.Stop.INSTANCE);
      if (resubmit) {
        GatewayFixture.await(
            "the lost stream resubmitted",
            Duration.ofSeconds(10),
            () -> router.submits.containsKey(lostId + "/1"));
        Submit again = router.submits.get(lostId + "/1");
        assertEquals(other.submits.get(lostId).getPromptIdsList(), again.getPromptIdsList());
        assertTrue(again.getResumeIdsCount() >= 1, "resumed after the tokens already sent");
        TestClusters.sleep(200); // tokens keep coming from the surviving router
        assertFalse(a.end.isDone() || b.end.isDone(), "both streams go on");
        assertEquals(2, gateway.server.runningStreams());
        for (GrpcStream s : new GrpcStream[] {a, b}) {
          int next = 0;
          for (GenerateResponse r : s.received) {
            assertEquals(next, r.getIndex(), "indices without gap or repeat");
            next += r.getTokensCount();
          }
        }
        a.context.cancel(null);
        b.context.cancel(null);
        a.end.get(5, TimeUnit.SECONDS);
        b.end.get(5, TimeUnit.SECONDS);
      } else {
        CompletableFuture.anyOf(a.end, b.end).get(10, TimeUnit.SECONDS);
        GrpcStream lost = a.end.isDone() ? a : b;
        GrpcStream kept = lost == a ? b : a;
        assertEquals(Status.Code.UNAVAILABLE, lost.end.get().getCode());
        assertTrue(
            lost.end.get().getDescription().contains("router"), lost.end.get().getDescription());
        assertFalse(kept.end.isDone());
        GatewayFixture.await(
            "one slot freed", Duration.ofSeconds(5), () -> gateway.server.runningStreams() == 1);
        kept.context.cancel(null);
        kept.end.get(5, TimeUnit.SECONDS);
      }
      GatewayFixture.await(
          "all slots freed", Duration.ofSeconds(5), () -> gateway.server.runningStreams() == 0);
    } finally {
      otherRef.tell(TestRouter.Stop.INSTANCE);
      for (GrpcStream s : new GrpcStream[] {a, b}) {
        if (s != null) {
          s.context.cancel(null);
        }
      }
      GatewayFixture.await(
          "one router listed",
          Duration.ofSeconds(5),
          () -> gateway.server.directory().routers().size() == 1);
    }
  }
}

package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.stub.ServerCallStreamObserver;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.proto.cluster.v1.Finished;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.TokenChunk;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.router.RouterActor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * StreamSession's flow control against a fake call whose readiness the test sets: nothing is
 * written while the client is not ready, queued tokens go out coalesced, the last message carries
 * the finish reason; cancellation reaches the router and frees the permit.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class StreamSessionFlowControlTest {
  private static ActorTestKit kit;
  private static RouterDirectory directory;
  private static TestProbe<RouterCommand> router;
  private static Tokenizer tokenizer;

  @BeforeAll
  static void start() {
    kit = ActorTestKit.create();
    GatewaySettings settings = GatewayFixture.settings("");
    directory = new RouterDirectory(kit.system(), new HealthStatusManager(), settings);
    kit.spawn(directory.behavior());
    router = kit.createTestProbe(RouterCommand.class);
    kit.system()
        .receptionist()
        .tell(Receptionist.register(RouterActor.SERVICE_KEY, readyRouter(kit, router)));
    GatewayFixture.await("router ready", Duration.ofSeconds(5), () -> directory.readyCount() == 1);
    tokenizer = Tokenizer.load(TestModel.tiny());
  }

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  /**
   * A router in front of {@code probe}: answers the directory's GetStatus polls with its experts
   * ready (the directory chooses only such routers) and forwards every other command to the probe.
   */
  static ActorRef<RouterCommand> readyRouter(ActorTestKit kit, TestProbe<RouterCommand> probe) {
    return kit.spawn(
        Behaviors.receiveMessage(
            (RouterCommand c) -> {
              if (c.getCommandCase() == RouterCommand.CommandCase.GET_STATUS) {
                ActorRefResolver.get(kit.system())
                    .<RouterStatus>resolveActorRef(c.getGetStatus().getReplyTo())
                    .tell(RouterStatus.newBuilder().setExpertsReady(true).setNode("test").build());
              } else {
                probe.ref().tell(c);
              }
              return Behaviors.same();
            }));
  }

  /** A server call whose isReady() the test controls; records what the session writes. */
  static final class FakeCall extends ServerCallStreamObserver<Object> {
    volatile boolean ready;
    /** How often the session asked isReady: it asks each time it has something to write. */
    final AtomicInteger readyChecks = new AtomicInteger();
    final List<Object> written = new CopyOnWriteArrayList<>();
    volatile Throwable error;
    volatile boolean completed;

    @Override
    public boolean isCancelled() {
      return false;
    }

    @Override
    public void setOnCancelHandler(Runnable onCancelHandler) {}

    @Override
    public void setCompression(String compression) {}

    @Override
    public boolean isReady() {
      readyChecks.incrementAndGet();
      return ready;
    }

    @Override
    public void setOnReadyHandler(Runnable onReadyHandler) {}

    @Override
    public void disableAutoInboundFlowControl() {}

    @Override
    public void request(int count) {}

    @Override
    public void setMessageCompression(boolean enable) {}

    @Override
    public void onNext(Object value) {
      written.add(value);
    }

    @Override
    public void onError(Throwable t) {
      error = t;
    }

    @Override
    public void onCompleted() {
      completed = true;
    }
  }

  private record Session(ActorRef<Object> ref, FakeCall call, Admission admission, String id) {
    void tell(SequenceEvent.Builder e) {
      ref.tell(e.setRequestId(id).build());
    }
  }

  private static Session startSession(String id) throws Exception {
    return startSession(id, 8);
  }

  private static Session startSession(String id, int maxTokens) throws Exception {
    FakeCall call = new FakeCall();
    Admission admission = new Admission(1, 0);
    StreamSession.Slot slot = new StreamSession.Slot();
    RequestValidator.ValidRequest request =
        new RequestValidator.ValidRequest(
            new int[] {1, 2, 3},
            SamplingSpec.newBuilder().setTopP(1f).build(),
            maxTokens,
            List.of(),
            false,
            0,
            "");
    ActorRef<Object> ref =
        kit.spawn(
            StreamSession.create(
                new StreamSession.Env(directory, tokenizer, Duration.ofSeconds(10)),
                StreamSession.Mode.STREAM,
                call,
                request,
                id,
                slot));
    slot.ticket(
        admission.acquire(
            p -> {
              if (slot.offer(p)) {
                ref.tell(StreamSession.Signal.ADMITTED);
              }
            }));
    RouterCommand submit = expect(RouterCommand.CommandCase.SUBMIT);
    assertEquals(id, submit.getSubmit().getRequestId());
    assertEquals(List.of(1, 2, 3), submit.getSubmit().getPromptIdsList());
    return new Session(ref, call, admission, id);
  }

  /** The next command of this kind. */
  private static RouterCommand expect(RouterCommand.CommandCase kind) {
    while (true) {
      RouterCommand c = router.receiveMessage(Duration.ofSeconds(5));
      if (c.getCommandCase() == kind) {
        return c;
      }
    }
  }

  private static SequenceEvent.Builder token(int i) {
    return SequenceEvent.newBuilder()
        .setToken(TokenChunk.newBuilder().setIndex(i).setTokenId(20 + i).setText("t" + i));
  }

  private static SequenceEvent.Builder finished(String reason, int n) {
    return SequenceEvent.newBuilder()
        .setFinished(
            Finished.newBuilder().setReason(reason).setPromptTokens(3).setCompletionTokens(n));
  }

  @Test
  void slowClientGetsQueuedTokensCoalescedThenTheLastMessage() throws Exception {
    Session s = startSession("fc-1");
    s.call.ready = true;
    s.tell(token(0));
    GatewayFixture.await(
        "first token written", Duration.ofSeconds(5), () -> s.call.written.size() == 1);
    s.call.ready = false;
    int checks = s.call.readyChecks.get();
    s.tell(token(1));
    s.tell(token(2));
    s.tell(token(3));
    TestTime.awaitHandled(s.call, checks + 3);
    assertEquals(1, s.call.written.size(), "nothing is written while the client is not ready");
    s.call.ready = true;
    s.ref.tell(StreamSession.Signal.READY);
    GatewayFixture.await(
        "coalesced write", Duration.ofSeconds(5), () -> s.call.written.size() == 2);
    GenerateResponse coalesced = (GenerateResponse) s.call.written.get(1);
    assertEquals(3, coalesced.getTokensCount());
    assertEquals(1, coalesced.getIndex());
    assertEquals("t1t2t3", coalesced.getText());
    s.tell(finished("eos", 4));
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> s.call.completed);
    GenerateResponse last = (GenerateResponse) s.call.written.getLast();
    assertEquals(FinishReason.FINISH_REASON_STOP, last.getFinishReason());
    assertEquals(4, last.getUsage().getCompletionTokens());
    assertEquals(0, last.getTokensCount());
    assertEquals(4, last.getIndex(), "index = the count of tokens delivered before it");
    assertEquals(0, s.admission.running(), "permit released on finish");
    assertNull(s.call.error);
  }

  @Test
  void aLongBacklogGoesOutInMessagesOfBoundedSize() throws Exception {
    int n = 2 * StreamSession.MAX_TOKENS_PER_MESSAGE + 10;
    Session s = startSession("fc-big", n);
    s.call.ready = false;
    int checks = s.call.readyChecks.get();
    for (int i = 0; i < n; i++) {
      s.tell(token(i));
    }
    s.tell(finished("length", n));
    TestTime.awaitHandled(s.call, checks + n + 1);
    assertTrue(s.call.written.isEmpty());
    s.call.ready = true;
    s.ref.tell(StreamSession.Signal.READY);
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> s.call.completed);
    List<Integer> sizes = new ArrayList<>();
    List<Integer> indexes = new ArrayList<>();
    for (Object o : s.call.written) {
      GenerateResponse r = (GenerateResponse) o;
      sizes.add(r.getTokensCount());
      indexes.add(r.getIndex());
    }
    int max = StreamSession.MAX_TOKENS_PER_MESSAGE;
    assertEquals(List.of(max, max, 10), sizes);
    assertEquals(List.of(0, max, 2 * max), indexes);
    GenerateResponse last = (GenerateResponse) s.call.written.getLast();
    assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
    assertEquals(FinishReason.FINISH_REASON_UNSPECIFIED,
        ((GenerateResponse) s.call.written.getFirst()).getFinishReason());
  }

  @Test
  void finishWhileNotReadyWaitsThenSendsTokensWithTheFinishReason() throws Exception {
    Session s = startSession("fc-2");
    s.call.ready = false;
    int checks = s.call.readyChecks.get();
    s.tell(token(0));
    s.tell(token(1));
    s.tell(finished("length", 2));
    TestTime.awaitHandled(s.call, checks + 3);
    assertTrue(s.call.written.isEmpty());
    assertTrue(!s.call.completed);
    s.call.ready = true;
    s.ref.tell(StreamSession.Signal.READY);
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> s.call.completed);
    assertEquals(1, s.call.written.size());
    GenerateResponse only = (GenerateResponse) s.call.written.getFirst();
    assertEquals(2, only.getTokensCount());
    assertEquals(FinishReason.FINISH_REASON_LENGTH, only.getFinishReason());
    assertEquals(0, s.admission.running());
  }

  @Test
  void clientCancelSendsCancelToTheRouterAndReleasesThePermit() throws Exception {
    Session s = startSession("fc-3");
    s.call.ready = true;
    s.tell(token(0));
    s.ref.tell(StreamSession.Signal.CLIENT_CANCELLED);
    RouterCommand cancel = expect(RouterCommand.CommandCase.CANCEL);
    assertEquals("fc-3", cancel.getCancel().getRequestId());
    GatewayFixture.await(
        "permit released", Duration.ofSeconds(5), () -> s.admission.running() == 0);
    assertTrue(!s.call.completed);
    assertNull(s.call.error);
  }

  @Test
  void failedBecomesTheRoutersStatus() throws Exception {
    Session s = startSession("fc-4");
    s.tell(
        SequenceEvent.newBuilder()
            .setFailed(
                io.moecluster.proto.cluster.v1.Failed.newBuilder()
                    .setCode("UNAVAILABLE")
                    .setMessage("expert lost")));
    GatewayFixture.await("error", Duration.ofSeconds(5), () -> s.call.error != null);
    Status status = Status.fromThrowable(s.call.error);
    assertEquals(Status.Code.UNAVAILABLE, status.getCode());
    assertEquals("expert lost", status.getDescription());
    assertEquals(0, s.admission.running());
    // A failed stream says nothing about the router's health: it still reports ready.
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, directory.serving());
  }

  /** Waits until the session has handled the messages sent, before asserting that nothing happened. */
  static final class TestTime {
    /** Each message with something to write makes the session ask isReady once. */
    static void awaitHandled(FakeCall call, int readyChecks) {
      GatewayFixture.await(
          "the messages handled", Duration.ofSeconds(5), () -> call.readyChecks.get() >= readyChecks);
    }
  }
}

package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.protobuf.services.HealthStatusManager;
import io.moecluster.core.tokenizer.Tokenizer;
import io.moecluster.proto.cluster.v1.Failed;
import io.moecluster.proto.cluster.v1.Finished;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.Submit;
import io.moecluster.proto.cluster.v1.TokenChunk;
import io.moecluster.proto.v1.FinishReason;
import io.moecluster.proto.v1.GenerateResponse;
import io.moecluster.router.RouterActor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * StreamSession's resubmission against two probe routers: when the serving router answers
 * UNAVAILABLE, the request goes to the other one resumed after the tokens already taken, under a
 * new attempt id; late events of the first router and replayed indices never reach the client, so
 * it gets every token once, in order. With no resubmission left, the router's status ends the call.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class StreamSessionResubmitTest {
  private static ActorTestKit kit;
  private static RouterDirectory directory;
  private static final List<TestProbe<RouterCommand>> routers = new ArrayList<>();
  private static Tokenizer tokenizer;
  /** Request ids of the Cancels the routers received. */
  private static final List<String> cancels = new java.util.concurrent.CopyOnWriteArrayList<>();

  @BeforeAll
  static void start() {
    kit = ActorTestKit.create();
    directory = new RouterDirectory(kit.system(), new HealthStatusManager(), GatewayFixture.settings(""));
    kit.spawn(directory.behavior());
    for (int i = 0; i < 2; i++) {
      TestProbe<RouterCommand> probe = kit.createTestProbe(RouterCommand.class);
      kit.system()
          .receptionist()
          .tell(
              Receptionist.register(
                  RouterActor.SERVICE_KEY, StreamSessionFlowControlTest.readyRouter(kit, probe)));
      routers.add(probe);
    }
    GatewayFixture.await("routers ready", Duration.ofSeconds(5), () -> directory.readyCount() == 2);
    tokenizer = Tokenizer.load(TestModel.tiny());
  }

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  private record Submitted(TestProbe<RouterCommand> router, Submit submit) {}

  /** The next Submit that reaches either router (Cancels on the way are recorded). */
  private static Submitted nextSubmit() {
    long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
    while (System.nanoTime() < deadline) {
      for (TestProbe<RouterCommand> r : routers) {
        try {
          RouterCommand c = r.receiveMessage(Duration.ofMillis(50));
          if (c.getCommandCase() == RouterCommand.CommandCase.SUBMIT) {
            return new Submitted(r, c.getSubmit());
          }
          if (c.getCommandCase() == RouterCommand.CommandCase.CANCEL) {
            cancels.add(c.getCancel().getRequestId());
          }
        } catch (AssertionError noMessage) {
          // try the other router
        }
      }
    }
    throw new AssertionError("no Submit reached a router");
  }

  private static ActorRef<Object> session(
      StreamSessionFlowControlTest.FakeCall call, String id, int maxResubmissions)
      throws Admission.RejectedException {
    StreamSession.Slot slot = new StreamSession.Slot();
    RequestValidator.ValidRequest request =
        new RequestValidator.ValidRequest(
            new int[] {1, 2, 3}, SamplingSpec.newBuilder().setTopP(1f).build(), 8, List.of(), false, 0, "");
    ActorRef<Object> ref =
        kit.spawn(
            StreamSession.create(
                new StreamSession.Env(directory, tokenizer, Duration.ofSeconds(10), maxResubmissions),
                StreamSession.Mode.STREAM,
                call,
                request,
                id,
                slot));
    slot.ticket(
        new Admission(1, 0)
            .acquire(
                p -> {
                  if (slot.offer(p)) {
                    ref.tell(StreamSession.Signal.ADMITTED);
                  }
                }));
    return ref;
  }

  private static SequenceEvent token(String attempt, int i) {
    return SequenceEvent.newBuilder()
        .setRequestId(attempt)
        .setToken(TokenChunk.newBuilder().setIndex(i).setTokenId(20 + i).setText("t" + i))
        .build();
  }

  private static SequenceEvent unavailable(String attempt) {
    return SequenceEvent.newBuilder()
        .setRequestId(attempt)
        .setFailed(Failed.newBuilder().setCode("UNAVAILABLE").setMessage("router " + attempt + " going down"))
        .build();
  }

  private static SequenceEvent finished(String attempt, int n) {
    return SequenceEvent.newBuilder()
        .setRequestId(attempt)
        .setFinished(Finished.newBuilder().setReason("length").setPromptTokens(3).setCompletionTokens(n))
        .build();
  }

  @Test
  void lostRoutersLateEventsAndReplayedTokensNeverReachTheClient() throws Exception {
    double before = GatewayMetrics.resubmissions("router_unavailable");
    var call = new StreamSessionFlowControlTest.FakeCall();
    call.ready = true;
    ActorRef<Object> s = session(call, "rs-1", 2);
    Submitted first = nextSubmit();
    assertEquals("rs-1", first.submit().getRequestId());
    assertEquals(0, first.submit().getResumeIdsCount());
    s.tell(token("rs-1", 0));
    s.tell(token("rs-1", 1));
    s.tell(unavailable("rs-1"));

    Submitted second = nextSubmit();
    assertTrue(second.router() != first.router(), "the other router");
    assertEquals("rs-1/1", second.submit().getRequestId());
    assertEquals(List.of(20, 21), second.submit().getResumeIdsList());
    assertEquals(List.of(1, 2, 3), second.submit().getPromptIdsList());
    s.tell(token("rs-1", 2)); // late, from the router the call left
    s.tell(finished("rs-1", 3));
    s.tell(token("rs-1/1", 1)); // already delivered
    s.tell(token("rs-1/1", 2));
    s.tell(token("rs-1/1", 3));
    s.tell(finished("rs-1/1", 4));
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> call.completed);

    List<Integer> ids = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    for (Object o : call.written) {
      GenerateResponse r = (GenerateResponse) o;
      if (r.getTokensCount() > 0) {
        assertEquals(ids.size(), r.getIndex());
      }
      r.getTokensList().forEach(t -> ids.add(t.getId()));
      text.append(r.getText());
    }
    assertEquals(List.of(20, 21, 22, 23), ids);
    assertEquals("t0t1t2t3", text.toString());
    GenerateResponse last = (GenerateResponse) call.written.getLast();
    assertEquals(FinishReason.FINISH_REASON_LENGTH, last.getFinishReason());
    assertEquals(4, last.getUsage().getCompletionTokens());
    assertNull(call.error);
    assertEquals(before + 1, GatewayMetrics.resubmissions("router_unavailable"));
  }

  @Test
  void withNoRouterLeftTheRoutersStatusEndsTheCall() throws Exception {
    var call = new StreamSessionFlowControlTest.FakeCall();
    call.ready = true;
    ActorRef<Object> s = session(call, "rs-2", 5);
    nextSubmit();
    s.tell(token("rs-2", 0));
    s.tell(unavailable("rs-2"));
    Submitted second = nextSubmit();
    assertEquals(List.of(20), second.submit().getResumeIdsList());
    s.tell(unavailable("rs-2/1")); // both routers lost for this call
    GatewayFixture.await("error", Duration.ofSeconds(5), () -> call.error != null);
    Status status = Status.fromThrowable(call.error);
    assertEquals(Status.Code.UNAVAILABLE, status.getCode());
    assertEquals("router rs-2/1 going down", status.getDescription());
  }

  @Test
  void anUnreachableRoutersStreamMovesAtOnceAndTheOldOneIsCancelled() throws Exception {
    double before = GatewayMetrics.resubmissions("router_unreachable");
    Started started = afterOneToken("rs-3");
    var call = started.call();
    var s = started.session();
    Submitted first = started.first();
    s.tell(new StreamSession.RouterUnreachable(first.router().ref().path().address()));
    resumedAfterOneToken("rs-3", first);
    long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
    while (!cancels.contains("rs-3") && System.nanoTime() < deadline) {
      RouterCommand c = first.router().receiveMessage(Duration.ofSeconds(5));
      if (c.getCommandCase() == RouterCommand.CommandCase.CANCEL) {
        cancels.add(c.getCancel().getRequestId());
      }
    }
    assertTrue(cancels.contains("rs-3"), "the old router may be alive: it is told to stop");
    s.tell(token("rs-3", 1)); // it was alive after all: ignored
    s.tell(token("rs-3/1", 1));
    s.tell(finished("rs-3/1", 2));
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> call.completed);
    List<Integer> ids = new ArrayList<>();
    call.written.forEach(o -> ((GenerateResponse) o).getTokensList().forEach(t -> ids.add(t.getId())));
    assertEquals(List.of(20, 21), ids);
    assertEquals(before + 1, GatewayMetrics.resubmissions("router_unreachable"));
  }

  @Test
  void aFullRoutersStreamMovesToAnotherRouterAndMayComeBack() throws Exception {
    double before = GatewayMetrics.resubmissions("router_exhausted");
    Started started = afterOneToken("rs-4");
    started.session().tell(SequenceEvent.newBuilder()
        .setRequestId("rs-4")
        .setFailed(Failed.newBuilder().setCode("RESOURCE_EXHAUSTED").setMessage("the router has no memory"))
        .build());
    resumedAfterOneToken("rs-4", started.first());
    started.session().tell(token("rs-4/1", 1));
    // The router it moved to is lost: the full one was only skipped, so the stream goes back there.
    started.session().tell(unavailable("rs-4/1"));
    Submitted third = nextSubmit();
    assertTrue(third.router() == started.first().router(), "back to the router that was full");
    assertEquals("rs-4/2", third.submit().getRequestId());
    assertEquals(List.of(20, 21), third.submit().getResumeIdsList());
    started.session().tell(token("rs-4/2", 2));
    started.session().tell(finished("rs-4/2", 3));
    GatewayFixture.await("completed", Duration.ofSeconds(5), () -> started.call().completed);
    assertNull(started.call().error);
    assertEquals(before + 1, GatewayMetrics.resubmissions("router_exhausted"));
  }

  private record Started(StreamSessionFlowControlTest.FakeCall call, ActorRef<Object> session, Submitted first) {}

  /** A stream (at most 2 resubmissions) whose first router has sent token 0. */
  private static Started afterOneToken(String id) throws Exception {
    var call = new StreamSessionFlowControlTest.FakeCall();
    call.ready = true;
    ActorRef<Object> s = session(call, id, 2);
    Submitted first = nextSubmit();
    s.tell(token(id, 0));
    return new Started(call, s, first);
  }

  /** Checks that the stream was resubmitted to the other router, to resume after token 0. */
  private static void resumedAfterOneToken(String id, Submitted first) {
    Submitted second = nextSubmit();
    assertTrue(second.router() != first.router(), "the other router");
    assertEquals(id + "/1", second.submit().getRequestId());
    assertEquals(List.of(20), second.submit().getResumeIdsList());
  }
}

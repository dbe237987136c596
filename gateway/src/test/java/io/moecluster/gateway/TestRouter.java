package io.moecluster.gateway;

import io.moecluster.proto.cluster.v1.Failed;
import io.moecluster.proto.cluster.v1.Finished;
import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.RouterStatus;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.Submit;
import io.moecluster.proto.cluster.v1.TokenChunk;
import io.moecluster.router.RouterActor;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;

/**
 * A stand-in router for gateway tests, registered under the router key: answers Submit with {@code
 * tokens} TokenChunks (ids 10, 11, ..., text "a0", "a1", ...) one every {@code interval}, then
 * Finished (a resumed Submit continues at index {@code resume_ids} count); honours Cancel; answers GetStatus with {@code ready}. Its knobs are volatile so a test
 * can turn it silent, failing or unready while it runs; it records what it saw.
 */
final class TestRouter {
  volatile boolean ready = true;

  /** Never answers Submit (first-event timeout). */
  volatile boolean silent;

  /** Answers Submit with Failed{failCode}. */
  volatile String failCode;

  volatile int tokens = 3;
  volatile Duration interval = Duration.ofMillis(5);
  final Set<String> submitted = ConcurrentHashMap.newKeySet();
  final Set<String> cancelled = ConcurrentHashMap.newKeySet();
  final Map<String, Submit> submits = new ConcurrentHashMap<>();
  final List<String> order = new java.util.concurrent.CopyOnWriteArrayList<>();

  /** The request id of the latest Submit. */
  String lastSubmitted() {
    return order.getLast();
  }

  final java.util.concurrent.atomic.AtomicInteger statusAsked =
      new java.util.concurrent.atomic.AtomicInteger();
  /** Status polls answered ready and without the placement (the health polls ask for none). */
  final java.util.concurrent.atomic.AtomicInteger placementLessPolls =
      new java.util.concurrent.atomic.AtomicInteger();

  /** Stops the test router (its Receptionist entry goes with it). */
  enum Stop implements NoSerializationVerificationNeeded {
    INSTANCE
  }

  private record Next(String requestId) implements NoSerializationVerificationNeeded {}

  private static final class Seq {
    final Submit submit;
    final ActorRef<SequenceEvent> replyTo;
    int emitted;

    Seq(Submit submit, ActorRef<SequenceEvent> replyTo) {
      this.submit = submit;
      this.replyTo = replyTo;
      this.emitted = submit.getResumeIdsCount(); // a resumed stream continues after them
    }
  }

  int running() {
    return submitted.size() - cancelled.size();
  }

  Behavior<Object> behavior() {
    return Behaviors.setup(
        context -> {
          ActorRef<RouterCommand> self = context.getSelf().narrow();
          context
              .getSystem()
              .receptionist()
              .tell(Receptionist.register(RouterActor.SERVICE_KEY, self));
          ActorRefResolver resolver = ActorRefResolver.get(context.getSystem());
          Map<String, Seq> live = new HashMap<>();
          return Behaviors.withTimers(
              timers ->
                  Behaviors.receive(Object.class)
                      .onMessage(Stop.class, stop -> Behaviors.stopped())
                      .onMessage(
                          RouterCommand.class,
                          cmd -> {
                            switch (cmd.getCommandCase()) {
                              case SUBMIT -> {
                                Submit s = cmd.getSubmit();
                                submitted.add(s.getRequestId());
                                submits.put(s.getRequestId(), s);
                                order.add(s.getRequestId());
                                ActorRef<SequenceEvent> replyTo =
                                    resolver.resolveActorRef(s.getReplyTo());
                                if (silent) {
                                  break;
                                }
                                if (failCode != null) {
                                  replyTo.tell(
                                      SequenceEvent.newBuilder()
                                          .setRequestId(s.getRequestId())
                                          .setFailed(
                                              Failed.newBuilder()
                                                  .setCode(failCode)
                                                  .setMessage("test failure"))
                                          .build());
                                  break;
                                }
                                live.put(s.getRequestId(), new Seq(s, replyTo));
                                timers.startSingleTimer(
                                    s.getRequestId(), new Next(s.getRequestId()), interval);
                              }
                              case CANCEL -> {
                                String id = cmd.getCancel().getRequestId();
                                cancelled.add(id);
                                timers.cancel(id);
                                Seq seq = live.remove(id);
                                if (seq != null) {
                                  seq.replyTo.tell(finished(seq, "cancelled"));
                                }
                              }
                              case GET_STATUS -> {
                                statusAsked.incrementAndGet();
                                ActorRef<RouterStatus> replyTo =
                                    resolver.resolveActorRef(cmd.getGetStatus().getReplyTo());
                                RouterStatus.Builder st =
                                    RouterStatus.newBuilder()
                                        .setExpertsReady(ready)
                                        .setRunning(live.size())
                                        .setNode("test");
                                if (ready && cmd.getGetStatus().getWithPlacement()) {
                                  // Out of order, and expert (0, 1) has a second replica.
                                  st.addAllPlacementNodes(List.of("n", "n2"));
                                  placed(st, 1, 0, 0, 0);
                                  placed(st, 0, 1, 1, 1);
                                  placed(st, 0, 1, 0, 0);
                                } else if (ready) {
                                  placementLessPolls.incrementAndGet();
                                } else {
                                  st.setDetail("loading");
                                }
                                replyTo.tell(st.build());
                              }
                              default -> {}
                            }
                            return Behaviors.same();
                          })
                      .onMessage(
                          Next.class,
                          n -> {
                            Seq seq = live.get(n.requestId());
                            if (seq == null) {
                              return Behaviors.same();
                            }
                            int limit = Math.min(tokens, seq.submit.getMaxTokens());
                            if (seq.emitted < limit) {
                              int i = seq.emitted++;
                              seq.replyTo.tell(
                                  SequenceEvent.newBuilder()
                                      .setRequestId(n.requestId())
                                      .setToken(chunk(seq.submit, i))
                                      .build());
                              timers.startSingleTimer(n.requestId(), n, interval);
                            } else {
                              live.remove(n.requestId());
                              seq.replyTo.tell(finished(seq, limit == tokens ? "eos" : "length"));
                            }
                            return Behaviors.same();
                          })
                      .build());
        });
  }

  private static void placed(RouterStatus.Builder st, int layer, int expert, int replica, int node) {
    st.addPlacedLayer(layer)
        .addPlacedExpert(expert)
        .addPlacedReplica(replica)
        .addPlacedNode(node)
        .addPlacedLoaded(true);
  }

  private static TokenChunk chunk(Submit submit, int i) {
    TokenChunk.Builder c = TokenChunk.newBuilder().setIndex(i).setTokenId(10 + i).setText("a" + i);
    if (submit.getLogprobs() > 0) {
      c.setLogprob(-0.25f * (i + 1));
      for (int k = 0; k < submit.getLogprobs(); k++) {
        c.addTop(
            io.moecluster.proto.cluster.v1.TopLogprob.newBuilder()
                .setId(10 + i + k)
                .setLogprob(-0.25f * (i + 1 + k)));
      }
    }
    return c.build();
  }

  private static SequenceEvent finished(Seq seq, String reason) {
    return SequenceEvent.newBuilder()
        .setRequestId(seq.submit.getRequestId())
        .setFinished(
            Finished.newBuilder()
                .setReason(reason)
                .setPromptTokens(seq.submit.getPromptIdsCount())
                .setCompletionTokens(seq.emitted))
        .build();
  }
}

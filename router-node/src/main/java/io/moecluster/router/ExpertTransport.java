package io.moecluster.router;

import io.moecluster.expert.CrashedNodeDowning;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.router.ExpertAttempt.Kind;
import io.moecluster.router.ExpertAttempt.Outcome;
import java.time.Duration;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.Cancellable;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;

/**
 * How {@link ShardedExperts} reaches its expert entities: each attempt over the entity's node's
 * data channel ({@link ExpertDataChannels}) where the node serves one, straight through Artery to
 * a located entity, or through Cluster Sharding ({@link DirectPaths} says which entities may be
 * sent to straight). Keeps the attempts in flight, ends those a lost node will never answer, and
 * has the crash downing check the nodes of attempts silent for {@code suspect-after}.
 */
final class ExpertTransport {
  private final ClusterSharding sharding;
  private final ActorRefResolver resolver;
  private final Scheduler scheduler;
  private final FailoverSettings failover;
  private final int replicas;
  private final ExpertBreakers breakers;
  private final DirectPaths paths;
  private final HedgePolicy hedge; // told how long the answered attempts took
  private final CrashedNodeDowning crashes; // told of the nodes whose requests time out
  private final ExpertDataChannels channels; // null: every request through Artery
  private final SweptTimeouts timeouts = new SweptTimeouts(); // of the data channel's calls
  private final Cancellable timeoutSweep; // null without data channels
  private final Cancellable suspectSweep; // null without crash downing
  private final Set<ExpertAttempt> inFlight = ConcurrentHashMap.newKeySet();
  // When each lost node was removed (System.nanoTime), for the attempts sent around then.
  private final Map<String, Long> removedAt = new ConcurrentHashMap<>();

  /**
   * @param dataChannels send the requests of located entities over their nodes' expert data
   *     channels where the nodes serve one
   */
  ExpertTransport(ActorSystem<?> system, FailoverSettings failover, int replicas, ExpertBreakers breakers,
      DirectPaths paths, HedgePolicy hedge, CrashedNodeDowning crashes, boolean dataChannels) {
    this.channels = dataChannels
        // A connect and its greeting take microseconds; 2 s only spares a starved node a false failure.
        ? new ExpertDataChannels(Duration.ofMillis(Math.min(2000, failover.attemptTimeout().toMillis())), timeouts)
        : null;
    Duration sweep = SweptTimeouts.sweepPeriod(failover.attemptTimeout());
    this.timeoutSweep = channels == null ? null : system.scheduler().scheduleAtFixedRate(sweep, sweep,
        () -> timeouts.sweep(System.nanoTime()), system.executionContext());
    this.sharding = ClusterSharding.get(system);
    this.resolver = ActorRefResolver.get(system);
    this.scheduler = system.scheduler();
    this.failover = failover;
    this.replicas = replicas;
    this.breakers = breakers;
    this.paths = paths;
    this.hedge = hedge;
    this.crashes = crashes;
    Duration every = failover.suspectAfter().dividedBy(2);
    this.suspectSweep = !crashes.settings().enabled() ? null
        : system.scheduler().scheduleAtFixedRate(every, every, this::suspectSilentNodes, system.executionContext());
  }

  /**
   * Sends one attempt of a chunk to one replica: over its node's data channel, straight through
   * Artery, or through sharding. Its end, whatever it is, is judged for the entity's breaker and
   * put on {@code outcomes}. The caller counts the attempt in the chunk ({@link LayerCall}, on
   * the engine thread, which is also the only reader of {@code outcomes}).
   */
  ExpertAttempt send(int layer, ExpertChunk c, int replica, Kind kind, DirectPaths.View view,
      LinkedBlockingQueue<Outcome> outcomes, long deadline) {
    String id = ExpertEntity.entityId(layer, c.expert, replica, replicas);
    long now = System.nanoTime();
    ActorRef<ExpertCommand> target = directTarget(view, id, layer, c.expert, replica, now);
    Duration attemptTimeout = Duration.ofNanos(Math.max(TimeUnit.MILLISECONDS.toNanos(1),
        Math.min(failover.attemptTimeout().toNanos(), deadline - now)));
    String endpoint = target == null || channels == null ? null : view.endpoints().get(id);
    CompletableFuture<ExpertReply> reply;
    if (endpoint != null) {
      RouterMetrics.expertCalls().labelValues("data-channel").inc();
      reply = channels.call(endpoint, id, c.request.clearReplyTo().build(), attemptTimeout);
    } else if (target != null) {
      RouterMetrics.expertCalls().labelValues("direct").inc();
      reply = AskPattern.<ExpertCommand, ExpertReply>ask(target, r -> compute(c.request, r), attemptTimeout, scheduler)
          .toCompletableFuture();
    } else {
      RouterMetrics.expertCalls().labelValues("sharding").inc();
      reply = sharding.entityRefFor(ExpertEntity.TYPE_KEY, id)
          .<ExpertReply>ask(r -> compute(c.request, r), attemptTimeout).toCompletableFuture();
    }
    ExpertAttempt a = new ExpertAttempt(c, replica, target, paths.nodeOf(id), now, kind,
        breakers.of(layer, c.expert, replica), new AtomicBoolean(), reply);
    inFlight.add(a);
    reply.whenComplete((r, e) -> {
      inFlight.remove(a);
      // Judge here, not on the engine thread: a late answer still tells the breaker the truth.
      boolean ok = e == null && (r.getError().isEmpty() || !retryable(r));
      a.judge(ok);
      if (ok && e == null) {
        hedge.record(System.nanoTime() - a.sentAt());
      }
      Throwable cause = unwrap(e);
      if (e != null && a.direct() != null) {
        if (cause instanceof ExpertDataChannels.NotHostedException) {
          // A node lists an entity for the entity's whole life: this one has stopped there, as
          // the watch will say. Its new incarnation, wherever it is, has a new ref.
          paths.markDead(a.direct());
        } else {
          // Through sharding (which follows the entity if it moved) for a while: a timeout or a
          // lost connection may be a blip of a live entity.
          paths.pause(a.direct());
        }
      }
      if (e != null && a.node() != null && !(cause instanceof NodeLostException)
          && !(cause instanceof ExpertDataChannels.NotHostedException)) {
        // A silent node may be a crashed process: the failure detector needs seconds more to say so.
        crashes.suspect(a.node());
      }
      outcomes.add(new Outcome(a, r, e));
      if (channels != null) {
        channels.wakeReader(); // the engine may be reading the data channels, not polling outcomes
      }
    });
    return a;
  }

  /** Sends what {@link #send} and {@link #hint} wrote to the data channels. */
  void flush() {
    if (channels != null) {
      channels.flush();
    }
  }

  /** The calling thread is about to wait for replies: it reads the data channels itself. */
  void enter() {
    if (channels != null) {
      channels.enter();
    }
  }

  /** The calling thread waits no more. */
  void leave() {
    if (channels != null) {
      channels.leave();
    }
  }

  /**
   * Waits up to {@code nanos} for an outcome: reading the data channels' replies on this thread
   * where there are channels (their callbacks add the outcomes), else on the queue alone.
   *
   * @return the next outcome, or null when woken without one or the wait is over
   */
  Outcome awaitOutcome(LinkedBlockingQueue<Outcome> outcomes, long nanos) throws InterruptedException {
    if (channels != null && channels.awaitReplies(nanos, () -> !outcomes.isEmpty())) {
      if (Thread.interrupted()) { // a select returns at once while the flag is set
        throw new InterruptedException();
      }
      return outcomes.poll();
    }
    return outcomes.poll(nanos, TimeUnit.NANOSECONDS);
  }

  /** Wakes the thread reading the data channels, to look at its outcomes. */
  void wakeReader() {
    if (channels != null) {
      channels.wakeReader();
    }
  }

  /**
   * A prefetch hint for one entity over its node's data channel, as {@link #send} would send a
   * request there (it goes with the next write of the layer's requests).
   *
   * @return false when the entity cannot be reached that way now: the caller sends the hint
   *     through sharding
   */
  boolean hintOverDataChannel(int layer, int expert, int replica, DirectPaths.View view, long now) {
    if (channels == null) {
      return false;
    }
    String id = ExpertEntity.entityId(layer, expert, replica, replicas);
    String endpoint = view.endpoints().get(id);
    return endpoint != null && directTarget(view, id, layer, expert, replica, now) != null
        && channels.hint(endpoint, id);
  }

  /** The entity's ref where it may be sent to straight now; null: through sharding. */
  private ActorRef<ExpertCommand> directTarget(DirectPaths.View view, String id, int layer, int expert, int replica,
      long now) {
    ActorRef<ExpertCommand> target = view.refs().get(id);
    return target != null && paths.reachable(target, layer, expert, replica, now) ? target : null;
  }

  /** A prefetch hint through sharding. */
  void hintThroughSharding(String entityId, ExpertCommand hint) {
    sharding.entityRefFor(ExpertEntity.TYPE_KEY, entityId).tell(hint);
  }

  /** The node may have crashed: the crash downing checks its cluster port. */
  void suspect(String node) {
    crashes.suspect(node);
  }

  /** The node was removed: attempts sent to it around now are ended when silent ({@link #suspectSilentNodes}). */
  void nodeRemoved(String node) {
    long now = System.nanoTime();
    removedAt.values().removeIf(t -> now - t > TimeUnit.MINUTES.toNanos(1));
    removedAt.put(node, now);
  }

  /**
   * Ends the attempts in flight to a lost node, which will never be answered, so that they are
   * sent again at once.
   *
   * @return how many were ended
   */
  int endAttemptsTo(String node, boolean removed) {
    int ended = 0;
    for (ExpertAttempt a : inFlight) {
      if (node.equals(a.node()) && a.reply().completeExceptionally(new NodeLostException(node, removed))) {
        ended++;
      }
    }
    return ended;
  }

  /**
   * The nodes of attempts unanswered for {@code suspect-after} are checked for a crashed process:
   * a crash is found ~1 s sooner than by the attempt timeout or the failure detector.
   *
   * <p>An attempt sent to an entity of a node that was already removed (this router has not
   * located the entity's new home yet) may have reached this router's shard region while it still
   * took the dead node for the shard's home: it is lost, and would cost the whole attempt timeout.
   * Silent for {@code suspect-after}, it is ended so that it is sent again at once. Once the
   * placement has located the new home, attempts name that node and are left alone; until then a
   * chunk is re-sent at most every {@code suspect-after}, within its retries and the layer's
   * budget. (Only attempts sent up to {@code suspect-after} after the removal were ended before:
   * a one-replica test then stalled 6.3 s twice in a row, one attempt timeout after the removal.)
   */
  private void suspectSilentNodes() {
    if (inFlight.isEmpty()) {
      return;
    }
    long now = System.nanoTime();
    long window = failover.suspectAfter().toNanos();
    Set<String> nodes = new HashSet<>();
    for (ExpertAttempt a : inFlight) {
      if (a.node() == null || now - a.sentAt() < window) {
        continue;
      }
      Long removed = removedAt.get(a.node());
      if (removed == null) {
        nodes.add(a.node());
      } else if (a.sentAt() >= removed - window) {
        a.reply().completeExceptionally(new NodeLostException(a.node(), true));
      }
    }
    nodes.forEach(crashes::suspect);
  }

  /** Stops the sweeps and closes the data channels (requests still in flight on them fail). */
  void close() {
    if (suspectSweep != null) {
      suspectSweep.cancel();
    }
    if (channels != null) {
      timeoutSweep.cancel();
      channels.close();
    }
  }

  static Throwable unwrap(Throwable e) {
    return e instanceof CompletionException ce && ce.getCause() != null ? ce.getCause() : e;
  }

  /**
   * An expert that answered with an error is retried, on the other replica if there is one, when
   * the fault was its node's (a failed backend, a node shutting down); the breaker counts it as a
   * failure. A request no node can serve fails the step at once.
   */
  static boolean retryable(ExpertReply reply) {
    return !reply.getError().isEmpty() && reply.getNodeFault();
  }

  private ExpertCommand compute(ComputeExperts.Builder request, ActorRef<ExpertReply> replyTo) {
    return ExpertCommand.newBuilder().setCompute(request.setReplyTo(resolver.toSerializationFormat(replyTo))).build();
  }
}

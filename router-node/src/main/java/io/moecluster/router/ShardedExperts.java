package io.moecluster.router;

import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Prefetch;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import io.moecluster.proto.cluster.v1.Located;
import java.util.HashMap;
import java.util.Set;
import java.util.function.Supplier;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;

/**
 * The cluster's {@link ExpertExecutor}: scatters each layer's expert tasks to the sharded expert
 * entities ({@code "<layer>/<expert>"}) and gathers their outputs. A task's rows are split into
 * chunks of at most {@code maxMessageBytes} of F32 activations (exact, so the tokens match a
 * single JVM); every chunk of every task is sent before any is awaited, and all are awaited
 * together under one timeout. Needs the expert sharding proxy (or region) inited on the system.
 * Given the router's placement view, it sends straight to the located entities while that view
 * is ready (see the four-argument constructor).
 * Counts the rows routed to each expert and times each layer's wait ({@link RouterMetrics}).
 */
public final class ShardedExperts implements ExpertExecutor {
  private static final Logger log = LoggerFactory.getLogger(ShardedExperts.class);
  private final ClusterSharding sharding;
  private final ActorRefResolver resolver;
  private final Duration timeout;
  private final int maxMessageBytes;
  private final AtomicLong steps = new AtomicLong();
  private final Map<Long, CounterDataPoint> routed = new ConcurrentHashMap<>(); // (layer, expert)
  private final Map<Integer, DistributionDataPoint> waits = new ConcurrentHashMap<>(); // layer

  // Direct sends: the entity refs of the latest ready placement, by (layer, expert).
  private final Supplier<ExpertPlacement.Snapshot> placement; // null: always through sharding
  private final Scheduler scheduler;
  private final long directTimeoutNanos;
  private final Set<ActorRef<?>> dead = ConcurrentHashMap.newKeySet(); // stopped (or silent) entities
  private final ActorRef<DirectWatch> watcher; // null without placement
  private volatile Direct direct = new Direct(null, Map.of());

  private record Direct(ExpertPlacement.Snapshot snapshot, Map<Long, ActorRef<ExpertCommand>> refs) {}

  /** Asks the watcher to watch an entity (local only). */
  private record DirectWatch(ActorRef<?> ref) implements NoSerializationVerificationNeeded {}

  private static final AtomicLong WATCHERS = new AtomicLong();

  /** Every request goes through Cluster Sharding. */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes) {
    this(system, timeout, maxMessageBytes, null);
  }

  /**
   * @param placement the router's placement view: while it is ready, requests go straight to the
   *     entities it names (one hop less through each node's shard region); an entity that stops
   *     (watched) or stays silent for a quarter of {@code timeout} is skipped from then on and its
   *     request sent again through sharding. Null: always through sharding.
   */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes,
      Supplier<ExpertPlacement.Snapshot> placement) {
    this.sharding = ClusterSharding.get(system);
    this.resolver = ActorRefResolver.get(system);
    this.timeout = timeout;
    this.maxMessageBytes = maxMessageBytes;
    this.placement = placement;
    this.scheduler = system.scheduler();
    this.directTimeoutNanos = timeout.toNanos() / 4;
    this.watcher = placement == null ? null : system.systemActorOf(watcher(dead),
        "moe-expert-direct-watch-" + WATCHERS.incrementAndGet(), Props.empty());
  }

  private static Behavior<DirectWatch> watcher(Set<ActorRef<?>> dead) {
    return Behaviors.setup(ctx -> Behaviors.receive(DirectWatch.class)
        .onMessage(DirectWatch.class, w -> {
          ctx.watch(w.ref());
          return Behaviors.same();
        })
        .onSignal(Terminated.class, t -> {
          dead.add(t.getRef());
          return Behaviors.same();
        })
        .build());
  }

  /** The direct refs of the current placement (rebuilt when it changes; empty until it is ready). */
  private Map<Long, ActorRef<ExpertCommand>> directRefs() {
    if (placement == null) {
      return Map.of();
    }
    ExpertPlacement.Snapshot snap = placement.get();
    Direct d = direct;
    if (d.snapshot() != snap) {
      Map<Long, ActorRef<ExpertCommand>> refs = new HashMap<>();
      if (snap != null && snap.ready()) {
        for (Located l : snap.placement()) {
          if (l.getEntity().isEmpty()) {
            continue;
          }
          try {
            ActorRef<ExpertCommand> ref = resolver.resolveActorRef(l.getEntity());
            refs.put(key(l.getLayer(), l.getExpert()), ref);
            if (!d.refs().containsValue(ref)) {
              watcher.tell(new DirectWatch(ref));
            }
          } catch (RuntimeException e) {
            // unresolvable: that expert goes through sharding
          }
        }
      }
      if (refs.size() != d.refs().size()) {
        log.info("Expert requests: {} of {} entities addressed directly, the rest through sharding", refs.size(),
            snap == null ? 0 : snap.placement().size());
      }
      d = new Direct(snap, refs);
      direct = d;
    }
    return d.refs();
  }

  private static long key(int layer, int expert) {
    return ((long) layer << 32) | expert;
  }

  private record Pending(int task, int chunk, int firstRow, int rows, CompletableFuture<ExpertReply> reply,
      ActorRef<ExpertCommand> direct, ComputeExperts.Builder request, EntityRef<ExpertCommand> entity, long sentAt) {}

  @Override
  public List<float[]> run(int layer, List<ExpertTask> tasks) {
    long stepId = steps.incrementAndGet();
    long start = System.nanoTime();
    List<Pending> pending = new ArrayList<>();
    List<float[]> outputs = new ArrayList<>(tasks.size());
    Map<Long, ActorRef<ExpertCommand>> directs = directRefs();
    for (int t = 0; t < tasks.size(); t++) {
      ExpertTask task = tasks.get(t);
      routed(layer, task.expert()).inc(task.rows());
      int hidden = task.input().length / task.rows();
      outputs.add(new float[task.input().length]); // [rows, hidden]
      int rowsPerChunk = Math.max(1, maxMessageBytes / (hidden * Float.BYTES));
      EntityRef<ExpertCommand> entity =
          sharding.entityRefFor(ExpertEntity.TYPE_KEY, ExpertEntity.entityId(layer, task.expert()));
      ActorRef<ExpertCommand> target = directs.get(key(layer, task.expert()));
      if (target != null && dead.contains(target)) {
        target = null;
      }
      for (int first = 0, chunk = 0; first < task.rows(); first += rowsPerChunk, chunk++) {
        int rows = Math.min(rowsPerChunk, task.rows() - first);
        float[] slice = Arrays.copyOfRange(task.input(), first * hidden, (first + rows) * hidden); // [rows, hidden]
        ComputeExperts.Builder request = ComputeExperts.newBuilder()
            .setStepId(stepId)
            .setChunk(chunk)
            .setLayer(layer)
            .setExpert(task.expert())
            .setInput(ActivationCodec.encode(slice, rows, hidden));
        long sentAt = System.nanoTime();
        CompletableFuture<ExpertReply> reply = target != null ? askDirect(target, request) : askSharded(entity, request);
        pending.add(new Pending(t, chunk, first, rows, reply, target, request, entity, sentAt));
      }
    }
    long deadline = System.nanoTime() + timeout.toNanos();
    for (Pending p : pending) {
      ExpertTask task = tasks.get(p.task());
      ExpertReply reply = p.direct() == null ? await(layer, task.expert(), p.reply(), deadline) : awaitDirect(layer, task.expert(), p, deadline);
      if (!reply.getError().isEmpty()) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " failed on " + reply.getNode() + ": " + reply.getError(), null);
      }
      int hidden = task.input().length / task.rows();
      float[] out;
      try {
        out = ActivationCodec.decode(reply.getOutput());
      } catch (IllegalArgumentException e) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " sent a malformed reply: " + e.getMessage(), e);
      }
      if (reply.getOutput().getRows() != p.rows() || out.length != p.rows() * hidden) {
        throw new ExpertUnavailableException(layer, task.expert(),
            "expert " + layer + "/" + task.expert() + " answered " + reply.getOutput().getRows() + " x "
                + reply.getOutput().getHidden() + " for " + p.rows() + " x " + hidden + " rows", null);
      }
      System.arraycopy(out, 0, outputs.get(p.task()), p.firstRow() * hidden, out.length);
    }
    waits.computeIfAbsent(layer, l -> RouterMetrics.expertRequestSeconds().labelValues(Integer.toString(l)))
        .observe((System.nanoTime() - start) / 1e9);
    return outputs;
  }

  private CompletableFuture<ExpertReply> askSharded(EntityRef<ExpertCommand> entity, ComputeExperts.Builder request) {
    return entity.<ExpertReply>ask(replyTo -> compute(request, replyTo), timeout).toCompletableFuture();
  }

  private CompletableFuture<ExpertReply> askDirect(ActorRef<ExpertCommand> entity, ComputeExperts.Builder request) {
    return AskPattern.<ExpertCommand, ExpertReply>ask(entity, replyTo -> compute(request, replyTo), timeout, scheduler)
        .toCompletableFuture();
  }

  private ExpertCommand compute(ComputeExperts.Builder request, ActorRef<ExpertReply> replyTo) {
    return ExpertCommand.newBuilder().setCompute(request.setReplyTo(resolver.toSerializationFormat(replyTo))).build();
  }

  /**
   * Waits for a direct request's reply for a quarter of the timeout; past that the entity is
   * skipped from now on (it may have stopped) and the request goes again through sharding.
   */
  private ExpertReply awaitDirect(int layer, int expert, Pending p, long deadline) {
    try {
      long left = Math.max(0, Math.min(deadline, p.sentAt() + directTimeoutNanos) - System.nanoTime());
      return p.reply().get(left, TimeUnit.NANOSECONDS);
    } catch (TimeoutException | ExecutionException e) {
      dead.add(p.direct());
      log.warn("Expert {}/{}: no answer from {} in {} ms; sending through sharding from now on", layer, expert,
          p.direct(), directTimeoutNanos / 1_000_000);
      return await(layer, expert, askSharded(p.entity(), p.request()), deadline);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ExpertUnavailableException(layer, expert,
          "interrupted while waiting for expert " + layer + "/" + expert, e);
    }
  }

  private CounterDataPoint routed(int layer, int expert) {
    return routed.computeIfAbsent(((long) layer << 32) | expert,
        k -> RouterMetrics.tokensRouted().labelValues(Integer.toString(layer), Integer.toString(expert)));
  }

  private ExpertReply await(int layer, int expert, CompletableFuture<ExpertReply> reply, long deadline) {
    try {
      long left = Math.max(0, deadline - System.nanoTime());
      return reply.get(left, TimeUnit.NANOSECONDS);
    } catch (TimeoutException | ExecutionException e) {
      throw new ExpertUnavailableException(layer, expert,
          "expert " + layer + "/" + expert + ": no expert node answered in time (" + timeout.toMillis()
              + " ms, moe.router.expert-timeout); are expert nodes up and reachable?", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new ExpertUnavailableException(layer, expert,
          "interrupted while waiting for expert " + layer + "/" + expert, e);
    }
  }

  @Override
  public void prefetch(int layer, int[] experts) {
    for (int e : experts) {
      sharding.entityRefFor(ExpertEntity.TYPE_KEY, ExpertEntity.entityId(layer, e))
          .tell(ExpertCommand.newBuilder().setPrefetch(Prefetch.newBuilder().setLayer(layer).addExperts(e)).build());
    }
  }
}

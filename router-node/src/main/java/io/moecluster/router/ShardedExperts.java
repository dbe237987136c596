package io.moecluster.router;

import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.CrashedNodeDowning;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.expert.ExpertSharding;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Located;
import io.moecluster.proto.cluster.v1.Prefetch;
import io.moecluster.proto.codec.ActivationCodec;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.apache.pekko.actor.Cancellable;
import org.apache.pekko.actor.NoSerializationVerificationNeeded;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;
import org.apache.pekko.cluster.typed.Unsubscribe;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The cluster's {@link ExpertExecutor}: scatters each layer's expert tasks to the sharded expert
 * entities and gathers their outputs. A task's rows are split into chunks of at most
 * {@code maxMessageBytes} of F32 activations (exact, so the tokens match a single JVM); every
 * chunk of every task is sent before any is awaited.
 *
 * <p>Failover ({@link FailoverSettings}): each attempt has its own timeout; a failed attempt is
 * sent again, identically (an expert computation is a pure function of its input, so a retry
 * changes no token), after an exponential backoff with jitter, or at once to the other replica
 * when the expert has two ({@code moe.expert.replicas}). A chunk gets at most {@code max-retries}
 * retries and the whole layer {@code expert-timeout}; past either the step fails with
 * {@link ExpertUnavailableException} (its sequences end UNAVAILABLE). Every entity has a
 * {@link CircuitBreaker} on this router (consecutive failures, or its node becoming unreachable,
 * open it; a probe closes it), and with replicas a chunk that has not answered within the
 * {@link HedgePolicy} delay goes to the other replica as well; the first answer wins.
 *
 * <p>Given the router's placement view, it sends straight to the entities located there with
 * loaded weights (the whole view need not be ready): over their node's expert data channel
 * ({@link ExpertDataChannels}) where the node serves one and is not this node (in {@code moe serve}
 * a local message needs no socket nor serialization), else through Artery. An entity that
 * stops (watched), is not on the node its channel reaches or whose node was removed is reached
 * through sharding from then on; one that fails an attempt otherwise, whose channel fails or
 * whose node is unreachable, for the breaker cool-down (and until its breaker is closed again),
 * or until its node is reachable again. Counts the rows routed to each expert and times each
 * layer's wait ({@link RouterMetrics}); a slow layer is described in the log.
 */
public final class ShardedExperts implements ExpertExecutor {
  private static final Logger log = LoggerFactory.getLogger(ShardedExperts.class);
  private static final AtomicLong WATCHERS = new AtomicLong();
  private static final int LATENCY_WINDOW = 512;
  // A layer whose expert wait is longer than this is described in the log (at most once a second),
  // so a stall seen by a client can be traced to a replica, a retry, a hedge or the sharding path.
  private static final long SLOW_LAYER_NANOS = TimeUnit.MILLISECONDS.toNanos(250);
  private final AtomicLong lastSlowLayerLog = new AtomicLong(System.nanoTime() - TimeUnit.SECONDS.toNanos(1));

  private final ClusterSharding sharding;
  private final ActorRefResolver resolver;
  private final Scheduler scheduler;
  private final Duration timeout; // the budget of one layer
  private final int maxMessageBytes;
  private final FailoverSettings failover;
  private final int replicas;
  private final AtomicLong steps = new AtomicLong();
  private final Map<Long, CounterDataPoint> routed = new ConcurrentHashMap<>(); // (layer, expert)
  private final CounterDataPoint hintsByChannel = RouterMetrics.prefetchHints().labelValues("data-channel");
  private final CounterDataPoint hintsBySharding = RouterMetrics.prefetchHints().labelValues("sharding");
  private final CounterDataPoint hintsStayingWarm = RouterMetrics.prefetchHints().labelValues("stays-warm");
  private final Map<Integer, DistributionDataPoint> waits = new ConcurrentHashMap<>(); // layer
  private final Map<String, CircuitBreaker> breakers = new ConcurrentHashMap<>(); // entity id
  private final HedgePolicy hedge;
  private final CrashedNodeDowning crashes; // told of the nodes whose requests time out

  // Direct sends: the entity refs of the latest ready placement, by entity id.
  private final Supplier<ExpertPlacement.Snapshot> placement; // null: always through sharding
  // Entities that are gone for good: stopped (watched, or "not hosted" by their node) or on a
  // removed node. Sharding finds their new incarnations, which the placement names by new refs.
  private final Set<ActorRef<?>> dead = ConcurrentHashMap.newKeySet();
  // Entities that failed an attempt otherwise (a timeout, a lost or refused data channel) or whose
  // node became unreachable, when (System.nanoTime): they go through sharding for the breaker
  // cool-down and until their breaker is closed, or until their node is reachable again, then
  // straight again. Each may be a blip of a live entity (a node's GC pause of seconds), and through
  // sharding every request pays 1-2 ms a hop more: a mark for good cost that for the router's life.
  private final Map<ActorRef<?>, Long> pausedAt = new ConcurrentHashMap<>();
  private final ActorRef<WatcherCommand> watcher;
  private volatile Direct direct = new Direct(null, Map.of(), Map.of(), Set.of());
  private final ExpertDataChannels channels; // null: every request through Artery
  private final SweptTimeouts timeouts = new SweptTimeouts(); // of the data channel's calls
  private final Cancellable timeoutSweep; // null without data channels
  private final Cancellable suspectSweep; // null without crash downing
  private final Consumer<String> refusals; // told by the crash downing; null with one replica
  private final AtomicBoolean closed = new AtomicBoolean();
  private final WarmExperts warm; // what the nodes said stays warm: no hints for those
  private final String self; // this node's address: its own entities are sent to in process, not over a socket

  /**
   * The direct paths of one placement: entity refs by entity id, the data channel endpoint of the
   * node each one lives on (absent when that node serves none), and the set of those refs.
   */
  private record Direct(ExpertPlacement.Snapshot snapshot, Map<String, ActorRef<ExpertCommand>> refs,
      Map<String, String> endpoints, Set<ActorRef<?>> live) {}

  private final Set<Attempt> inFlight = ConcurrentHashMap.newKeySet();
  // Where each entity was last located: the placement forgets a node's entities once it is down,
  // before its removal, when their breakers must be reset.
  private final Map<String, String> lastNode = new ConcurrentHashMap<>();
  // When each lost node was removed (System.nanoTime), for the attempts sent around then.
  private final Map<String, Long> removedAt = new ConcurrentHashMap<>();
  private final Set<LinkedBlockingQueue<Outcome>> waiting = ConcurrentHashMap.newKeySet(); // of running steps
  private static final Outcome WAKE = new Outcome(null, null, null); // look at the breakers again
  private static final Outcome MOVED = new Outcome(null, null, null); // a node was removed: retry now

  /** The watcher's messages: local only. */
  private sealed interface WatcherCommand extends NoSerializationVerificationNeeded {}

  /** Watch an entity that requests go to directly. */
  private record DirectWatch(ActorRef<?> ref) implements WatcherCommand {}

  /**
   * A member ({@code pekko://moe@host:port}) became unreachable, or its cluster port refused a
   * connection (a crashed process, {@code why} says which), or it was removed (downed first).
   */
  private record Lost(String node, boolean removed, String why) implements WatcherCommand {}

  /** A member ({@code pekko://moe@host:port}) is reachable again. */
  private record Reachable(String node) implements WatcherCommand {}

  /** The executor is closed: the watcher unsubscribes and stops. */
  private record StopWatching() implements WatcherCommand {}

  /** Every request goes through Cluster Sharding; default failover settings. */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes) {
    this(system, timeout, maxMessageBytes, null);
  }

  /** Default failover settings (see {@link #ShardedExperts(ActorSystem, Duration, int, Supplier, FailoverSettings)}). */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes,
      Supplier<ExpertPlacement.Snapshot> placement) {
    this(system, timeout, maxMessageBytes, placement, FailoverSettings.defaults());
  }

  /**
   * @param timeout the budget of one layer's expert requests, retries included
   *     ({@code moe.router.expert-timeout})
   * @param placement the router's placement view: while it is ready, requests go straight to the
   *     entities it names (one hop less through each node's shard region). Null: always through
   *     sharding.
   * @param failover attempt timeout, retries, breakers and hedging
   */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes,
      Supplier<ExpertPlacement.Snapshot> placement, FailoverSettings failover) {
    this(system, timeout, maxMessageBytes, placement, failover, false);
  }

  /**
   * @param dataChannels send the requests of located entities over their nodes' expert data
   *     channels ({@code moe.router.data-channel}) where the nodes serve one; Artery otherwise
   */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes,
      Supplier<ExpertPlacement.Snapshot> placement, FailoverSettings failover, boolean dataChannels) {
    this.channels = dataChannels && placement != null
        // A connect and its greeting take microseconds; 2 s only spares a starved node a false failure.
        ? new ExpertDataChannels(Duration.ofMillis(Math.min(2000, failover.attemptTimeout().toMillis())), timeouts)
        : null;
    Duration sweep = SweptTimeouts.sweepPeriod(failover.attemptTimeout());
    this.timeoutSweep = channels == null ? null : system.scheduler().scheduleAtFixedRate(sweep, sweep,
        () -> timeouts.sweep(System.nanoTime()), system.executionContext());
    this.sharding = ClusterSharding.get(system);
    this.resolver = ActorRefResolver.get(system);
    this.scheduler = system.scheduler();
    this.timeout = timeout;
    this.maxMessageBytes = maxMessageBytes;
    this.failover = failover;
    this.replicas = ExpertSharding.replicas(system);
    this.warm = new WarmExperts(replicas);
    this.placement = placement;
    this.hedge = new HedgePolicy(failover.hedgePercentile(), failover.hedgeMinDelay().toNanos(),
        failover.hedgeMaxDelay().toNanos(), LATENCY_WINDOW);
    this.crashes = CrashedNodeDowning.ID.apply(system);
    this.self = Cluster.get(system).selfMember().address().toString();
    Duration every = failover.suspectAfter().dividedBy(2);
    this.suspectSweep = !crashes.settings().enabled() ? null
        : system.scheduler().scheduleAtFixedRate(every, every, this::suspectSilentNodes, system.executionContext());
    this.watcher = system.systemActorOf(watcher(dead, this::onNodeLost, this::onNodeReachable),
        "moe-expert-direct-watch-" + WATCHERS.incrementAndGet(), Props.empty());
    // With replicas, a refused cluster port (a crashed process) is routed around at once, not after
    // the confirmations and the down (a live process accepts, so a wrong guess cannot happen; the
    // down stays careful). With one replica there is nowhere to go until the experts move: the
    // requests keep waiting for the down and the removal as before.
    ActorRef<WatcherCommand> w = watcher;
    this.refusals = replicas < 2 ? null
        : node -> w.tell(new Lost(node, false, "refusing connections (its process crashed)"));
    if (refusals != null) {
      crashes.onRefusal(refusals);
    }
    RouterMetrics.expertRetries();
    RouterMetrics.expertFailovers();
    RouterMetrics.hedgesSent();
    RouterMetrics.hedgesWon();
    RouterMetrics.breakerOpens();
    RouterMetrics.breakerProbes();
    RouterMetrics.expertAttemptFailures();
    RouterMetrics.expertStepFailures(); // all at 0 from the start, so dashboards see them
  }

  /** Entities per expert ({@code moe.expert.replicas}). */
  public int replicas() {
    return replicas;
  }

  /** The breaker of one entity (created closed on first use). */
  public CircuitBreaker breaker(int layer, int expert, int replica) {
    String id = ExpertEntity.entityId(layer, expert, replica, replicas);
    return breakers.computeIfAbsent(id, k -> {
      var gauge = RouterMetrics.breakerState().labelValues(Integer.toString(layer), Integer.toString(expert),
          Integer.toString(replica));
      gauge.set(0);
      return new CircuitBreaker(failover.breakerFailures(), failover.breakerCoolDown().toNanos(), System::nanoTime,
          (from, to) -> {
            gauge.set(to.gaugeValue);
            // Per entity at debug: a lost node opens dozens at once (one warning per node says so).
            if (to == CircuitBreaker.State.OPEN) {
              RouterMetrics.breakerOpens().inc();
              log.debug("Expert {}: circuit breaker open ({} -> {})", k, from, to);
            } else if (to == CircuitBreaker.State.CLOSED) {
              log.debug("Expert {}: circuit breaker closed again", k);
            }
          });
    });
  }

  private static Behavior<WatcherCommand> watcher(Set<ActorRef<?>> dead, Consumer<Lost> onLost,
      Consumer<String> onReachable) {
    return Behaviors.setup(ctx -> {
      var subscriptions = Cluster.get(ctx.getSystem()).subscriptions();
      ActorRef<ClusterEvent.UnreachableMember> unreachable = ctx.messageAdapter(ClusterEvent.UnreachableMember.class,
          u -> new Lost(u.member().address().toString(), false, "unreachable"));
      ActorRef<ClusterEvent.ReachableMember> reachable = ctx.messageAdapter(ClusterEvent.ReachableMember.class,
          r -> new Reachable(r.member().address().toString()));
      ActorRef<ClusterEvent.MemberRemoved> removed = ctx.messageAdapter(ClusterEvent.MemberRemoved.class,
          r -> new Lost(r.member().address().toString(), true, "removed"));
      subscriptions.tell(Subscribe.create(unreachable, ClusterEvent.UnreachableMember.class));
      subscriptions.tell(Subscribe.create(reachable, ClusterEvent.ReachableMember.class));
      subscriptions.tell(Subscribe.create(removed, ClusterEvent.MemberRemoved.class));
      return Behaviors.receive(WatcherCommand.class)
          .onMessage(DirectWatch.class, w -> {
            ctx.watch(w.ref());
            return Behaviors.same();
          })
          .onMessage(Lost.class, u -> {
            onLost.accept(u);
            return Behaviors.same();
          })
          .onMessage(Reachable.class, r -> {
            onReachable.accept(r.node());
            return Behaviors.same();
          })
          .onMessage(StopWatching.class, s -> {
            subscriptions.tell(new Unsubscribe<>(unreachable));
            subscriptions.tell(new Unsubscribe<>(reachable));
            subscriptions.tell(new Unsubscribe<>(removed));
            return Behaviors.stopped();
          })
          .onSignal(Terminated.class, t -> {
            dead.add(t.getRef());
            return Behaviors.same();
          })
          .build();
    });
  }

  /**
   * A node was lost. Unreachable (the failure detector gave up on it, or its port refused a
   * connection): open the breakers of
   * every entity placed there, so requests go to the other replica (or wait for the entity to
   * move) without each paying a timeout first, and send them through sharding until the node is
   * reachable again or the cool-down has passed. Removed (downed): its entities are being started
   * elsewhere; with one replica their breakers close again at once, with two they stay open until
   * a probe finds the new home answering. Either way, attempts in flight
   * to it will never be answered: end them now, so they are retried at once.
   */
  private void onNodeLost(Lost lost) {
    boolean removed = lost.removed();
    String node = lost.node();
    if (removed) {
      long now = System.nanoTime();
      removedAt.values().removeIf(t -> now - t > TimeUnit.MINUTES.toNanos(1));
      removedAt.put(node, now);
    }
    directRefs(); // the placement seen last, before the node's entities are forgotten there
    warm.forgetNode(node); // its entities are hinted again, wherever they come back
    Map<String, ActorRef<ExpertCommand>> refs = direct.refs();
    int touched = 0;
    for (var e : lastNode.entrySet()) {
      if (!e.getValue().equals(node)) {
        continue;
      }
      ExpertEntity.Id id = ExpertEntity.parseEntityId(e.getKey());
      CircuitBreaker b = breaker(id.layer(), id.expert(), id.replica());
      if (!removed) {
        b.forceOpen();
      } else if (replicas == 1) {
        b.reset(); // nothing else to send to: go to the new home at once
      }
      // With replicas, a removed node's breakers stay open: the live replica keeps the traffic and
      // the breaker's own probe (after cool-down) moves it back once the new home answers. Closing
      // them at once sent every layer's requests to entities still being started elsewhere, and
      // each paid a hedge delay (1.9 s stall in a 4-JVM run instead of 0.36 s).
      ActorRef<ExpertCommand> ref = refs.get(e.getKey());
      if (ref != null && removed) {
        dead.add(ref); // its next request goes through sharding, which follows the entity when it moves
      } else if (ref != null) {
        pausedAt.put(ref, System.nanoTime()); // unreachable may be a pause: not for good
      }
      touched++;
    }
    int aborted = 0;
    for (Attempt a : inFlight) {
      if (node.equals(a.node()) && a.reply().completeExceptionally(new NodeLostException(node, removed))) {
        aborted++;
      }
    }
    for (LinkedBlockingQueue<Outcome> q : waiting) {
      q.add(removed ? MOVED : WAKE); // chunks that wait for a breaker or a backoff look again
    }
    if (channels != null) {
      channels.wakeReader();
    }
    if (touched > 0 || aborted > 0) {
      log.warn("Expert node {} is {}: {} expert entities {}, {} request(s) in flight sent again", node,
          lost.why(), touched, removed ? "will be started elsewhere" : "skipped", aborted);
    }
  }

  /**
   * A node is reachable again (a GC pause or a network blip is over): its entities that were sent
   * through sharding because of it, or of the attempts that failed meanwhile, are sent to straight
   * again at once. Package-private for tests; the watcher calls it on {@code ReachableMember}.
   */
  void onNodeReachable(String node) {
    Map<String, ActorRef<ExpertCommand>> refs = directRefs().refs();
    int cleared = 0;
    for (var e : lastNode.entrySet()) {
      ActorRef<ExpertCommand> ref = e.getValue().equals(node) ? refs.get(e.getKey()) : null;
      if (ref != null && pausedAt.remove(ref) != null) {
        cleared++;
      }
    }
    if (cleared > 0) {
      log.info("Expert node {} is reachable again: {} expert entities addressed directly again", node, cleared);
    }
  }

  /** An attempt ended because its node is gone: {@code removed} means its entities are moving. */
  private static final class NodeLostException extends RuntimeException {
    final boolean removed;

    NodeLostException(String node, boolean removed) {
      super("expert node " + node + (removed ? " was removed from the cluster" : " is unreachable"), null, false, false);
      this.removed = removed;
    }
  }

  /**
   * The direct refs of the current placement (rebuilt when it changes; empty until it is ready);
   * records the node of every located entity.
   */
  private Direct directRefs() {
    if (placement == null) {
      return direct;
    }
    ExpertPlacement.Snapshot snap = placement.get();
    Direct d = direct;
    if (d.snapshot() != snap) {
      Map<String, ActorRef<ExpertCommand>> refs = new HashMap<>();
      Map<String, String> endpoints = new HashMap<>();
      if (snap != null) {
        for (Located l : snap.placement()) {
          lastNode.put(ExpertEntity.entityId(l.getLayer(), l.getExpert(), l.getReplica(), replicas), l.getNode());
        }
      }
      // Not only once the placement is ready: after a node loss it is not ready until the lost
      // entities are placed again, and the live ones should keep their direct path meanwhile
      // (through sharding each request waits on this router's view of shard homes, which the
      // loss of the shard coordinator's node leaves stale for a while).
      if (snap != null) {
        for (Located l : snap.placement()) {
          if (l.getEntity().isEmpty() || !l.getLoaded()) {
            continue;
          }
          try {
            ActorRef<ExpertCommand> ref = resolver.resolveActorRef(l.getEntity());
            String id = ExpertEntity.entityId(l.getLayer(), l.getExpert(), l.getReplica(), replicas);
            refs.put(id, ref);
            if (!l.getDataEndpoint().isEmpty() && !l.getNode().equals(self)) {
              endpoints.put(id, l.getDataEndpoint());
            }
            if (!d.live().contains(ref)) {
              watcher.tell(new DirectWatch(ref));
            }
          } catch (RuntimeException e) {
            // unresolvable: that entity goes through sharding
          }
        }
      }
      if (refs.size() != d.refs().size()) {
        log.info("Expert requests: {} of {} entities addressed directly, the rest through sharding", refs.size(),
            snap == null ? 0 : snap.placement().size());
      }
      d = new Direct(snap, refs, endpoints, Set.copyOf(refs.values()));
      direct = d;
    }
    forgetUnplaced(d);
    return d;
  }

  /**
   * Forgets the refs found dead or paused that the placement no longer names: their entities live
   * on under new refs, and only a named ref is ever sent to. Else both would keep every lost node's
   * entities for the router's life. Cheap on every call: both are empty but after a failure. Should
   * a late answer of a removed node make the placement name a forgotten ref again, its watch (a
   * new one, as for any ref new to the placement) or its first failed attempt marks it again.
   */
  private void forgetUnplaced(Direct d) {
    if (!dead.isEmpty()) {
      dead.removeIf(ref -> !d.live().contains(ref));
    }
    if (!pausedAt.isEmpty()) {
      pausedAt.keySet().removeIf(ref -> !d.live().contains(ref));
    }
  }

  /**
   * Refs found dead or paused that the current placement no longer names, yet are remembered
   * (for tests). A paused ref the placement still names is kept: it goes straight again after
   * its cool-down.
   */
  int rememberedUnplacedRefs() {
    Set<ActorRef<?>> live = direct.live();
    return (int) (dead.stream().filter(r -> !live.contains(r)).count()
        + pausedAt.keySet().stream().filter(r -> !live.contains(r)).count());
  }

  /** One chunk of one task: the unit that is sent, retried and hedged. Engine thread only. */
  private static final class Chunk {
    final int task;
    final int expert;
    final int firstRow;
    final int rows;
    final ComputeExperts.Builder request;
    final int preferred; // the replica it goes to while that one is healthy
    int inFlight;
    int probesInFlight; // of inFlight: probe copies, which nothing waits for
    int retries;
    long sendAt; // when to (re)send; Long.MAX_VALUE while attempts are in flight
    boolean hedged;
    boolean hedgeRefused; // due, but the other replica's breaker said no
    boolean waitsForBreaker; // every breaker refused: re-checked whenever anything happens
    boolean done;
    Attempt primary;
    Attempt last;
    Attempt winner; // the attempt whose answer was taken
    long doneAt;
    int sends; // attempts sent, hedges included
    String lastError = "";

    /**
     * Attempts in flight that the chunk waits for: a probe copy may be going to an entity that will
     * never answer (its node not yet removed), so a failed primary is retried without waiting for it.
     */
    int awaited() {
      return inFlight - probesInFlight;
    }

    Chunk(int task, int expert, int firstRow, int rows, ComputeExperts.Builder request, int preferred) {
      this.task = task;
      this.expert = expert;
      this.firstRow = firstRow;
      this.rows = rows;
      this.request = request;
      this.preferred = preferred;
    }
  }

  /** Why an attempt was sent. */
  private enum Kind {
    /** The chunk's own send (or a retry). */
    PRIMARY,
    /** A copy to the other replica, as the primary is slow. */
    HEDGE,
    /** A copy to a replica whose breaker is due for its probe, beside a primary to a healthy one. */
    PROBE
  }

  /** One send of a chunk to one entity; judged (success or failure) once, for its breaker. */
  private record Attempt(Chunk chunk, int replica, ActorRef<ExpertCommand> direct, String node,
      long sentAt, Kind kind, CircuitBreaker breaker, AtomicBoolean judged, CompletableFuture<ExpertReply> reply) {
    boolean hedge() {
      return kind == Kind.HEDGE;
    }

    void judge(boolean ok) {
      if (judged.compareAndSet(false, true)) {
        if (ok) {
          breaker.onSuccess();
        } else {
          breaker.onFailure();
          RouterMetrics.expertAttemptFailures().inc();
        }
      }
    }
  }

  /** An attempt ended: with a reply, or with an error (timeout, undeliverable). */
  private record Outcome(Attempt attempt, ExpertReply reply, Throwable error) {}

  @Override
  public boolean remote() {
    return true;
  }

  @Override
  public List<float[]> run(int layer, List<ExpertTask> tasks) {
    long stepId = steps.incrementAndGet();
    long start = System.nanoTime();
    long deadline = start + timeout.toNanos();
    long hedgeDelay = replicas > 1 && failover.hedgeEnabled() ? hedge.delayNanos() : Long.MAX_VALUE;
    LinkedBlockingQueue<Outcome> outcomes = new LinkedBlockingQueue<>();
    Direct directs = directRefs();
    waiting.add(outcomes);
    if (channels != null) {
      channels.enter(); // this thread reads its replies from the data channels itself
    }
    try {
      return run(layer, tasks, stepId, start, deadline, hedgeDelay, outcomes, directs);
    } finally {
      waiting.remove(outcomes);
      if (channels != null) {
        channels.leave();
      }
    }
  }

  private List<float[]> run(int layer, List<ExpertTask> tasks, long stepId, long start, long deadline,
      long hedgeDelay, LinkedBlockingQueue<Outcome> outcomes, Direct directs) {
    List<Chunk> chunks = new ArrayList<>();
    List<float[]> outputs = new ArrayList<>(tasks.size());
    for (int t = 0; t < tasks.size(); t++) {
      ExpertTask task = tasks.get(t);
      routed(layer, task.expert()).inc(task.rows());
      int hidden = task.input().length / task.rows();
      outputs.add(new float[task.input().length]); // [rows, hidden]
      int rowsPerChunk = Math.max(1, maxMessageBytes / (hidden * Float.BYTES));
      int preferred = Math.floorMod(layer * 31 + task.expert(), replicas); // spreads experts over replicas
      for (int first = 0, c = 0; first < task.rows(); first += rowsPerChunk, c++) {
        int rows = Math.min(rowsPerChunk, task.rows() - first);
        float[] slice = Arrays.copyOfRange(task.input(), first * hidden, (first + rows) * hidden); // [rows, hidden]
        ComputeExperts.Builder request = ComputeExperts.newBuilder()
            .setStepId(stepId)
            .setChunk(c)
            .setLayer(layer)
            .setExpert(task.expert())
            .setInput(ActivationCodec.encode(slice, rows, hidden));
        Chunk chunk = new Chunk(t, task.expert(), first, rows, request, preferred);
        chunks.add(chunk);
        int replica = pick(layer, chunk, -1);
        send(layer, chunk, replica, Kind.PRIMARY, directs, outcomes, deadline);
        probeOther(layer, chunk, replica, directs, outcomes, deadline);
      }
    }
    flushChannels();
    int remaining = chunks.size();
    // The chunks are looked over (retries due, hedges due) only when a timer is due or an
    // attempt failed: a prefill layer has thousands of chunks, and most answers need no scan.
    boolean scan = true;
    long wake = deadline;
    while (remaining > 0) {
      long now = System.nanoTime();
      if (now >= deadline) {
        break;
      }
      if (scan || now >= wake) {
        scan = false;
        wake = scan(layer, chunks, now, deadline, hedgeDelay, directs, outcomes);
        flushChannels(); // the retries and hedges it sent
      }
      Outcome o = outcomes.poll();
      try {
        if (o == null) {
          long nanos = Math.max(0, wake - System.nanoTime());
          if (channels != null && channels.awaitReplies(nanos, () -> !outcomes.isEmpty())) {
            if (Thread.interrupted()) { // a select returns at once while the flag is set
              throw new InterruptedException();
            }
            o = outcomes.poll(); // null: woken without an outcome, or the wait is over; look again
          } else {
            o = outcomes.poll(nanos, TimeUnit.NANOSECONDS);
          }
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new ExpertUnavailableException(layer, chunks.get(0).expert,
            "interrupted while waiting for the experts of layer " + layer, e);
      }
      for (; o != null; o = outcomes.poll()) {
        if (o == MOVED) {
          // The lost node's entities are starting elsewhere: whatever waits for a backoff goes now.
          long t = System.nanoTime();
          for (Chunk c : chunks) {
            if (!c.done && c.awaited() == 0) {
              c.sendAt = Math.min(c.sendAt, t);
            }
          }
          scan = true;
        } else if (o == WAKE) {
          scan = true;
        } else if (onOutcome(layer, o, tasks, outputs)) {
          remaining--;
        } else {
          scan = true; // a failed (or ignored) attempt: maybe a retry to schedule
        }
      }
    }
    if (remaining > 0) {
      Chunk stuck = chunks.stream().filter(c -> !c.done).findFirst().orElseThrow();
      RouterMetrics.expertStepFailures().inc();
      throw new ExpertUnavailableException(layer, stuck.expert, "expert " + layer + "/" + stuck.expert
          + ": no expert node answered in time (" + timeout.toMillis() + " ms, moe.router.expert-timeout; "
          + stuck.retries + " retries" + (stuck.lastError.isEmpty() ? "" : ", last: " + stuck.lastError)
          + "); are expert nodes up and reachable?", null);
    }
    long elapsed = System.nanoTime() - start;
    waits.computeIfAbsent(layer, l -> RouterMetrics.expertRequestSeconds().labelValues(Integer.toString(l)))
        .observe(elapsed / 1e9);
    if (elapsed > SLOW_LAYER_NANOS) {
      logSlowLayer(layer, start, elapsed, chunks);
    }
    return outputs;
  }

  private void logSlowLayer(int layer, long start, long elapsed, List<Chunk> chunks) {
    long last = lastSlowLayerLog.get();
    if (chunks.isEmpty() || !log.isInfoEnabled() || start - last < TimeUnit.SECONDS.toNanos(1)
        || !lastSlowLayerLog.compareAndSet(last, start)) {
      return;
    }
    Chunk slowest = chunks.get(0);
    int resent = 0;
    for (Chunk c : chunks) {
      if (c.doneAt > slowest.doneAt) {
        slowest = c;
      }
      resent += c.sends > 1 ? 1 : 0;
    }
    Attempt w = slowest.winner;
    String kind = w.kind() == Kind.PRIMARY ? "" : ", a " + w.kind().name().toLowerCase(java.util.Locale.ROOT);
    log.info("Slow expert layer {}: {} ms for {} chunk(s), {} sent more than once; the last, expert {}, answered "
            + "after {} ms from replica {} ({}{}), sent {} ms into the layer, {} attempt(s){}{}",
        layer, elapsed / 1_000_000, chunks.size(), resent, slowest.expert, (slowest.doneAt - start) / 1_000_000,
        w.replica(), w.direct() != null ? "direct" : "through sharding", kind,
        (w.sentAt() - start) / 1_000_000, slowest.sends,
        slowest.lastError.isEmpty() ? "" : "; last error: " + slowest.lastError,
        replicas < 2 ? "" : "; breakers now " + breaker(layer, slowest.expert, 0).state() + "/"
            + breaker(layer, slowest.expert, 1).state() + (slowest.hedgeRefused ? ", its hedge was refused" : ""));
  }

  /** Sends the retries and hedges that are due; returns when the next one will be. */
  private long scan(int layer, List<Chunk> chunks, long now, long deadline, long hedgeDelay, Direct directs,
      LinkedBlockingQueue<Outcome> outcomes) {
    long wake = deadline;
    for (Chunk c : chunks) {
      if (c.done) {
        continue;
      }
      if (c.awaited() == 0 && (c.sendAt <= now || c.waitsForBreaker)) {
        int replica = pick(layer, c, c.last == null ? -1 : c.last.replica());
        if (replica >= 0) {
          if (c.last != null) {
            RouterMetrics.expertRetries().inc();
            if (replica != c.last.replica()) {
              RouterMetrics.expertFailovers().inc();
            }
          }
          send(layer, c, replica, Kind.PRIMARY, directs, outcomes, deadline);
          probeOther(layer, c, replica, directs, outcomes, deadline);
        }
      }
      if (c.awaited() == 1 && !c.hedged && c.primary != null && now - c.primary.sentAt() >= hedgeDelay) {
        int other = 1 - c.primary.replica();
        c.hedged = true; // once per attempt: when the other replica's breaker refuses, no hedge
        if (c.primary.node() != null) {
          crashes.suspect(c.primary.node()); // silent past the hedge delay: a crash is found in ~1 ms
        }
        if (breaker(layer, c.expert, other).tryAcquire()) {
          RouterMetrics.hedgesSent().inc();
          send(layer, c, other, Kind.HEDGE, directs, outcomes, deadline);
        } else {
          c.hedgeRefused = true;
        }
      }
      if (c.awaited() == 0) {
        wake = Math.min(wake, c.sendAt);
      } else if (!c.hedged && c.primary != null && hedgeDelay != Long.MAX_VALUE) {
        wake = Math.min(wake, c.primary.sentAt() + hedgeDelay);
      }
    }
    return wake;
  }

  /**
   * The replica a chunk goes to next: the preferred one, or the other after a failure there
   * ({@code failed}); a replica with a closed breaker before one that would only let a probe
   * through. -1 when no breaker admits a request now: the chunk waits ({@code sendAt}) until the
   * first one lets a probe through.
   */
  private int pick(int layer, Chunk c, int failed) {
    int first = failed >= 0 && replicas > 1 ? 1 - failed : c.preferred;
    for (int i = 0; i < replicas; i++) {
      int r = (first + i) % replicas;
      if (breaker(layer, c.expert, r).state() == CircuitBreaker.State.CLOSED) {
        c.waitsForBreaker = false;
        return r;
      }
    }
    long soonest = Long.MAX_VALUE;
    for (int i = 0; i < replicas; i++) {
      int r = (first + i) % replicas;
      CircuitBreaker b = breaker(layer, c.expert, r);
      if (b.tryAcquire()) {
        c.waitsForBreaker = false;
        return r;
      }
      soonest = Math.min(soonest, b.availableAt());
    }
    c.sendAt = soonest;
    c.waitsForBreaker = true;
    return -1;
  }

  /**
   * With a chunk sent to a healthy replica, the other one's breaker may be due for its probe: the
   * probe goes as a copy of the chunk, so a replica still coming back (its entity restarting on
   * another node) costs no stall; the first answer wins, as with a hedge.
   */
  private void probeOther(int layer, Chunk c, int sentTo, Direct directs, LinkedBlockingQueue<Outcome> outcomes,
      long deadline) {
    if (replicas < 2 || sentTo < 0) {
      return;
    }
    int other = 1 - sentTo;
    CircuitBreaker b = breaker(layer, c.expert, other);
    if (b.state() != CircuitBreaker.State.CLOSED && b.tryAcquire()) {
      RouterMetrics.breakerProbes().inc();
      send(layer, c, other, Kind.PROBE, directs, outcomes, deadline);
      c.hedged = true; // the copy stands in for this attempt's hedge
    }
  }

  private void send(int layer, Chunk c, int replica, Kind kind, Direct directs,
      LinkedBlockingQueue<Outcome> outcomes, long deadline) {
    if (replica < 0) {
      return; // waits for a breaker (sendAt set by pick)
    }
    String id = ExpertEntity.entityId(layer, c.expert, replica, replicas);
    ActorRef<ExpertCommand> target = directs.refs().get(id);
    long now = System.nanoTime();
    if (target != null && !reachableDirectly(target, layer, c.expert, replica, now)) {
      target = null;
    }
    Duration attemptTimeout = Duration.ofNanos(Math.max(TimeUnit.MILLISECONDS.toNanos(1),
        Math.min(failover.attemptTimeout().toNanos(), deadline - now)));
    String endpoint = target == null || channels == null ? null : directs.endpoints().get(id);
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
    Attempt a = new Attempt(c, replica, target, lastNode.get(id), now, kind,
        breaker(layer, c.expert, replica), new AtomicBoolean(), reply);
    inFlight.add(a);
    c.inFlight++;
    if (kind == Kind.PROBE) {
      c.probesInFlight++;
    }
    c.sends++;
    c.sendAt = Long.MAX_VALUE;
    c.last = a;
    if (kind == Kind.PRIMARY) {
      c.primary = a;
    }
    reply.whenComplete((r, e) -> {
      inFlight.remove(a);
      // Judge here, not on the engine thread: a late answer still tells the breaker the truth.
      boolean ok = e == null && (r.getError().isEmpty() || !retryable(r));
      a.judge(ok);
      if (ok && e == null) {
        hedgeLatency(a);
      }
      Throwable cause = unwrap(e);
      if (e != null && a.direct() != null) {
        if (cause instanceof ExpertDataChannels.NotHostedException) {
          // A node lists an entity for the entity's whole life: this one has stopped there, as
          // the watch will say. Its new incarnation, wherever it is, has a new ref.
          dead.add(a.direct());
        } else {
          // Through sharding (which follows the entity if it moved) for a while: a timeout or a
          // lost connection may be a blip of a live entity.
          pausedAt.put(a.direct(), System.nanoTime());
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
  }

  /** Whether a located entity may be sent to straight: it has not stopped and is not paused. */
  private boolean reachableDirectly(ActorRef<?> target, int layer, int expert, int replica, long now) {
    return !dead.contains(target) && !paused(target, layer, expert, replica, now);
  }

  /**
   * Whether the entity failed an attempt, or its node was unreachable, within the breaker
   * cool-down, or since then its breaker has not closed again. An open breaker lets its probe
   * through just as the cool-down ends: that probe goes through sharding, which reaches the entity
   * wherever it is, and once it has closed the breaker the entity is sent to straight again.
   * (Sent straight, a probe meets what failed there again: where only the direct path fails, the
   * entity would be reached one chunk per cool-down.)
   */
  private boolean paused(ActorRef<?> target, int layer, int expert, int replica, long now) {
    Long since = pausedAt.get(target);
    if (since == null) {
      return false;
    }
    if (now - since < failover.breakerCoolDown().toNanos()
        || breaker(layer, expert, replica).state() != CircuitBreaker.State.CLOSED) {
      return true;
    }
    pausedAt.remove(target, since);
    return false;
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
    Set<String> nodes = new java.util.HashSet<>();
    for (Attempt a : inFlight) {
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

  private static Throwable unwrap(Throwable e) {
    return e instanceof java.util.concurrent.CompletionException ce && ce.getCause() != null ? ce.getCause() : e;
  }

  private void hedgeLatency(Attempt a) {
    hedge.record(System.nanoTime() - a.sentAt());
  }

  /**
   * An expert that answered with an error is retried, on the other replica if there is one, when
   * the fault was its node's (a failed backend, a node shutting down); the breaker counts it as a
   * failure. A request no node can serve fails the step at once.
   */
  static boolean retryable(ExpertReply reply) {
    return !reply.getError().isEmpty() && reply.getNodeFault();
  }

  /** @return true when this outcome completed its chunk */
  private boolean onOutcome(int layer, Outcome o, List<ExpertTask> tasks, List<float[]> outputs) {
    Attempt a = o.attempt();
    Chunk c = a.chunk();
    c.inFlight--;
    if (a.kind() == Kind.PROBE) {
      c.probesInFlight--;
    }
    if (c.done) {
      return false; // the other replica answered first; this one is ignored
    }
    ExpertReply reply = o.reply();
    if (o.error() != null || retryable(reply)) {
      Throwable cause = unwrap(o.error());
      c.lastError = cause instanceof NodeLostException || cause instanceof ExpertDataChannels.NotHostedException
          || cause instanceof java.io.IOException ? cause.getMessage()
          : cause != null ? "no answer from replica " + a.replica() + " in " + failover.attemptTimeout().toMillis()
              + " ms (moe.router.failover.attempt-timeout)"
          : reply.getError();
      if (c.awaited() > 0) {
        return false; // the other attempt may still answer
      }
      if (c.retries >= failover.maxRetries()) {
        RouterMetrics.expertStepFailures().inc();
        throw new ExpertUnavailableException(layer, c.expert, "expert " + layer + "/" + c.expert
            + ": no expert node answered after " + c.retries + " retries (moe.router.failover.max-retries): "
            + c.lastError, o.error());
      }
      c.retries++;
      c.hedged = false;
      c.primary = null;
      // Another replica: at once (it is a redirect, not a reload). The same entity: after a backoff.
      // The entities of a removed node are starting elsewhere: no reason to wait either.
      boolean otherReplica = replicas > 1;
      // Not hosted: the entity moved, and sharding knows where to (a redirect, not a failure to wait out).
      boolean moved = cause instanceof NodeLostException lost && lost.removed
          || cause instanceof ExpertDataChannels.NotHostedException;
      c.sendAt = otherReplica || moved ? System.nanoTime()
          : System.nanoTime() + failover.backoffNanos(c.retries, ThreadLocalRandom.current().nextDouble());
      log.debug("Expert {}/{} chunk {}: {}; retry {} {}", layer, c.expert, reply == null ? -1 : reply.getChunk(),
          c.lastError, c.retries, otherReplica ? "on the other replica" : "after a backoff");
      return false;
    }
    if (!reply.getError().isEmpty()) {
      throw new ExpertUnavailableException(layer, c.expert,
          "expert " + layer + "/" + c.expert + " failed on " + reply.getNode() + ": " + reply.getError(), null);
    }
    ExpertTask task = tasks.get(c.task);
    int hidden = task.input().length / task.rows();
    float[] out;
    try {
      out = ActivationCodec.decode(reply.getOutput());
    } catch (IllegalArgumentException e) {
      throw new ExpertUnavailableException(layer, c.expert,
          "expert " + layer + "/" + c.expert + " sent a malformed reply: " + e.getMessage(), e);
    }
    if (reply.getOutput().getRows() != c.rows || out.length != c.rows * hidden) {
      throw new ExpertUnavailableException(layer, c.expert,
          "expert " + layer + "/" + c.expert + " answered " + reply.getOutput().getRows() + " x "
              + reply.getOutput().getHidden() + " for " + c.rows + " x " + hidden + " rows", null);
    }
    System.arraycopy(out, 0, outputs.get(c.task), c.firstRow * hidden, out.length);
    c.done = true;
    c.doneAt = System.nanoTime();
    c.winner = a;
    warm.noteReply(ExpertEntity.entityId(layer, c.expert, a.replica(), replicas), reply);
    if (a.hedge()) {
      RouterMetrics.hedgesWon().inc();
      if (c.primary != null) {
        c.primary.judge(false); // silent past the hedge delay and beaten: counts as a failure
      }
    }
    return true;
  }

  private ExpertCommand compute(ComputeExperts.Builder request, ActorRef<ExpertReply> replyTo) {
    return ExpertCommand.newBuilder().setCompute(request.setReplyTo(resolver.toSerializationFormat(replyTo))).build();
  }

  private CounterDataPoint routed(int layer, int expert) {
    return routed.computeIfAbsent(((long) layer << 32) | expert,
        k -> RouterMetrics.tokensRouted().labelValues(Integer.toString(layer), Integer.toString(expert)));
  }

  /**
   * Hints go to every replica of each expert: the replica that is not chosen now is the one a
   * failover or hedge lands on, and it should find the weights warm (a hint is a few bytes). A
   * located entity whose node's data channel is open gets it there, in the write that carries
   * the layer's requests; the others through sharding (through Artery, a hint cost the 2-core
   * test machine about as much CPU as a request, and 20% of the inter-token latency).
   */
  @Override
  public void prefetch(int layer, int[] experts) {
    Direct current = directRefs(); // also brings lastNode up to date
    Direct directs = channels == null ? null : current;
    long now = System.nanoTime();
    for (int e : experts) {
      ExpertCommand hint = null;
      for (int r = 0; r < replicas; r++) {
        String id = ExpertEntity.entityId(layer, e, r, replicas);
        // Loaded: the placement names its ref only once its warm-up is done.
        if (warm.staysWarm(id, lastNode.get(id), current.refs().containsKey(id))) {
          hintsStayingWarm.inc();
          continue; // its node said it stays warm there: a hint cannot help
        }
        if (directs != null) {
          String endpoint = directs.endpoints().get(id);
          ActorRef<ExpertCommand> target = directs.refs().get(id);
          if (endpoint != null && target != null && reachableDirectly(target, layer, e, r, now)
              && channels.hint(endpoint, id)) {
            hintsByChannel.inc();
            continue;
          }
        }
        if (hint == null) {
          hint = ExpertCommand.newBuilder().setPrefetch(Prefetch.newBuilder().setLayer(layer).addExperts(e)).build();
        }
        sharding.entityRefFor(ExpertEntity.TYPE_KEY, id).tell(hint);
        hintsBySharding.inc();
      }
    }
  }

  /** No hint for a layer whose every entity's node said it stays warm there. */
  @Override
  public boolean wantsHints(int layer) {
    return !warm.layerStaysWarm(layer, directRefs().snapshot());
  }

  private void flushChannels() {
    if (channels != null) {
      channels.flush();
    }
  }

  /**
   * Closes the data channels (requests still in flight on them fail) and takes back what this
   * executor added to the actor system (its schedules, its watcher, its refusal listener): a
   * system may outlive many executors.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    if (suspectSweep != null) {
      suspectSweep.cancel();
    }
    if (refusals != null) {
      crashes.removeRefusalListener(refusals);
    }
    watcher.tell(new StopWatching());
    if (channels != null) {
      timeoutSweep.cancel();
      channels.close();
    }
  }
}

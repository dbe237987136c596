package io.moecluster.router;

import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.CrashedNodeDowning;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.expert.ExpertSharding;
import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.Prefetch;
import io.moecluster.router.ExpertAttempt.Outcome;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.cluster.typed.Cluster;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The cluster's {@link ExpertExecutor}: scatters each layer's expert tasks to the sharded expert
 * entities and gathers their outputs ({@link LayerCall}). A task's rows are split into chunks of
 * at most {@code maxMessageBytes} of F32 activations (exact, so the tokens match a single JVM);
 * every chunk of every task is sent before any is awaited.
 *
 * <p>Failover ({@link FailoverSettings}): each attempt has its own timeout; a failed attempt is
 * sent again, identically (an expert computation is a pure function of its input, so a retry
 * changes no token), after an exponential backoff with jitter, or at once to the other replica
 * when the expert has two ({@code moe.expert.replicas}). A chunk gets at most {@code max-retries}
 * retries and the whole layer {@code expert-timeout}; past either the step fails with
 * {@link ExpertUnavailableException} (its sequences end UNAVAILABLE). Every entity has a
 * {@link CircuitBreaker} on this router ({@link ExpertBreakers}: consecutive failures, or its node
 * becoming unreachable, open it; a probe closes it), and with replicas a chunk that has not
 * answered within the {@link HedgePolicy} delay goes to the other replica as well; the first
 * answer wins.
 *
 * <p>Given the router's placement view, it sends ({@link ExpertTransport}) straight to the
 * entities located there with loaded weights ({@link DirectPaths}; the whole view need not be
 * ready): over their node's expert data channel ({@link ExpertDataChannels}) where the node serves
 * one and is not this node (in {@code moe serve} a local message needs no socket nor
 * serialization), else through Artery. An
 * entity that stops (watched by {@link ExpertNodeWatcher}), is not on the node its channel reaches
 * or whose node was removed is reached through sharding from then on; one that fails an attempt
 * otherwise, whose channel fails or whose node is unreachable, for the breaker cool-down (and until
 * its breaker is closed again), or until its node is reachable again. Counts the rows routed to
 * each expert and times each layer's wait ({@link RouterMetrics}); a slow layer is described in
 * the log.
 */
public final class ShardedExperts implements ExpertExecutor {
  private static final Logger log = LoggerFactory.getLogger(ShardedExperts.class);
  private static final AtomicLong WATCHERS = new AtomicLong();
  private static final int LATENCY_WINDOW = 512;
  // A layer whose expert wait is longer than this is described in the log (at most once a second),
  // so a stall seen by a client can be traced to a replica, a retry, a hedge or the sharding path.
  private static final long SLOW_LAYER_NANOS = TimeUnit.MILLISECONDS.toNanos(250);
  private final AtomicLong lastSlowLayerLog = new AtomicLong(System.nanoTime() - TimeUnit.SECONDS.toNanos(1));

  private final FailoverSettings failover;
  private final int replicas;
  private final AtomicLong steps = new AtomicLong();
  private final Map<Long, CounterDataPoint> routed = new ConcurrentHashMap<>(); // (layer, expert)
  private final CounterDataPoint hintsByChannel = RouterMetrics.prefetchHints().labelValues("data-channel");
  private final CounterDataPoint hintsBySharding = RouterMetrics.prefetchHints().labelValues("sharding");
  private final CounterDataPoint hintsStayingWarm = RouterMetrics.prefetchHints().labelValues("stays-warm");
  private final Map<Integer, DistributionDataPoint> waits = new ConcurrentHashMap<>(); // layer
  private final ExpertBreakers breakers;
  private final LayerCall.Settings callSettings; // what each layer's call is given
  private final HedgePolicy hedge;
  private final CrashedNodeDowning crashes; // tells of refused connections (with replicas)
  private final DirectPaths paths;
  private final ExpertTransport transport;
  private final ActorRef<ExpertNodeWatcher.Command> watcher;
  private final Consumer<String> refusals; // told by the crash downing; null with one replica
  private final AtomicBoolean closed = new AtomicBoolean();
  private final WarmExperts warm; // what the nodes said stays warm: no hints for those
  private final Set<LinkedBlockingQueue<Outcome>> waiting = ConcurrentHashMap.newKeySet(); // of running steps

  /** Every request goes through Cluster Sharding; default failover settings. */
  public ShardedExperts(ActorSystem<?> system, Duration timeout, int maxMessageBytes) {
    this(system, timeout, maxMessageBytes, null);
  }

  /**
   * Default failover settings (see
   * {@link #ShardedExperts(ActorSystem, Duration, int, Supplier, FailoverSettings)}).
   */
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
    this.failover = failover;
    this.replicas = ExpertSharding.replicas(system);
    this.breakers = new ExpertBreakers(replicas, failover);
    this.warm = new WarmExperts(replicas);
    this.hedge = new HedgePolicy(failover.hedgePercentile(), failover.hedgeMinDelay().toNanos(),
        failover.hedgeMaxDelay().toNanos(), LATENCY_WINDOW);
    this.crashes = CrashedNodeDowning.ID.apply(system);
    this.paths = new DirectPaths(placement, ActorRefResolver.get(system), replicas,
        Cluster.get(system).selfMember().address().toString(), this::watch, breakers,
        failover.breakerCoolDown().toNanos());
    this.transport = new ExpertTransport(system, failover, replicas, breakers, paths, hedge, crashes,
        dataChannels && placement != null);
    this.callSettings = new LayerCall.Settings(breakers, failover, replicas, timeout, maxMessageBytes, transport, warm);
    this.watcher = system.systemActorOf(ExpertNodeWatcher.create(paths::markDead, this::onNodeLost,
        this::onNodeReachable), "moe-expert-direct-watch-" + WATCHERS.incrementAndGet(), Props.empty());
    // With replicas, a refused cluster port (a crashed process) is routed around at once, not after
    // the confirmations and the down (a live process accepts, so a wrong guess cannot happen; the
    // down stays careful). With one replica there is nowhere to go until the experts move: the
    // requests keep waiting for the down and the removal as before.
    ActorRef<ExpertNodeWatcher.Command> w = watcher;
    this.refusals = replicas < 2 ? null
        : node -> w.tell(new ExpertNodeWatcher.Lost(node, false, "refusing connections (its process crashed)"));
    if (refusals != null) {
      crashes.onRefusal(refusals);
    }
    // Only now: a member event handled before this.watcher is set could not ask for a watch.
    watcher.tell(new ExpertNodeWatcher.Start());
    RouterMetrics.expertRetries();
    RouterMetrics.expertFailovers();
    RouterMetrics.hedgesSent();
    RouterMetrics.hedgesWon();
    RouterMetrics.breakerOpens();
    RouterMetrics.breakerProbes();
    RouterMetrics.expertAttemptFailures();
    RouterMetrics.expertStepFailures(); // all at 0 from the start, so dashboards see them
  }

  /** Asks the watcher to say when an entity sent to straight stops. */
  private void watch(ActorRef<?> entity) {
    watcher.tell(new ExpertNodeWatcher.Watch(entity));
  }

  /** Entities per expert ({@code moe.expert.replicas}). */
  public int replicas() {
    return replicas;
  }

  /** The breaker of one entity (created closed on first use). */
  public CircuitBreaker breaker(int layer, int expert, int replica) {
    return breakers.of(layer, expert, replica);
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
  private void onNodeLost(ExpertNodeWatcher.Lost lost) {
    boolean removed = lost.removed();
    String node = lost.node();
    if (removed) {
      transport.nodeRemoved(node);
    }
    // The placement seen last, before the node's entities are forgotten there.
    Map<String, ActorRef<ExpertCommand>> refs = paths.current().refs();
    warm.forgetNode(node); // its entities are hinted again, wherever they come back
    int touched = 0;
    for (String id : paths.entitiesOn(node)) {
      ExpertEntity.Id entity = ExpertEntity.parseEntityId(id);
      CircuitBreaker b = breaker(entity.layer(), entity.expert(), entity.replica());
      if (!removed) {
        b.forceOpen();
      } else if (replicas == 1) {
        b.reset(); // nothing else to send to: go to the new home at once
      }
      // With replicas, a removed node's breakers stay open: the live replica keeps the traffic and
      // the breaker's own probe (after cool-down) moves it back once the new home answers. Closing
      // them at once sent every layer's requests to entities still being started elsewhere, and
      // each paid a hedge delay (1.9 s stall in a 4-JVM run instead of 0.36 s).
      ActorRef<ExpertCommand> ref = refs.get(id);
      if (ref != null && removed) {
        paths.markDead(ref); // its next request goes through sharding, which follows the entity when it moves
      } else if (ref != null) {
        paths.pause(ref); // unreachable may be a pause: not for good
      }
      touched++;
    }
    int aborted = transport.endAttemptsTo(node, removed);
    for (LinkedBlockingQueue<Outcome> q : waiting) {
      q.add(removed ? Outcome.MOVED : Outcome.WAKE); // chunks that wait for a breaker or a backoff look again
    }
    transport.wakeReader();
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
    int cleared = paths.unpause(node);
    if (cleared > 0) {
      log.info("Expert node {} is reachable again: {} expert entities addressed directly again", node, cleared);
    }
  }

  /** See {@link DirectPaths#rememberedUnplacedRefs()} (for tests). */
  int rememberedUnplacedRefs() {
    return paths.rememberedUnplacedRefs();
  }

  @Override
  public boolean remote() {
    return true;
  }

  @Override
  public List<float[]> run(int layer, List<ExpertTask> tasks) {
    long stepId = steps.incrementAndGet();
    long start = System.nanoTime();
    long hedgeDelay = replicas > 1 && failover.hedgeEnabled() ? hedge.delayNanos() : Long.MAX_VALUE;
    for (ExpertTask task : tasks) {
      routed(layer, task.expert()).inc(task.rows());
    }
    LayerCall call = new LayerCall(callSettings, layer, tasks, start, hedgeDelay, paths.current());
    LinkedBlockingQueue<Outcome> outcomes = call.outcomes();
    waiting.add(outcomes);
    transport.enter(); // this thread reads its replies from the data channels itself
    try {
      List<float[]> outputs = call.run(stepId);
      long elapsed = System.nanoTime() - start;
      waits.computeIfAbsent(layer, l -> RouterMetrics.expertRequestSeconds().labelValues(Integer.toString(l)))
          .observe(elapsed / 1e9);
      if (elapsed > SLOW_LAYER_NANOS && call.describable() && slowLayerLogDue(start)) {
        call.logSlow(elapsed);
      }
      return outputs;
    } finally {
      waiting.remove(outcomes);
      transport.leave();
    }
  }

  /** At most one slow layer a second is described in the log. */
  private boolean slowLayerLogDue(long start) {
    long last = lastSlowLayerLog.get();
    return start - last >= TimeUnit.SECONDS.toNanos(1) && lastSlowLayerLog.compareAndSet(last, start);
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
    DirectPaths.View view = paths.current(); // also brings the entities' nodes up to date
    long now = System.nanoTime();
    for (int e : experts) {
      ExpertCommand hint = null;
      for (int r = 0; r < replicas; r++) {
        String id = ExpertEntity.entityId(layer, e, r, replicas);
        // Loaded: the placement names its ref only once its warm-up is done.
        if (warm.staysWarm(id, paths.nodeOf(id), view.refs().containsKey(id))) {
          hintsStayingWarm.inc();
          continue; // its node said it stays warm there: a hint cannot help
        }
        if (transport.hintOverDataChannel(layer, e, r, view, now)) {
          hintsByChannel.inc();
          continue;
        }
        if (hint == null) {
          hint = ExpertCommand.newBuilder().setPrefetch(Prefetch.newBuilder().setLayer(layer).addExperts(e)).build();
        }
        transport.hintThroughSharding(id, hint);
        hintsBySharding.inc();
      }
    }
  }

  /** No hint for a layer whose every entity's node said it stays warm there. */
  @Override
  public boolean wantsHints(int layer) {
    return !warm.layerStaysWarm(layer, paths.current().snapshot());
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
    if (refusals != null) {
      crashes.removeRefusalListener(refusals);
    }
    watcher.tell(new ExpertNodeWatcher.Stop());
    transport.close();
  }
}

package io.moecluster.router;

import io.moecluster.core.model.prefetch.PredictionAccuracy;
import io.moecluster.core.model.prefetch.PrefetchListener;
import io.prometheus.metrics.core.datapoints.GaugeDataPoint;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The Prometheus metric families of the router role, registered once per JVM in the default
 * registry (several routers in one JVM, as in tests, share them; gauges tell nodes apart by the
 * {@code node} label). Holders are nested classes so a family is registered exactly once, when
 * first used.
 *
 * <p>Every family is built {@code withoutExemplars()}: no tracer supplies trace ids for them, and
 * the exemplar sampler's rate limiter schedules a task on the client's scheduler thread for each
 * observation it keeps, a thread wake-up on the path of every layer or token.
 */
public final class RouterMetrics {
  private RouterMetrics() {}

  /** {@code moe_tokens_routed_total{layer,expert}}: rows the gate sent to each expert. */
  public static Counter tokensRouted() {
    return Holder.TOKENS_ROUTED;
  }

  /** {@code moe_expert_request_seconds{layer}}: one layer's scatter/gather wait for its experts. */
  public static Histogram expertRequestSeconds() {
    return Holder.REQUEST_SECONDS;
  }

  /**
   * {@code moe_expert_calls_total{path}}: expert request attempts by the way they went:
   * {@code data-channel} (the expert node's data channel), {@code direct} (Artery, straight to the
   * located entity) or {@code sharding} (Artery, through the shard regions).
   */
  public static Counter expertCalls() {
    return Holder.CALLS;
  }

  /**
   * {@code moe_prefetch_hints_total{path}}: hints for single expert entities (each replica its own),
   * by what became of them: {@code data-channel} or {@code sharding} (sent that way), or
   * {@code stays-warm} (not sent: the entity's node said it stays warm there).
   */
  public static Counter prefetchHints() {
    return Holder.PREFETCH_HINTS;
  }

  /** {@code moe_expert_retries_total}: expert requests sent again after a failed or timed-out attempt. */
  public static Counter expertRetries() {
    return Holder.RETRIES;
  }

  /** {@code moe_expert_failovers_total}: retries that went to another replica than the failed attempt. */
  public static Counter expertFailovers() {
    return Failover.FAILOVERS;
  }

  /** {@code moe_expert_attempt_failures_total}: attempts that timed out or failed. */
  public static Counter expertAttemptFailures() {
    return Failover.ATTEMPT_FAILURES;
  }

  /** {@code moe_expert_hedges_sent_total}: requests also sent to the other replica (slow first answer). */
  public static Counter hedgesSent() {
    return Failover.HEDGES_SENT;
  }

  /** {@code moe_expert_hedges_won_total}: hedged requests where the second replica answered first. */
  public static Counter hedgesWon() {
    return Failover.HEDGES_WON;
  }

  /** {@code moe_expert_breaker_state{layer,expert,replica}}: 0 closed, 1 half-open, 2 open. */
  public static Gauge breakerState() {
    return Failover.BREAKER_STATE;
  }

  /** {@code moe_expert_breaker_opens_total}: times an entity's circuit breaker opened. */
  public static Counter breakerOpens() {
    return Failover.BREAKER_OPENS;
  }

  /**
   * {@code moe_expert_breaker_probes_total}: copies of a chunk sent to a replica whose breaker was
   * due for its probe, beside the request to the healthy replica.
   */
  public static Counter breakerProbes() {
    return Failover.BREAKER_PROBES;
  }

  /** {@code moe_expert_step_failures_total}: layers given up (their sequences failed UNAVAILABLE). */
  public static Counter expertStepFailures() {
    return Failover.STEP_FAILURES;
  }

  /** {@code moe_router_running_sequences{node}}: sequences in the running batch. */
  public static Gauge runningSequences() {
    return Holder.RUNNING;
  }

  /** {@code moe_router_waiting_sequences{node}}: sequences waiting for a slot. */
  public static Gauge waitingSequences() {
    return Holder.WAITING;
  }

  /** {@code moe_prefetch_issued_total{layer}}: experts hinted for a layer (by the layers before it). */
  public static Counter prefetchIssued() {
    return Holder.PREFETCH_ISSUED;
  }

  /**
   * {@code moe_prefetch_skipped_total{layer}}: predictions of a layer not made because every one of
   * its experts stays warm where it runs (no hint could help).
   */
  public static Counter prefetchSkipped() {
    return Holder.PREFETCH_SKIPPED;
  }

  /** {@code moe_prefetch_routed_total{layer,depth}}: real top-k choices of predicted layers. */
  public static Counter prefetchRouted() {
    return Holder.PREFETCH_ROUTED;
  }

  /** {@code moe_prefetch_predicted_total{layer,depth}}: of those, the ones the lookahead predicted. */
  public static Counter prefetchPredicted() {
    return Holder.PREFETCH_PREDICTED;
  }

  /** {@code moe_prefetch_prediction_accuracy{node,layer}}: predicted / routed so far, all depths. */
  public static Gauge prefetchAccuracy() {
    return Holder.PREFETCH_ACCURACY;
  }

  /** Turns a router's prefetcher reports into the prefetch metrics. */
  static PrefetchListener prefetchListener(String node, int layers) {
    return new PrefetchListener() {
      private final AtomicLongArray routed = new AtomicLongArray(layers);
      private final AtomicLongArray predicted = new AtomicLongArray(layers);
      private final GaugeDataPoint[] accuracy = new GaugeDataPoint[layers];

      @Override
      public void onHints(int sourceLayer, int targetLayer, int[] experts) {
        prefetchIssued().labelValues(Integer.toString(targetLayer)).inc(experts.length);
      }

      @Override
      public void onSkipped(int sourceLayer, int targetLayer) {
        prefetchSkipped().labelValues(Integer.toString(targetLayer)).inc();
      }

      @Override
      public void onAccuracy(PredictionAccuracy a) {
        String layer = Integer.toString(a.layer());
        String depth = Integer.toString(a.depth());
        prefetchRouted().labelValues(layer, depth).inc(a.routed());
        prefetchPredicted().labelValues(layer, depth).inc(a.predicted());
        long r = routed.addAndGet(a.layer(), a.routed());
        long p = predicted.addAndGet(a.layer(), a.predicted());
        if (accuracy[a.layer()] == null) {
          accuracy[a.layer()] = prefetchAccuracy().labelValues(node, layer);
        }
        accuracy[a.layer()].set(r == 0 ? 1.0 : (double) p / r);
      }
    };
  }

  private static final class Failover {
    static final Counter FAILOVERS = Counter.builder().withoutExemplars().name("moe_expert_failovers_total")
        .help("Expert request retries sent to another replica than the attempt that failed").register();
    static final Counter ATTEMPT_FAILURES = Counter.builder().withoutExemplars()
        .name("moe_expert_attempt_failures_total")
        .help("Expert request attempts that timed out (moe.router.failover.attempt-timeout) or failed").register();
    static final Counter HEDGES_SENT = Counter.builder().withoutExemplars().name("moe_expert_hedges_sent_total")
        .help("Expert requests also sent to the other replica after the hedge delay").register();
    static final Counter HEDGES_WON = Counter.builder().withoutExemplars().name("moe_expert_hedges_won_total")
        .help("Hedged expert requests answered first by the hedge").register();
    static final Gauge BREAKER_STATE = Gauge.builder().withoutExemplars().name("moe_expert_breaker_state")
        .help("Circuit breaker of an expert entity on this router: 0 closed, 1 half-open, 2 open")
        .labelNames("layer", "expert", "replica").register();
    static final Counter BREAKER_OPENS = Counter.builder().withoutExemplars().name("moe_expert_breaker_opens_total")
        .help("Times a circuit breaker of an expert entity opened").register();
    static final Counter BREAKER_PROBES = Counter.builder().withoutExemplars().name("moe_expert_breaker_probes_total")
        .help("Copies of a request sent to a recovering replica (breaker due for a probe) beside the healthy one")
        .register();
    static final Counter STEP_FAILURES = Counter.builder().withoutExemplars().name("moe_expert_step_failures_total")
        .help("Layers whose expert requests could not complete within moe.router.expert-timeout").register();
  }

  private static final class Holder {
    static final Counter TOKENS_ROUTED = Counter.builder().withoutExemplars().name("moe_tokens_routed_total")
        .help("Rows (tokens) the router's gates sent to each expert").labelNames("layer", "expert").register();
    static final Histogram REQUEST_SECONDS = Histogram.builder().withoutExemplars().name("moe_expert_request_seconds")
        .help("Time a layer waits for all its expert requests (scatter to gather)").labelNames("layer")
        .classicOnly().classicExponentialUpperBounds(0.0001, 2, 18).register();
    static final Counter CALLS = Counter.builder().withoutExemplars().name("moe_expert_calls_total")
        .help("Expert request attempts by path: data-channel, direct (Artery to the located entity) or sharding")
        .labelNames("path").register();
    static final Counter RETRIES = Counter.builder().withoutExemplars().name("moe_expert_retries_total")
        .help("Expert requests retried after a failure or timeout").register();
    static final Gauge RUNNING = Gauge.builder().withoutExemplars().name("moe_router_running_sequences")
        .help("Sequences in the router's running batch").labelNames("node").register();
    static final Gauge WAITING = Gauge.builder().withoutExemplars().name("moe_router_waiting_sequences")
        .help("Sequences waiting for a slot in the router's batch").labelNames("node").register();
    static final Counter PREFETCH_ISSUED = Counter.builder().withoutExemplars().name("moe_prefetch_issued_total")
        .help("Experts predicted for a layer by gate lookahead and handed on as hints (per expert, not per replica;"
            + " moe_prefetch_hints_total counts what was sent)").labelNames("layer").register();
    static final Counter PREFETCH_HINTS = Counter.builder().withoutExemplars().name("moe_prefetch_hints_total")
        .help("Prefetch hints for single expert entities, by path: data-channel or sharding (sent), stays-warm (not"
            + " sent: the node said the entity stays warm there)")
        .labelNames("path").register();
    static final Counter PREFETCH_SKIPPED = Counter.builder().withoutExemplars().name("moe_prefetch_skipped_total")
        .help("Predictions of a layer skipped because its experts all stay warm where they run (no hint could help)")
        .labelNames("layer").register();
    static final Counter PREFETCH_ROUTED = Counter.builder().withoutExemplars().name("moe_prefetch_routed_total")
        .help("Real top-k choices of layers that had been predicted, by prediction depth")
        .labelNames("layer", "depth").register();
    static final Counter PREFETCH_PREDICTED = Counter.builder().withoutExemplars().name("moe_prefetch_predicted_total")
        .help("Real top-k choices that the gate lookahead had predicted, by prediction depth")
        .labelNames("layer", "depth").register();
    static final Gauge PREFETCH_ACCURACY = Gauge.builder().withoutExemplars().name("moe_prefetch_prediction_accuracy")
        .help("Share of a layer's real top-k choices that were predicted, so far (all depths)")
        .labelNames("node", "layer").register();
  }
}

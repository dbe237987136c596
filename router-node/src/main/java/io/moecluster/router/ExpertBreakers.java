package io.moecluster.router;

import io.moecluster.expert.ExpertEntity;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * This router's circuit breakers, one per expert entity, created closed on first use. Each
 * exports its state as {@code moe_expert_breaker_state} and counts its openings.
 */
final class ExpertBreakers {
  private static final Logger log = LoggerFactory.getLogger(ExpertBreakers.class);

  private final Map<String, CircuitBreaker> breakers = new ConcurrentHashMap<>(); // entity id
  private final int replicas;
  private final FailoverSettings failover;

  ExpertBreakers(int replicas, FailoverSettings failover) {
    this.replicas = replicas;
    this.failover = failover;
  }

  CircuitBreaker of(int layer, int expert, int replica) {
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
}

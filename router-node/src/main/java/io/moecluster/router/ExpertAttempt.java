package io.moecluster.router;

import io.moecluster.proto.cluster.v1.ExpertCommand;
import io.moecluster.proto.cluster.v1.ExpertReply;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * One send of a chunk to one entity; judged (success or failure) once, for its breaker.
 *
 * @param chunk what was sent
 * @param replica the replica it went to
 * @param direct the entity's ref where it was sent straight; null through sharding
 * @param node the entity's node as last located; null when never located
 * @param sentAt when it was sent ({@link System#nanoTime})
 * @param kind why it was sent
 * @param breaker the entity's breaker, told the attempt's success or failure once
 * @param judged whether the breaker has been told
 * @param reply the answer, or the error that ended the attempt
 */
record ExpertAttempt(ExpertChunk chunk, int replica, ActorRef<ExpertCommand> direct, String node, long sentAt,
    Kind kind, CircuitBreaker breaker, AtomicBoolean judged, CompletableFuture<ExpertReply> reply) {

  /** Why an attempt was sent. */
  enum Kind {
    /** The chunk's own send (or a retry). */
    PRIMARY,
    /** A copy to the other replica, as the primary is slow. */
    HEDGE,
    /** A copy to a replica whose breaker is due for its probe, beside a primary to a healthy one. */
    PROBE
  }

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

  /**
   * An attempt ended: with a reply, or with an error (timeout, undeliverable). {@link #WAKE} and
   * {@link #MOVED} carry no attempt: they tell a waiting layer to look at its chunks again.
   */
  record Outcome(ExpertAttempt attempt, ExpertReply reply, Throwable error) {
    /** Look at the breakers again. */
    static final Outcome WAKE = new Outcome(null, null, null);
    /** A node was removed: whatever waits for a backoff is sent now. */
    static final Outcome MOVED = new Outcome(null, null, null);
  }
}

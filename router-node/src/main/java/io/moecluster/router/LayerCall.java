package io.moecluster.router;

import io.moecluster.core.model.ExpertTask;
import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.ActivationCodec;
import io.moecluster.router.ExpertAttempt.Kind;
import io.moecluster.router.ExpertAttempt.Outcome;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One layer's expert requests, from the first send to the last answer, on the engine thread: the
 * tasks cut into chunks, each sent to a replica that its breaker admits, then retried, hedged or
 * probed as {@link FailoverSettings} says until every chunk has its answer, a chunk has used its
 * retries or the layer its budget. The attempts' ends arrive on {@code outcomes}.
 */
final class LayerCall {
  private static final Logger log = LoggerFactory.getLogger(LayerCall.class);

  /**
   * What every layer's call of one executor shares.
   *
   * @param breakers the executor's circuit breakers, one per entity
   * @param failover attempt timeout, retries, backoff and hedging
   * @param replicas entities per expert ({@code moe.expert.replicas})
   * @param budget the layer's budget, retries included ({@code moe.router.expert-timeout})
   * @param maxMessageBytes the most F32 activation bytes in one chunk
   * @param transport sends the attempts
   * @param warm told what each answer says of staying warm
   */
  record Settings(ExpertBreakers breakers, FailoverSettings failover, int replicas, Duration budget,
      int maxMessageBytes, ExpertTransport transport, WarmExperts warm) {}

  private final ExpertTransport transport;
  private final WarmExperts warm;
  private final ExpertBreakers breakers;
  private final FailoverSettings failover;
  private final int replicas;
  private final int maxMessageBytes;
  private final long budgetMillis;
  private final int layer;
  private final List<ExpertTask> tasks;
  private final long start;
  private final long deadline;
  private final long hedgeDelay; // Long.MAX_VALUE: no hedges
  private final LinkedBlockingQueue<Outcome> outcomes = new LinkedBlockingQueue<>();
  private final DirectPaths.View view; // the direct paths when the layer began
  private final List<ExpertChunk> chunks = new ArrayList<>();
  private final List<float[]> outputs; // by task: [rows, hidden]

  /**
   * @param start when the layer's call began ({@link System#nanoTime}): its budget counts from there
   * @param hedgeDelay how long an attempt may be silent before its chunk is hedged; Long.MAX_VALUE: never
   */
  LayerCall(Settings settings, int layer, List<ExpertTask> tasks, long start, long hedgeDelay,
      DirectPaths.View view) {
    this.transport = settings.transport();
    this.warm = settings.warm();
    this.maxMessageBytes = settings.maxMessageBytes();
    this.budgetMillis = settings.budget().toMillis();
    this.breakers = settings.breakers();
    this.failover = settings.failover();
    this.replicas = settings.replicas();
    this.layer = layer;
    this.tasks = tasks;
    this.start = start;
    this.deadline = start + settings.budget().toNanos();
    this.hedgeDelay = hedgeDelay;
    this.view = view;
    this.outputs = new ArrayList<>(tasks.size());
  }

  /** Where the ends of this call's attempts arrive (and a node's loss says to look again). */
  LinkedBlockingQueue<Outcome> outcomes() {
    return outcomes;
  }

  /**
   * Sends every chunk of every task, then waits for them all.
   *
   * @return the tasks' outputs, in their order
   * @throws ExpertUnavailableException past the layer's budget or a chunk's retries
   */
  List<float[]> run(long stepId) {
    for (int t = 0; t < tasks.size(); t++) {
      ExpertTask task = tasks.get(t);
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
        ExpertChunk chunk = new ExpertChunk(t, task.expert(), first, rows, request, preferred);
        chunks.add(chunk);
        int replica = pick(chunk, -1);
        send(chunk, replica, Kind.PRIMARY);
        probeOther(chunk, replica);
      }
    }
    transport.flush();
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
        wake = scan(now);
        transport.flush(); // the retries and hedges it sent
      }
      Outcome o = outcomes.poll();
      try {
        if (o == null) {
          o = transport.awaitOutcome(outcomes, Math.max(0, wake - System.nanoTime()));
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new ExpertUnavailableException(layer, chunks.get(0).expert,
            "interrupted while waiting for the experts of layer " + layer, e);
      }
      for (; o != null; o = outcomes.poll()) {
        if (o == Outcome.MOVED) {
          // The lost node's entities are starting elsewhere: whatever waits for a backoff goes now.
          long t = System.nanoTime();
          for (ExpertChunk c : chunks) {
            if (!c.done && c.awaited() == 0) {
              c.sendAt = Math.min(c.sendAt, t);
            }
          }
          scan = true;
        } else if (o == Outcome.WAKE) {
          scan = true;
        } else if (onOutcome(o)) {
          remaining--;
        } else {
          scan = true; // a failed (or ignored) attempt: maybe a retry to schedule
        }
      }
    }
    if (remaining > 0) {
      ExpertChunk stuck = chunks.stream().filter(c -> !c.done).findFirst().orElseThrow();
      RouterMetrics.expertStepFailures().inc();
      throw new ExpertUnavailableException(layer, stuck.expert, "expert " + layer + "/" + stuck.expert
          + ": no expert node answered in time (" + budgetMillis + " ms, moe.router.expert-timeout; "
          + stuck.retries + " retries" + (stuck.lastError.isEmpty() ? "" : ", last: " + stuck.lastError)
          + "); are expert nodes up and reachable?", null);
    }
    return outputs;
  }

  /** Whether {@link #logSlow} has something to say, and a log to say it in. */
  boolean describable() {
    return !chunks.isEmpty() && log.isInfoEnabled();
  }

  /** Describes the layer's slowest chunk, for a layer that took long. */
  void logSlow(long elapsed) {
    ExpertChunk slowest = chunks.get(0);
    int resent = 0;
    for (ExpertChunk c : chunks) {
      if (c.doneAt > slowest.doneAt) {
        slowest = c;
      }
      resent += c.sends > 1 ? 1 : 0;
    }
    ExpertAttempt w = slowest.winner;
    String kind = w.kind() == Kind.PRIMARY ? "" : ", a " + w.kind().name().toLowerCase(Locale.ROOT);
    log.info("Slow expert layer {}: {} ms for {} chunk(s), {} sent more than once; the last, expert {}, answered "
            + "after {} ms from replica {} ({}{}), sent {} ms into the layer, {} attempt(s){}{}",
        layer, elapsed / 1_000_000, chunks.size(), resent, slowest.expert, (slowest.doneAt - start) / 1_000_000,
        w.replica(), w.direct() != null ? "direct" : "through sharding", kind,
        (w.sentAt() - start) / 1_000_000, slowest.sends,
        slowest.lastError.isEmpty() ? "" : "; last error: " + slowest.lastError,
        replicas < 2 ? "" : "; breakers now " + breakers.of(layer, slowest.expert, 0).state() + "/"
            + breakers.of(layer, slowest.expert, 1).state() + (slowest.hedgeRefused ? ", its hedge was refused" : ""));
  }

  /** Sends the retries and hedges that are due; returns when the next one will be. */
  private long scan(long now) {
    long wake = deadline;
    for (ExpertChunk c : chunks) {
      if (c.done) {
        continue;
      }
      if (c.awaited() == 0 && (c.sendAt <= now || c.waitsForBreaker)) {
        int replica = pick(c, c.last == null ? -1 : c.last.replica());
        if (replica >= 0) {
          if (c.last != null) {
            RouterMetrics.expertRetries().inc();
            if (replica != c.last.replica()) {
              RouterMetrics.expertFailovers().inc();
            }
          }
          send(c, replica, Kind.PRIMARY);
          probeOther(c, replica);
        }
      }
      if (c.awaited() == 1 && !c.hedged && c.primary != null && now - c.primary.sentAt() >= hedgeDelay) {
        int other = 1 - c.primary.replica();
        c.hedged = true; // once per attempt: when the other replica's breaker refuses, no hedge
        if (c.primary.node() != null) {
          transport.suspect(c.primary.node()); // silent past the hedge delay: a crash is found in ~1 ms
        }
        if (breakers.of(layer, c.expert, other).tryAcquire()) {
          RouterMetrics.hedgesSent().inc();
          send(c, other, Kind.HEDGE);
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
  private int pick(ExpertChunk c, int failed) {
    int first = failed >= 0 && replicas > 1 ? 1 - failed : c.preferred;
    for (int i = 0; i < replicas; i++) {
      int r = (first + i) % replicas;
      if (breakers.of(layer, c.expert, r).state() == CircuitBreaker.State.CLOSED) {
        c.waitsForBreaker = false;
        return r;
      }
    }
    long soonest = Long.MAX_VALUE;
    for (int i = 0; i < replicas; i++) {
      int r = (first + i) % replicas;
      CircuitBreaker b = breakers.of(layer, c.expert, r);
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
  private void probeOther(ExpertChunk c, int sentTo) {
    if (replicas < 2 || sentTo < 0) {
      return;
    }
    int other = 1 - sentTo;
    CircuitBreaker b = breakers.of(layer, c.expert, other);
    if (b.state() != CircuitBreaker.State.CLOSED && b.tryAcquire()) {
      RouterMetrics.breakerProbes().inc();
      send(c, other, Kind.PROBE);
      c.hedged = true; // the copy stands in for this attempt's hedge
    }
  }

  private void send(ExpertChunk c, int replica, Kind kind) {
    if (replica < 0) {
      return; // waits for a breaker (sendAt set by pick)
    }
    ExpertAttempt a = transport.send(layer, c, replica, kind, view, outcomes, deadline);
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
  }

  /** @return true when this outcome completed its chunk */
  private boolean onOutcome(Outcome o) {
    ExpertAttempt a = o.attempt();
    ExpertChunk c = a.chunk();
    c.inFlight--;
    if (a.kind() == Kind.PROBE) {
      c.probesInFlight--;
    }
    if (c.done) {
      return false; // the other replica answered first; this one is ignored
    }
    ExpertReply reply = o.reply();
    if (o.error() != null || ExpertTransport.retryable(reply)) {
      Throwable cause = ExpertTransport.unwrap(o.error());
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
}

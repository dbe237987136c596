package io.moecluster.router;

import io.moecluster.core.generate.BatchStepper;
import io.moecluster.core.generate.EosTokens;
import io.moecluster.core.generate.FinishReason;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.Sequence;
import io.moecluster.core.generate.TokenEvent;
import io.moecluster.core.model.ExpertExecutor;
import io.moecluster.core.model.ForwardPass;
import io.moecluster.core.model.MoeModel;
import io.moecluster.core.model.prefetch.Prefetcher;
import io.prometheus.metrics.core.datapoints.GaugeDataPoint;
import io.moecluster.core.tokenizer.Tokenizer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The router's continuous-batching loop on one dedicated thread ({@code moe-engine}). Between
 * steps it takes new submissions and cancels from a thread-safe inbox, admits waiting sequences
 * up to {@code maxRunning} (the rest wait in FIFO order), drops finished and cancelled ones
 * (their KV caches with them), and runs {@link BatchStepper#step} over the running set, so a new
 * prompt's prefill rows and the others' decode rows share a step. It owns every sequence and
 * reports each one's tokens and its single end (finished or failed) to the sequence's
 * {@link Listener}. It blocks when there is nothing to do.
 */
public final class Engine implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Engine.class);

  /** Where a sequence's progress goes; called on the engine thread, must not block. */
  public interface Listener {
    void onToken(TokenEvent token);

    /** The sequence ended normally (last call). */
    void onFinished(FinishReason reason, int promptTokens, int completionTokens);

    /** The sequence failed (last call); {@code code} is a gRPC status code name. */
    void onFailed(String code, String message);
  }

  private sealed interface Command permits Submit, Cancel, Stop {}

  private record Submit(String requestId, GenerationRequest request, Listener listener) implements Command {}

  private record Cancel(String requestId) implements Command {}

  private record Stop() implements Command {}

  /** One request from submission to its end. */
  private static final class Entry {
    final String id;
    final GenerationRequest request;
    final Listener listener;
    Sequence sequence; // null while waiting

    Entry(String id, GenerationRequest request, Listener listener) {
      this.id = id;
      this.request = request;
      this.listener = listener;
    }
  }

  private final MoeModel model;
  private final Tokenizer tokenizer;
  private final BatchStepper stepper;
  private final Set<Integer> eosIds;
  private final int maxRunning;
  private final int maxWaiting;
  private final LinkedBlockingQueue<Command> inbox = new LinkedBlockingQueue<>();
  private final Thread thread;
  private volatile boolean closed;
  private volatile int runningCount;
  private volatile int waitingCount;
  private final GaugeDataPoint runningGauge; // null: no metrics
  private final GaugeDataPoint waitingGauge;

  // Engine-thread state.
  private final ArrayDeque<Entry> waiting = new ArrayDeque<>();
  private final List<Entry> running = new ArrayList<>();
  private final Map<String, Entry> active = new HashMap<>();

  // Test seam: runs in submit between its closed check and its enqueue, where the loop can end.
  Runnable beforeEnqueue = () -> {};
  /** Runs before a waiting sequence is admitted (tests make it throw). */
  Runnable beforeAdmit = () -> {};

  /**
   * @param experts runs the routed experts ({@link ShardedExperts} in the cluster)
   * @param maxRunning most sequences per step
   * @param maxWaiting most sequences waiting for a slot
   */
  public Engine(MoeModel model, Tokenizer tokenizer, ExpertExecutor experts, int maxRunning, int maxWaiting) {
    this(model, tokenizer, experts, maxRunning, maxWaiting, null, null);
  }

  /**
   * @param prefetcher sends prefetch hints for the next layers' experts, or null for none
   * @param node the {@code node} label of the running/waiting gauges, or null for no metrics
   */
  public Engine(MoeModel model, Tokenizer tokenizer, ExpertExecutor experts, int maxRunning, int maxWaiting,
      Prefetcher prefetcher, String node) {
    if (maxRunning < 1 || maxWaiting < 0) {
      throw new IllegalArgumentException("maxRunning must be >= 1 and maxWaiting >= 0");
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.stepper = new BatchStepper(new ForwardPass(model, experts, prefetcher));
    this.runningGauge = node == null ? null : RouterMetrics.runningSequences().labelValues(node);
    this.waitingGauge = node == null ? null : RouterMetrics.waitingSequences().labelValues(node);
    this.eosIds = EosTokens.of(model.config(), tokenizer);
    this.maxRunning = maxRunning;
    this.maxWaiting = maxWaiting;
    this.thread = new Thread(this::loop, "moe-engine");
    this.thread.setDaemon(true);
    this.thread.start();
  }

  /** Queues a sequence; thread-safe. Its events go to {@code listener} on the engine thread. */
  public void submit(String requestId, GenerationRequest request, Listener listener) {
    if (closed) {
      listener.onFailed("UNAVAILABLE", "the router is shutting down");
      return;
    }
    Submit submit = new Submit(requestId, request, listener);
    beforeEnqueue.run();
    inbox.add(submit);
    // The loop may have ended, and drained the inbox for the last time, between the check above
    // and the add: nobody would answer it. Whoever takes it out answers it, this thread or the drain.
    if (closed && inbox.remove(submit)) {
      listener.onFailed("UNAVAILABLE", "the router is shutting down");
    }
  }

  /** Cancels a sequence (waiting or running); unknown or finished ids are ignored. Thread-safe. */
  public void cancel(String requestId) {
    inbox.add(new Cancel(requestId));
  }

  /** Sequences in the running batch (as of the last step). */
  public int running() {
    return runningCount;
  }

  /** Sequences waiting for a slot (as of the last step). */
  public int waiting() {
    return waitingCount;
  }

  /**
   * Whether the loop takes sequences: false once closed, or once the loop died of an error no
   * step could survive (then every submit fails UNAVAILABLE, and the router says it is not ready).
   */
  public boolean alive() {
    return !closed;
  }

  /** Stops the loop; sequences still active fail with UNAVAILABLE. */
  @Override
  public void close() {
    closed = true;
    inbox.add(new Stop());
    try {
      thread.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void loop() {
    try {
      while (true) {
        Command cmd = running.isEmpty() && waiting.isEmpty() ? inbox.take() : inbox.poll();
        boolean stop = false;
        while (cmd != null) {
          stop |= handle(cmd);
          cmd = inbox.poll();
        }
        if (stop) {
          break;
        }
        reap(); // cancelled ones leave before the step
        admit();
        publishCounts();
        if (!running.isEmpty()) {
          step();
          reap();
          publishCounts();
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (Throwable t) {
      log.error("Engine loop died", t);
    } finally {
      closed = true;
      List<Entry> left = new ArrayList<>(active.values());
      for (Command c; (c = inbox.poll()) != null; ) {
        if (c instanceof Submit s) {
          left.add(new Entry(s.requestId(), s.request(), s.listener()));
        }
      }
      for (Entry e : left) {
        fail(e, "UNAVAILABLE", "the router is shutting down");
      }
      active.clear();
      running.clear();
      waiting.clear();
      publishCounts();
    }
  }

  /** @return true to stop the loop */
  private boolean handle(Command cmd) {
    switch (cmd) {
      case Submit s -> {
        Entry e = new Entry(s.requestId(), s.request(), s.listener());
        if (active.containsKey(s.requestId())) {
          fail(e, "ALREADY_EXISTS", "request id " + s.requestId() + " is already running on this router");
        } else if (active.size() >= (long) maxRunning + maxWaiting) { // long: max-waiting may be Integer.MAX_VALUE
          fail(e, "RESOURCE_EXHAUSTED", "the router is full (" + maxRunning + " running, " + maxWaiting
              + " waiting; moe.router.max-running-sequences / max-waiting): retry later or on another router");
        } else {
          active.put(e.id, e);
          waiting.add(e);
        }
      }
      case Cancel c -> {
        Entry e = active.get(c.requestId());
        if (e != null) {
          if (e.sequence == null) {
            waiting.remove(e);
            active.remove(e.id);
            finish(e, FinishReason.CANCELLED, e.request.promptIds().length, 0);
          } else {
            e.sequence.cancel(); // leaves at the next reap
          }
        }
      }
      case Stop s -> {
        return true;
      }
    }
    return false;
  }

  private void admit() {
    while (running.size() < maxRunning && !waiting.isEmpty()) {
      Entry e = waiting.poll();
      try {
        beforeAdmit.run();
        e.sequence = newSequence(e);
        running.add(e);
      } catch (IllegalArgumentException bad) {
        active.remove(e.id);
        fail(e, "INVALID_ARGUMENT", bad.getMessage());
      } catch (OutOfMemoryError oom) {
        // The sequence's KV cache (allocated whole here) did not fit: this request fails, and the
        // engine and the running sequences go on; the next waiting one is tried at the loop's
        // next turn, after a step (or a finished sequence) may have freed memory.
        e.sequence = null;
        active.remove(e.id);
        log.error("No memory for the KV cache of a {}-token prompt: {}", e.request.promptIds().length, oom.toString());
        fail(e, "RESOURCE_EXHAUSTED", "the router has no memory for this sequence's KV cache; retry later or on"
            + " another router (or lower moe.router.max-running-sequences)");
        break;
      }
    }
  }

  private Sequence newSequence(Entry e) {
    int[] ids = e.request.promptIds();
    int vocab = model.config().vocabSize();
    for (int id : ids) {
      if (id < 0 || id >= vocab) {
        throw new IllegalArgumentException("prompt token id " + id + " is outside the vocabulary [0, " + vocab + ")");
      }
    }
    int[] resumed = e.request.resumeIds();
    for (int id : resumed) {
      if (id < 0 || id >= vocab) {
        throw new IllegalArgumentException("resume_token_ids: id " + id + " is outside the vocabulary [0, " + vocab + ")");
      }
    }
    Listener listener = e.listener;
    return new Sequence(e.request, model.newKvCache(ids.length + resumed.length + Math.min(e.request.maxTokens(), 256)),
        tokenizer, eosIds, token -> {
          try {
            listener.onToken(token);
          } catch (RuntimeException ex) {
            log.warn("Listener of {} failed on a token", e.id, ex);
          }
        });
  }

  private void step() {
    List<Sequence> batch = new ArrayList<>(running.size());
    for (Entry e : running) {
      batch.add(e.sequence);
    }
    try {
      stepper.step(batch);
    } catch (ExpertUnavailableException ex) {
      log.warn("Step of {} sequence(s) failed: {}", running.size(), ex.getMessage());
      failRunning("UNAVAILABLE", ex.getMessage());
    } catch (RuntimeException ex) {
      log.error("Step of {} sequence(s) failed", running.size(), ex);
      failRunning("INTERNAL", "the router failed to step the sequence: " + ex);
    } catch (OutOfMemoryError ex) {
      // The batch's activations and KV caches go with its sequences: the loop can go on, and the
      // clients are told to come back (the gateway resubmits elsewhere) instead of the router
      // dying with every sequence it holds.
      log.error("Step of {} sequence(s) ran out of memory", running.size(), ex);
      failRunning("RESOURCE_EXHAUSTED", "the router ran out of memory stepping " + running.size()
          + " sequence(s); retry later, or lower moe.router.max-running-sequences");
    }
  }

  private void failRunning(String code, String message) {
    for (Entry e : running) {
      active.remove(e.id);
      e.sequence = null; // drop the KV cache now
      fail(e, code, message);
    }
    running.clear();
  }

  /** Ends the finished (and cancelled) running sequences and frees their slots. */
  private void reap() {
    running.removeIf(e -> {
      if (!e.sequence.isFinished()) {
        return false;
      }
      GenerationResult r = e.sequence.result();
      active.remove(e.id);
      e.sequence = null;
      finish(e, r.finishReason(), r.promptIds().length, r.generatedIds().length);
      return true;
    });
  }

  private void publishCounts() {
    runningCount = running.size();
    waitingCount = waiting.size();
    if (runningGauge != null) {
      runningGauge.set(runningCount);
      waitingGauge.set(waitingCount);
    }
  }

  private static void finish(Entry e, FinishReason reason, int prompt, int completion) {
    try {
      e.listener.onFinished(reason, prompt, completion);
    } catch (RuntimeException ex) {
      log.warn("Listener of {} failed on its end", e.id, ex);
    }
  }

  private static void fail(Entry e, String code, String message) {
    try {
      e.listener.onFailed(code, message);
    } catch (RuntimeException ex) {
      log.warn("Listener of {} failed on its end", e.id, ex);
    }
  }
}

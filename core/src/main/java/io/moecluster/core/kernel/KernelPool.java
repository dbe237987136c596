package io.moecluster.core.kernel;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.LockSupport;

/**
 * The worker threads behind {@link VectorKernels}: a fixed set of daemon threads
 * ({@code moe-kernel-N}) that, with the calling thread, share out the chunks of one product at a
 * time. A decode step hands out some 80 products in quick succession, so the hand-off has to be
 * cheap: a worker that has just finished spins for a short while ({@value #SPIN_NANOS} ns) on the
 * published task before it parks, and the caller only unparks workers that actually parked. A
 * {@link java.util.concurrent.ThreadPoolExecutor} paid a queue insertion, a futex wake-up and a
 * latch per product instead.
 *
 * <p>A caller about to wait on other threads or processes (a router waiting for its experts)
 * calls {@link #rest}: otherwise the workers would poll through the first 200 µs of that wait, on
 * a core the experts may need.
 *
 * <p>A task's chunks are cut into one run of neighbouring chunks per thread. Each thread claims
 * its own run from its start forward, then what is left of the others' runs from their ends back,
 * so each streams neighbouring weight rows and the chunks are still shared out by speed. Handing
 * out chunks 0, 1, 2, ... to whoever came next interleaved the threads' rows: decode-shaped passes
 * ran 1.06x faster with the helpers claiming from the far end instead, and about 1.02x faster
 * again with the runs (docs/PERFORMANCE.md, "Chunks claimed in runs").
 *
 * <p>One task runs at a time. A caller that finds the pool busy (another thread's product) runs
 * its chunks alone on its own thread: the results are the same whoever computes a chunk.
 *
 * <p>A {@link StealableBody}'s helpers compute their chunks into scratch of their own and publish
 * each in one step. A caller that has run out of chunks and has waited a while (twice its own mean
 * chunk, at least {@value #TAKE_OVER_MIN_NANOS} ns) for a helper's chunk computes that chunk itself,
 * and the helper's result is dropped: a helper descheduled in the middle of a chunk no longer holds
 * the caller for milliseconds, and never writes into outputs after {@link #run} has returned.
 */
final class KernelPool implements AutoCloseable {

  /** How long an idle worker keeps polling for the next task before it parks. */
  static final long SPIN_NANOS = 200_000L;
  /** The caller spins this long on the helpers' last chunks, then yields between checks. */
  private static final long CALLER_SPIN_NANOS = 50_000L;

  @FunctionalInterface
  interface Body {
    void run(int chunk);
  }

  /**
   * A task whose chunks a helper computes into memory of its own and then publishes in one step,
   * so that the caller can take over a chunk whose helper has stalled. On a shared machine a
   * helper taken off its core in the middle of a chunk held decode's passes for 2-5 ms at a time
   * (docs/PERFORMANCE.md); the caller now computes such a chunk itself, and the helper's late
   * result is dropped instead of landing in outputs the caller has moved on to change.
   * {@link #run} computes a chunk straight into the outputs; both ways must give the same values.
   */
  interface StealableBody extends Body {
    /** Computes {@code chunk} into {@code scratch}, touching none of the task's outputs. */
    void runInto(int chunk, Scratch scratch);

    /** Copies what {@link #runInto} left in {@code scratch} into the task's outputs. */
    void publish(int chunk, Scratch scratch);
  }

  /** A helper's own output memory: two arrays, grown on demand and reused from task to task. */
  static final class Scratch {
    private float[] first = new float[0];
    private float[] second = new float[0];

    /** The first array, at least {@code size} long (the same array until a larger size is asked). */
    float[] first(int size) {
      if (first.length < size) {
        first = new float[size];
      }
      return first;
    }

    /** The second array, at least {@code size} long. */
    float[] second(int size) {
      if (second.length < size) {
        second = new float[size];
      }
      return second;
    }
  }

  // The states of a chunk. A claim is a compare-and-set from FREE, to CALLER or to HELPER.
  private static final int FREE = 0;
  private static final int HELPER = 1; // a helper computes it (into its scratch, for a stealable body)
  private static final int PUBLISHING = 2; // the helper is copying its result into the outputs
  private static final int TAKEN_OVER = 3; // the caller computes it; the helper's result is dropped
  private static final int DONE = 4;
  private static final int CALLER = 5; // the caller computes it

  /** The caller takes over a helper's chunk after waiting at least this long for it... */
  static final long TAKE_OVER_MIN_NANOS = 100_000L;
  /** ...and at least this many times its own mean time per chunk in the same task. */
  private static final int TAKE_OVER_CHUNKS = 2;
  /** The wait before taking over when the caller computed no chunk of the task itself. */
  private static final long TAKE_OVER_DEFAULT_NANOS = 1_000_000L;

  private static final AtomicInteger THREAD_IDS = new AtomicInteger();

  private static final class Task {
    final long seq;
    final Body body;
    final StealableBody stealable; // null: chunks run where they are claimed, and are waited for
    final AtomicIntegerArray state; // per chunk: who claimed it, and how far it has got
    final int chunks;
    private final int regions; // one run of neighbouring chunks per thread: the caller's is 0
    final AtomicInteger done = new AtomicInteger();
    volatile Throwable error;
    private long callerNanos; // the caller's own chunks: their time and number
    private int callerChunks;

    Task(long seq, Body body, int chunks, int threads) {
      this.seq = seq;
      this.body = body;
      this.stealable = body instanceof StealableBody sb ? sb : null;
      this.state = new AtomicIntegerArray(chunks);
      this.chunks = chunks;
      this.regions = Math.min(chunks, threads);
    }

    private int regionStart(int region) {
      return (int) ((long) chunks * region / regions);
    }

    /**
     * The caller: its own run of chunks, then whatever the helpers have left, each chunk straight
     * into the outputs. Every chunk has been claimed (by someone) when it returns.
     */
    void drainAsCaller() {
      drain(0, CALLER, null);
    }

    /**
     * Helper {@code index} (from 1): its own run of chunks, then what is left of the others'; a
     * stealable body's chunks go into its scratch, where the caller may take them over.
     */
    void drainAsHelper(int index, Scratch scratch) {
      drain(index, HELPER, scratch);
    }

    /**
     * Claims the run of {@code region} from its start forward until a chunk is already taken, then
     * every chunk still free, from the end of each run back (a late owner meets it from the start).
     */
    private void drain(int region, int claim, Scratch scratch) {
      if (region < regions) {
        for (int c = regionStart(region), end = regionStart(region + 1);
            c < end && state.compareAndSet(c, FREE, claim); c++) {
          runClaimed(c, claim, scratch);
        }
      }
      for (int r = regions - 1; r >= 0; r--) {
        for (int c = regionStart(r + 1) - 1, start = regionStart(r); c >= start; c--) {
          if (state.get(c) == FREE && state.compareAndSet(c, FREE, claim)) {
            runClaimed(c, claim, scratch);
          }
        }
      }
    }

    private void runClaimed(int c, int claim, Scratch scratch) {
      if (claim == HELPER) {
        runAsHelper(c, scratch);
        return;
      }
      long start = System.nanoTime();
      runHere(c);
      callerNanos += System.nanoTime() - start;
      callerChunks++;
    }

    /** Runs a chunk straight into the outputs; it counts as done even if it fails. */
    private void runHere(int c) {
      if (error == null) {
        try {
          body.run(c);
        } catch (Throwable t) {
          fail(t);
        }
      }
      state.set(c, DONE);
      done.incrementAndGet();
    }

    private void runAsHelper(int c, Scratch scratch) {
      if (stealable == null) {
        runHere(c);
        return;
      }
      Throwable failure = null;
      if (error == null) {
        try {
          stealable.runInto(c, scratch);
        } catch (Throwable t) {
          failure = t;
        }
      }
      if (!state.compareAndSet(c, HELPER, PUBLISHING)) {
        return; // taken over while this thread computed it: the caller's result stands
      }
      if (failure != null) {
        fail(failure);
      } else if (error == null) {
        try {
          stealable.publish(c, scratch);
        } catch (Throwable t) {
          fail(t);
        }
      }
      state.set(c, DONE);
      done.incrementAndGet();
    }

    /** How long the caller waits for the helpers' last chunks before it takes them over. */
    long takeOverAfterNanos() {
      if (callerChunks == 0) {
        return TAKE_OVER_DEFAULT_NANOS;
      }
      return Math.max(TAKE_OVER_MIN_NANOS, TAKE_OVER_CHUNKS * callerNanos / callerChunks);
    }

    /** The caller computes every chunk a helper has claimed and not yet begun to publish. */
    void takeOverUnfinished() {
      for (int c = 0; c < chunks; c++) {
        int s = state.get(c);
        if ((s == FREE || s == HELPER) && state.compareAndSet(c, s, TAKEN_OVER)) {
          runHere(c);
        }
      }
    }

    private void fail(Throwable t) {
      if (error == null) {
        error = t;
      }
    }
  }

  private final Worker[] workers;
  private final AtomicBoolean busy = new AtomicBoolean();
  private long tasks; // guarded by busy
  private volatile Task current;
  private volatile boolean closed;
  // Bumped by rest(): a worker polling for a task parks as soon as it sees a new value.
  private final AtomicInteger rests = new AtomicInteger();
  private final long spinNanos;

  KernelPool(int helpers) {
    this(helpers, SPIN_NANOS);
  }

  /** @param spinNanos how long an idle worker polls for the next task before it parks */
  KernelPool(int helpers, long spinNanos) {
    this.spinNanos = spinNanos;
    workers = new Worker[helpers];
    for (int i = 0; i < helpers; i++) {
      workers[i] = new Worker("moe-kernel-" + THREAD_IDS.getAndIncrement(), i + 1);
      workers[i].start();
    }
  }

  /** Runs chunks 0..chunks-1 on the workers and the calling thread; returns when all are done. */
  void run(int chunks, Body body) {
    if (chunks <= 1 || closed || !busy.compareAndSet(false, true)) {
      for (int c = 0; c < chunks; c++) {
        body.run(c);
      }
      return;
    }
    Task task = new Task(++tasks, body, chunks, workers.length + 1);
    try {
      current = task;
      for (Worker w : workers) {
        if (w.parked) {
          LockSupport.unpark(w);
        }
      }
      task.drainAsCaller();
      // The helpers are finishing their last chunks: spin briefly, then let a descheduled helper
      // (a busy machine) have the core. A stealable task's chunks that stay unfinished for long
      // (their helper stalled) the caller computes itself.
      long start = 0;
      int spins = 0;
      long takeOverAfter = task.stealable == null ? Long.MAX_VALUE : task.takeOverAfterNanos();
      while (task.done.get() < chunks) {
        if ((++spins & 63) != 0) {
          Thread.onSpinWait();
          continue;
        }
        long now = System.nanoTime();
        if (start == 0) {
          start = now;
        } else if (now - start > takeOverAfter) {
          task.takeOverUnfinished();
          takeOverAfter = Long.MAX_VALUE; // what is left is being published
        } else if (now - start > CALLER_SPIN_NANOS) {
          Thread.yield();
        }
      }
    } finally {
      current = null;
      busy.set(false);
    }
    Throwable t = task.error;
    if (t instanceof RuntimeException re) {
      throw re;
    } else if (t instanceof Error e) {
      throw e;
    } else if (t != null) {
      throw new IllegalStateException(t);
    }
  }

  /** Workers polling for the next task park now; the next {@link #run} wakes them as usual. */
  void rest() {
    rests.incrementAndGet();
  }

  /** Whether every worker is parked (for tests). */
  boolean allParked() {
    for (Worker w : workers) {
      if (!w.parked) {
        return false;
      }
    }
    return true;
  }

  /** Stops the workers; later tasks run on the calling thread alone. */
  @Override
  public void close() {
    closed = true;
    for (Worker w : workers) {
      LockSupport.unpark(w);
    }
  }

  private final class Worker extends Thread {
    volatile boolean parked;
    private final int index; // 1, 2, ...: the caller is 0
    private final Scratch scratch = new Scratch();
    private long last; // the last task seen: a number, so no finished task stays reachable
    // rests when the last task was taken: a rest() since then, even one made while this worker
    // was still on its last chunk, ends the spin that follows.
    private int restsSeen;

    Worker(String name, int index) {
      super(name);
      this.index = index;
      setDaemon(true);
    }

    @Override
    public void run() {
      while (!closed) {
        Task t = current;
        if (t != null && t.seq != last) {
          last = t.seq;
          restsSeen = rests.get();
          t.drainAsHelper(index, scratch);
          continue;
        }
        if (spinForTask()) {
          continue;
        }
        parked = true;
        t = current;
        if ((t == null || t.seq == last) && !closed) {
          LockSupport.park(this);
        }
        parked = false;
      }
    }

    private boolean spinForTask() {
      long start = System.nanoTime();
      int i = 0;
      while (true) {
        Thread.onSpinWait();
        Task t = current;
        if (t != null && t.seq != last) {
          return true;
        }
        if (rests.get() != restsSeen || closed) {
          return false;
        }
        if ((++i & 63) == 0 && System.nanoTime() - start > spinNanos) {
          return false;
        }
      }
    }
  }
}

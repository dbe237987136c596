package io.moecluster.core.kernel;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
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
 * <p>One task runs at a time. A caller that finds the pool busy (another thread's product) runs
 * its chunks alone on its own thread: the results are the same whoever computes a chunk.
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

  private static final AtomicInteger THREAD_IDS = new AtomicInteger();

  private static final class Task {
    final long seq;
    final Body body;
    final int chunks;
    final AtomicInteger next = new AtomicInteger();
    final AtomicInteger done = new AtomicInteger();
    volatile Throwable error;

    Task(long seq, Body body, int chunks) {
      this.seq = seq;
      this.body = body;
      this.chunks = chunks;
    }

    /** Claims and runs chunks until none are left; every claimed chunk counts as done. */
    void drain() {
      int c;
      while ((c = next.getAndIncrement()) < chunks) {
        if (error == null) {
          try {
            body.run(c);
          } catch (Throwable t) {
            if (error == null) {
              error = t;
            }
          }
        }
        done.incrementAndGet();
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
      workers[i] = new Worker("moe-kernel-" + THREAD_IDS.getAndIncrement());
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
    Task task = new Task(++tasks, body, chunks);
    try {
      current = task;
      for (Worker w : workers) {
        if (w.parked) {
          LockSupport.unpark(w);
        }
      }
      task.drain();
      // The helpers are finishing their last chunks: spin briefly, then let a descheduled helper
      // (a busy machine) have the core.
      long start = 0;
      int spins = 0;
      while (task.done.get() < chunks) {
        if ((++spins & 63) != 0) {
          Thread.onSpinWait();
        } else if (start == 0) {
          start = System.nanoTime();
        } else if (System.nanoTime() - start > CALLER_SPIN_NANOS) {
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
    private long last; // the last task seen: a number, so no finished task stays reachable
    // rests when the last task was taken: a rest() since then, even one made while this worker
    // was still on its last chunk, ends the spin that follows.
    private int restsSeen;

    Worker(String name) {
      super(name);
      setDaemon(true);
    }

    @Override
    public void run() {
      while (!closed) {
        Task t = current;
        if (t != null && t.seq != last) {
          last = t.seq;
          restsSeen = rests.get();
          t.drain();
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

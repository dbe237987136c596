package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class KernelPoolTest {

  /** Workers that would poll for a minute park within moments of rest(), and still take the next task. */
  @Test
  void restParksPollingWorkersAndTheNextRunWakesThem() throws InterruptedException {
    try (KernelPool pool = new KernelPool(1, 60_000_000_000L)) {
      runAndCheck(pool, 64);
      Thread.sleep(200);
      assertFalse(pool.allParked(), "with a minute's spin the worker is still polling");

      pool.rest();
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (!pool.allParked() && System.nanoTime() < deadline) {
        Thread.sleep(5);
      }
      assertTrue(pool.allParked(), "rest() parks the polling worker");

      runAndCheck(pool, 64);
      Thread.sleep(200);
      assertFalse(pool.allParked(), "after the next task the worker polls again: the rest is spent");
    }
  }

  /** A rest() made while a worker is still on its last chunk ends the spin that follows it. */
  @Test
  void restDuringATaskEndsTheSpinAfterIt() throws InterruptedException {
    try (KernelPool pool = new KernelPool(1, 60_000_000_000L)) {
      runAndCheck(pool, 8); // the worker is polling now, having seen no rest
      Thread caller = Thread.currentThread();
      CountDownLatch workerRested = new CountDownLatch(1);
      pool.run(64, c -> {
        if (Thread.currentThread() != caller) {
          if (workerRested.getCount() > 0) {
            pool.rest(); // the worker took this task before the rest
            workerRested.countDown();
          }
        } else {
          awaitQuietly(workerRested); // leaves chunks for the worker
        }
      });
      assertEquals(0, workerRested.getCount(), "the worker took part in the task");
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (!pool.allParked() && System.nanoTime() < deadline) {
        Thread.sleep(5);
      }
      assertTrue(pool.allParked(), "the rest() made during the task parks the worker after it");
    }
  }

  /**
   * A helper that stalls in the middle of a stealable chunk does not hold the task: the caller
   * computes that chunk itself and returns, and the helper's result, when it comes, is dropped
   * rather than written over outputs the caller has since changed.
   */
  @Test
  @Timeout(60)
  void aStalledHelpersChunkIsTakenOverAndItsLateResultDropped() throws InterruptedException {
    int chunks = 8;
    try (KernelPool pool = new KernelPool(1)) {
      Thread caller = Thread.currentThread();
      float[] out = new float[chunks];
      CountDownLatch helperStalled = new CountDownLatch(1);
      CountDownLatch release = new CountDownLatch(1);
      CountDownLatch helperFinished = new CountDownLatch(1);
      AtomicIntegerArray published = new AtomicIntegerArray(chunks);
      int[] stalledChunk = {-1};
      pool.run(chunks, new KernelPool.StealableBody() {
        @Override
        public void run(int c) {
          if (Thread.currentThread() == caller) {
            awaitQuietly(helperStalled); // leaves the helper a chunk to stall in
          }
          out[c] = 10 + c;
        }

        @Override
        public void runInto(int c, KernelPool.Scratch scratch) {
          scratch.first(1)[0] = 10 + c;
          if (helperStalled.getCount() > 0) {
            stalledChunk[0] = c;
            helperStalled.countDown();
            awaitQuietly(release);
            helperFinished.countDown();
          }
        }

        @Override
        public void publish(int c, KernelPool.Scratch scratch) {
          out[c] = scratch.first(1)[0];
          published.incrementAndGet(c);
        }
      });
      // run() returned while the helper was still stalled (it is released only now)
      assertTrue(stalledChunk[0] >= 0, "the helper took a chunk");
      for (int c = 0; c < chunks; c++) {
        assertEquals(10 + c, out[c], "chunk " + c);
      }
      java.util.Arrays.fill(out, -1f); // the caller moves on and reuses its outputs
      release.countDown();
      assertTrue(helperFinished.await(10, TimeUnit.SECONDS));
      runAndCheck(pool, 16); // the helper is back in the pool, so its stale chunk is behind it
      assertEquals(0, published.get(stalledChunk[0]), "the stalled chunk's result is not published");
      for (int c = 0; c < chunks; c++) {
        assertEquals(-1f, out[c], "chunk " + c + " was not written after run() returned");
      }
    }
  }

  /** Without stalls every chunk of a stealable task is computed once, and helpers publish theirs. */
  @Test
  void stealableChunksRunOnceAndHelpersPublishTheirs() {
    try (KernelPool pool = new KernelPool(1)) {
      for (int round = 0; round < 50; round++) {
        int chunks = 64;
        AtomicIntegerArray computed = new AtomicIntegerArray(chunks);
        float[] out = new float[chunks];
        pool.run(chunks, new KernelPool.StealableBody() {
          @Override
          public void run(int c) {
            busyWork();
            computed.incrementAndGet(c);
            out[c] = c;
          }

          @Override
          public void runInto(int c, KernelPool.Scratch scratch) {
            busyWork();
            computed.incrementAndGet(c);
            scratch.first(1)[0] = c;
          }

          @Override
          public void publish(int c, KernelPool.Scratch scratch) {
            out[c] = scratch.first(1)[0];
          }
        });
        for (int c = 0; c < chunks; c++) {
          assertEquals(c, out[c], "chunk " + c);
          // twice only where the caller took over a chunk its helper was slow to finish
          int times = computed.get(c);
          assertTrue(times == 1 || times == 2, "chunk " + c + " computed " + times + " times");
        }
      }
    }
  }

  /**
   * Each thread walks forward through a run of neighbouring chunks of its own (the caller from
   * chunk 0, the one helper from the middle), then takes what is left of the other's run from its
   * end back. So the helper's chunks are one unbroken run that starts at or before the middle
   * and goes past it (or none at all, when it came too late), and the caller ran all the others,
   * each once. (A stealable body claims alike; there a chunk taken over from a stalled helper may
   * run on both, which the tests above cover.)
   */
  @Test
  void eachThreadRunsNeighbouringChunks() {
    int chunks = 64;
    int shared = 0; // rounds in which both the caller and the helper ran chunks
    try (KernelPool pool = new KernelPool(1)) {
      for (int round = 0; round < 40; round++) {
        Thread caller = Thread.currentThread();
        CountDownLatch helperRan = new CountDownLatch(1);
        AtomicIntegerArray byCaller = new AtomicIntegerArray(chunks);
        AtomicIntegerArray byHelper = new AtomicIntegerArray(chunks);
        pool.run(chunks, c -> {
          busyWork();
          if (Thread.currentThread() == caller) {
            byCaller.incrementAndGet(c);
            awaitQuietly(helperRan); // the helper takes part before the caller goes on
          } else {
            byHelper.incrementAndGet(c);
            helperRan.countDown();
          }
        });
        int first = 0;
        while (first < chunks && byHelper.get(first) == 0) {
          first++;
        }
        int end = first;
        while (end < chunks && byHelper.get(end) == 1) {
          end++;
        }
        if (first < chunks) {
          shared++;
          assertTrue(first <= chunks / 2 && chunks / 2 < end,
              "the helper's run " + first + ".." + (end - 1) + " holds the middle chunk, round " + round);
        }
        for (int c = 0; c < chunks; c++) {
          boolean helpers = c >= first && c < end;
          assertEquals(helpers ? 0 : 1, byCaller.get(c), "caller's runs of chunk " + c + ", round " + round);
          assertEquals(helpers ? 1 : 0, byHelper.get(c), "helper's runs of chunk " + c + ", round " + round);
        }
      }
    }
    // A caller descheduled before its first claim leaves the helper its run; not always.
    assertTrue(shared > 0, "the caller and the helper shared a task");
  }

  /** With several helpers, too, every chunk runs exactly once, whoever comes late. */
  @Test
  void severalHelpersRunEveryChunkOnce() {
    try (KernelPool pool = new KernelPool(3)) {
      for (int chunks : new int[] {2, 3, 5, 8, 64}) {
        for (int round = 0; round < 20; round++) {
          AtomicIntegerArray ran = new AtomicIntegerArray(chunks);
          pool.run(chunks, c -> {
            busyWork();
            ran.incrementAndGet(c);
          });
          for (int c = 0; c < chunks; c++) {
            assertEquals(1, ran.get(c), "chunk " + c + " of " + chunks);
          }
        }
      }
    }
  }

  /** Runs a task in which the worker takes part (the caller's chunks wait for it), and checks it. */
  private static void runAndCheck(KernelPool pool, int chunks) {
    Thread caller = Thread.currentThread();
    CountDownLatch workerRan = new CountDownLatch(1);
    AtomicIntegerArray ran = new AtomicIntegerArray(chunks);
    pool.run(chunks, c -> {
      busyWork();
      if (Thread.currentThread() != caller) {
        workerRan.countDown();
      } else {
        awaitQuietly(workerRan);
      }
      ran.incrementAndGet(c);
    });
    assertEquals(0, workerRan.getCount(), "the worker took part in the task");
    for (int c = 0; c < chunks; c++) {
      assertEquals(1, ran.get(c), "chunk " + c + " runs exactly once");
    }
  }

  private static void awaitQuietly(CountDownLatch latch) {
    try {
      latch.await(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static volatile double sink;

  private static void busyWork() {
    double s = 0;
    for (int i = 0; i < 20_000; i++) {
      s += Math.sqrt(i);
    }
    sink = s;
  }
}

package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

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

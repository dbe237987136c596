package io.moecluster.core.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class KernelPoolTest {

  @Test
  void aProductNotWorthAWakeUpRunsOnTheCallerWhileTheHelperSleeps() throws Exception {
    try (KernelPool pool = new KernelPool(1)) {
      awaitParked(pool);
      Set<Thread> ran = ConcurrentHashMap.newKeySet();
      AtomicIntegerArray runs = new AtomicIntegerArray(16);
      // Chunks slow enough (2 ms each) that a woken helper would take some of them.
      pool.run(16, c -> {
        ran.add(Thread.currentThread());
        runs.incrementAndGet(c);
        try {
          Thread.sleep(2);
        } catch (InterruptedException e) {
          throw new IllegalStateException(e);
        }
      }, false);
      assertEquals(Set.of(Thread.currentThread()), ran);
      for (int c = 0; c < 16; c++) {
        assertEquals(1, runs.get(c), "chunk " + c);
      }
    }
  }

  @Test
  void aLargeProductWakesTheParkedHelper() throws Exception {
    try (KernelPool pool = new KernelPool(1)) {
      awaitParked(pool);
      Thread caller = Thread.currentThread();
      CountDownLatch helperRan = new CountDownLatch(1);
      Set<Thread> ran = ConcurrentHashMap.newKeySet();
      // The caller's chunk waits for a chunk on another thread: only a woken helper lets it go on.
      pool.run(2, c -> {
        ran.add(Thread.currentThread());
        if (Thread.currentThread() == caller) {
          try {
            assertTrue(helperRan.await(10, TimeUnit.SECONDS), "the parked helper was not woken");
          } catch (InterruptedException e) {
            throw new IllegalStateException(e);
          }
        } else {
          helperRan.countDown();
        }
      }, true);
      assertEquals(2, ran.size());
    }
  }

  private static void awaitParked(KernelPool pool) throws InterruptedException {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (pool.parkedWorkers() < 1) {
      assertTrue(System.nanoTime() < end, "the helper never parked");
      Thread.sleep(1);
    }
  }
}

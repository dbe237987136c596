package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.kernel.KernelsFactory;
import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.model.ExpertFfn;
import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The expert weight cache on the SMALL preset in BF16 (32 experts of about 4 MiB). */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ExpertWeightCacheTest {
  private static final AtomicInteger NODES = new AtomicInteger();

  @TempDir static Path dir;
  static SafeTensors tensors;
  static ExpertStore store;
  static ModelConfig config;
  static VectorKernels kernels;
  static long expertBytes;

  @BeforeAll
  static void writeCheckpoint() {
    config = CheckpointWriter.write(CheckpointSpec.of(Preset.SMALL, DType.BF16, 1), dir);
    tensors = SafeTensors.open(dir);
    store = new ExpertStore(tensors, config);
    kernels = KernelsFactory.create(1);
    expertBytes = store.expert(0, 0).byteSize();
  }

  @AfterAll
  static void close() {
    kernels.close();
    tensors.close();
  }

  private static String node() {
    return "cache-test-" + NODES.incrementAndGet();
  }

  private static ExpertWeightCache cache(long budget, java.util.concurrent.Executor loader) {
    return new ExpertWeightCache(store, budget, loader, node());
  }

  private static float[] input(int rows, long seed) {
    Random random = new Random(seed);
    float[] x = new float[rows * config.hiddenSize()];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    return x;
  }

  private static int[] bits(float[] values) {
    int[] bits = new int[values.length];
    for (int i = 0; i < values.length; i++) {
      bits[i] = Float.floatToRawIntBits(values[i]);
    }
    return bits;
  }

  private static ExpertWeightCache.Lease get(CompletableFuture<ExpertWeightCache.Lease> f) {
    return f.orTimeout(20, TimeUnit.SECONDS).join();
  }

  @Test
  void staysWithinItsBudgetUnderConcurrentLoad() throws Exception {
    long budget = 5 * expertBytes + expertBytes / 2;
    ExecutorService loader = Executors.newFixedThreadPool(2);
    ExecutorService workers = Executors.newFixedThreadPool(8);
    ExpertWeightCache cache = cache(budget, loader);
    AtomicBoolean done = new AtomicBoolean();
    AtomicInteger over = new AtomicInteger();
    Thread watcher = new Thread(() -> {
      while (!done.get()) {
        if (cache.warmBytes() > budget || cache.allocatedBytes() > budget) {
          over.incrementAndGet();
        }
        Thread.onSpinWait();
      }
    });
    watcher.start();
    AtomicInteger warm = new AtomicInteger();
    List<Future<?>> futures = new ArrayList<>();
    float[] x = input(1, 3);
    for (int t = 0; t < 8; t++) {
      long seed = t;
      futures.add(workers.submit(() -> {
        Random random = new Random(seed);
        for (int i = 0; i < 60; i++) {
          int layer = random.nextInt(config.numLayers());
          int expert = random.nextInt(config.numExperts());
          if (random.nextInt(4) == 0) {
            cache.prefetch(layer, random.nextInt(config.numExperts()));
          }
          try (ExpertWeightCache.Lease lease = get(cache.acquire(layer, expert))) {
            if (lease.warm()) {
              warm.incrementAndGet();
            }
            if (i % 10 == 0) {
              ExpertFfn.forward(kernels, lease.weights(), x, 1);
            }
          }
          assertTrue(cache.warmBytes() <= budget);
        }
        return null;
      }));
    }
    for (Future<?> f : futures) {
      f.get(50, TimeUnit.SECONDS);
    }
    done.set(true);
    watcher.join();
    assertEquals(0, over.get(), "warm bytes went over the budget");
    assertTrue(cache.peakAllocatedBytes() <= budget, cache.peakAllocatedBytes() + " > " + budget);
    assertTrue(cache.peakAllocatedBytes() >= 4 * expertBytes, "the budget was used: " + cache.peakAllocatedBytes());
    assertTrue(warm.get() > 0);
    cache.close();
    // Hints may still be loading: close() marks them and the loader frees them when it finishes.
    workers.shutdownNow();
    loader.shutdown();
    assertTrue(loader.awaitTermination(30, TimeUnit.SECONDS), "the loader drained");
    assertEquals(0, cache.allocatedBytes(), "closing frees every warm copy, loading ones included");
  }

  @Test
  void evictsTheLeastRecentlyUsed() {
    ExpertWeightCache cache = cache(2 * expertBytes, Runnable::run);
    get(cache.acquire(0, 0)).close(); // A
    get(cache.acquire(0, 1)).close(); // B
    get(cache.acquire(0, 0)).close(); // A again: B is now the least recently used
    get(cache.acquire(0, 2)).close(); // C evicts B
    assertTrue(cache.isWarm(0, 0));
    assertFalse(cache.isWarm(0, 1));
    assertTrue(cache.isWarm(0, 2));
    get(cache.acquire(0, 1)).close(); // B evicts A (used before C)
    assertFalse(cache.isWarm(0, 0));
    assertTrue(cache.isWarm(0, 1));
    assertTrue(cache.isWarm(0, 2));
    assertEquals(4, cache.loads());
    assertEquals(2 * expertBytes, cache.warmBytes());
    cache.close();
  }

  @Test
  void concurrentMissesShareOneLoad() throws Exception {
    CountDownLatch gate = new CountDownLatch(1);
    ExecutorService pool = Executors.newSingleThreadExecutor();
    java.util.concurrent.Executor gated = r -> pool.execute(() -> {
      try {
        gate.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      r.run();
    });
    ExpertWeightCache cache = cache(4 * expertBytes, gated);
    int n = 16;
    ExecutorService callers = Executors.newFixedThreadPool(n);
    CountDownLatch start = new CountDownLatch(1);
    List<Future<CompletableFuture<ExpertWeightCache.Lease>>> calls = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      calls.add(callers.submit(() -> {
        start.await();
        return cache.acquire(1, 3);
      }));
    }
    start.countDown();
    List<CompletableFuture<ExpertWeightCache.Lease>> leases = new ArrayList<>();
    for (var c : calls) {
      leases.add(c.get(10, TimeUnit.SECONDS));
    }
    assertTrue(leases.stream().noneMatch(CompletableFuture::isDone), "nothing is warm before the load");
    gate.countDown();
    ExpertWeights first = null;
    for (var f : leases) {
      try (ExpertWeightCache.Lease lease = get(f)) {
        assertTrue(lease.warm());
        if (first == null) {
          first = lease.weights();
        }
        assertSame(first, lease.weights(), "one warm copy");
      }
    }
    assertEquals(1, cache.loads(), "one load for " + n + " concurrent misses");
    get(cache.acquire(1, 3)).close();
    assertEquals(1, cache.loads());
    cache.close();
    callers.shutdownNow();
    pool.shutdownNow();
  }

  @Test
  void missAndHitAreBitIdenticalToTheMappedWeights() {
    ExecutorService loader = Executors.newSingleThreadExecutor();
    ExpertWeightCache cache = cache(3 * expertBytes, loader);
    float[] x = input(7, 9);
    for (int[] le : new int[][] {{0, 0}, {3, 7}, {2, 5}}) {
      ExpertWeights mapped = store.expert(le[0], le[1]);
      float[] cold = ExpertFfn.forward(kernels, mapped, x, 7);
      float[] miss;
      float[] hit;
      try (ExpertWeightCache.Lease lease = get(cache.acquire(le[0], le[1]))) {
        assertTrue(lease.warm());
        ExpertWeights w = lease.weights();
        assertNotSame(mapped.gate().data(), w.gate().data());
        assertTrue(w.gate().data().isNative());
        assertEquals(0, w.gate().data().address() % 64, "64-byte aligned");
        assertEquals(0, w.up().data().address() % 64, "64-byte aligned");
        assertEquals(0, w.down().data().address() % 64, "64-byte aligned");
        assertEquals(mapped.gate().dtype(), w.gate().dtype());
        miss = ExpertFfn.forward(kernels, w, x, 7);
      }
      try (ExpertWeightCache.Lease lease = get(cache.acquire(le[0], le[1]))) {
        assertTrue(lease.warm());
        hit = ExpertFfn.forward(kernels, lease.weights(), x, 7);
      }
      assertArrayEquals(bits(cold), bits(miss), "miss vs cold " + le[0] + "/" + le[1]);
      assertArrayEquals(bits(cold), bits(hit), "hit vs cold " + le[0] + "/" + le[1]);
    }
    assertEquals(3, cache.loads());
    cache.close();
    loader.shutdownNow();
  }

  @Test
  void aLeasedEntryIsNeverFreedWhileInUse() {
    ExpertWeightCache cache = cache(expertBytes, Runnable::run);
    float[] x = input(2, 4);
    ExpertWeightCache.Lease a = get(cache.acquire(0, 0));
    assertTrue(a.warm());
    // No room for B without freeing A, which is in use: B runs cold, A stays.
    try (ExpertWeightCache.Lease b = get(cache.acquire(0, 1))) {
      assertFalse(b.warm());
      assertArrayEquals(bits(ExpertFfn.forward(kernels, store.expert(0, 1), x, 2)),
          bits(ExpertFfn.forward(kernels, b.weights(), x, 2)));
    }
    assertTrue(cache.isWarm(0, 0));
    // Closing the cache under a running computation frees A only when its lease closes.
    cache.close();
    assertEquals(expertBytes, cache.allocatedBytes());
    assertArrayEquals(bits(ExpertFfn.forward(kernels, store.expert(0, 0), x, 2)),
        bits(ExpertFfn.forward(kernels, a.weights(), x, 2)));
    a.close();
    a.close(); // idempotent
    assertEquals(0, cache.allocatedBytes());
    assertThrows(Exception.class, () -> cache.acquire(0, 0).join());
  }

  @Test
  void aHintStillLoadingWhenTheCacheClosesIsFreedWhenItsLoadEnds() {
    List<Runnable> queued = new ArrayList<>();
    ExpertWeightCache cache = cache(2 * expertBytes, queued::add);
    cache.prefetch(0, 0);
    assertEquals(1, queued.size(), "the hint waits on the loader");
    cache.close();
    queued.forEach(Runnable::run); // the load finishes after close
    assertEquals(0, cache.allocatedBytes());
    assertFalse(cache.isWarm(0, 0));
  }

  @Test
  void warmCopiesAndCheckpointViewsAreOneSegmentClassForTheKernels() {
    // A second segment class at the kernels' loads deoptimises them (10-100x slower until C2
    // recompiles): the stall survivors showed when they first ran a lost node's experts cold.
    ExpertWeightCache cache = cache(expertBytes, Runnable::run);
    try (ExpertWeightCache.Lease lease = get(cache.acquire(0, 0))) {
      assertTrue(lease.warm());
      assertEquals(store.expert(0, 0).gate().data().getClass(), lease.weights().gate().data().getClass());
      assertEquals(store.expert(0, 0).down().data().getClass(), lease.weights().down().data().getClass());
    }
    cache.close();
  }

  @Test
  void afterTheLeaseClosesTheEntryCanBeEvicted() {
    ExpertWeightCache cache = cache(expertBytes, Runnable::run);
    ExpertWeightCache.Lease a = get(cache.acquire(0, 0));
    a.close();
    try (ExpertWeightCache.Lease b = get(cache.acquire(0, 1))) {
      assertTrue(b.warm());
    }
    assertFalse(cache.isWarm(0, 0));
    assertEquals(expertBytes, cache.allocatedBytes());
    cache.close();
  }

  @Test
  void anExpertLargerThanTheBudgetRunsCold() {
    ExpertWeightCache cache = cache(expertBytes - 1, Runnable::run);
    float[] x = input(3, 5);
    try (ExpertWeightCache.Lease lease = get(cache.acquire(1, 1))) {
      assertFalse(lease.warm());
      assertArrayEquals(bits(ExpertFfn.forward(kernels, store.expert(1, 1), x, 3)),
          bits(ExpertFfn.forward(kernels, lease.weights(), x, 3)));
    }
    cache.prefetch(1, 1);
    assertEquals(0, cache.loads());
    assertEquals(0, cache.allocatedBytes());
    assertTrue(cache.warmUp(1, 1).orTimeout(10, TimeUnit.SECONDS).join() == null);
    cache.close();
  }

  @Test
  void prefetchedEntriesCountAsUsefulOrWasted() {
    String node = node();
    ExpertWeightCache cache = new ExpertWeightCache(store, expertBytes, Runnable::run, node);
    cache.prefetch(0, 0);
    assertTrue(cache.isWarm(0, 0));
    cache.prefetch(0, 0); // already warm: no second load
    assertEquals(1, cache.loads());
    get(cache.acquire(0, 0)).close(); // a hit on a prefetched entry: useful
    cache.prefetch(0, 1); // evicts 0/0 (used, so not wasted)
    cache.prefetch(0, 2); // evicts 0/1, never used: wasted
    assertEquals(4, ExpertMetrics.prefetchReceived().labelValues(node).getLongValue());
    assertEquals(1, ExpertMetrics.prefetchUseful().labelValues(node).getLongValue());
    assertEquals(1, ExpertMetrics.prefetchWasted().labelValues(node).getLongValue());
    assertEquals(3, ExpertMetrics.prefetchLoads().labelValues(node).getLongValue());
    assertEquals(1, ExpertMetrics.cacheHits().labelValues(node).getLongValue());
    assertEquals(0, ExpertMetrics.cacheMisses().labelValues(node).getLongValue());
    assertEquals(2, ExpertMetrics.cacheEvictions().labelValues(node).getLongValue());
    assertEquals(expertBytes, ExpertMetrics.cacheWarmBytes().labelValues(node).get());
    assertEquals(expertBytes, ExpertMetrics.cacheBudgetBytes().labelValues(node).get());
    cache.close(); // 0/2 was never used: wasted too
    assertEquals(2, ExpertMetrics.prefetchWasted().labelValues(node).getLongValue());
  }

  @Test
  void budgetParsesSizesAndShares() {
    assertEquals(CacheBudget.ALL, CacheBudget.parse(ConfigFactory.parseString("b = \"100%\""), "b"));
    assertEquals(500, CacheBudget.parse(ConfigFactory.parseString("b = 50%"), "b").resolve(1000));
    assertEquals(2L << 30, CacheBudget.parse(ConfigFactory.parseString("b = 2GiB"), "b").resolve(1));
    assertEquals(512L << 20, CacheBudget.parse(ConfigFactory.parseString("b = 512MiB"), "b").resolve(1));
    assertEquals(4096, CacheBudget.parse(ConfigFactory.parseString("b = 4096"), "b").resolve(1));
    var e = assertThrows(IllegalArgumentException.class,
        () -> CacheBudget.parse(ConfigFactory.parseString("b = lots"), "b"));
    assertTrue(e.getMessage().contains("moe.expert.cache.budget"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> CacheBudget.parse(ConfigFactory.parseString("b = 150%"), "b"));
    var settings = ExpertNodeSettings.fromConfig(
        ConfigFactory.parseString("moe.expert.model-dir = /m").withFallback(ConfigFactory.load()));
    assertEquals(CacheBudget.ALL, settings.cacheBudget());
    assertEquals(1, settings.cacheLoaderThreads());
    assertEquals(config.numLayers() * config.numExperts() * expertBytes, ExpertWeightCache.allExpertBytes(store));
  }

  private static ExpertWeightCache runCold(long budget, java.util.concurrent.Executor loader, String node,
      int backgroundLoads) {
    return new ExpertWeightCache(store, budget, loader, node, CacheMissPolicy.RUN_COLD, backgroundLoads);
  }

  /** A loader that holds every load until the gate opens. */
  private static java.util.concurrent.Executor gated(ExecutorService pool, CountDownLatch gate) {
    return r -> pool.execute(() -> {
      try {
        gate.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      r.run();
    });
  }

  @Test
  void runColdMissNeverWaitsForTheLoadAndWarmsInTheBackground() {
    String node = node();
    CountDownLatch gate = new CountDownLatch(1);
    ExecutorService pool = Executors.newSingleThreadExecutor();
    ExpertWeightCache cache = runCold(4 * expertBytes, gated(pool, gate), node, 1);
    float[] x = input(5, 11);
    // The load of 1/3 is held back, yet the miss completes at once with the mapped bytes.
    CompletableFuture<ExpertWeightCache.Lease> first = cache.acquire(1, 3);
    assertTrue(first.isDone(), "a run-cold miss never waits for the load");
    try (ExpertWeightCache.Lease lease = first.join()) {
      assertFalse(lease.warm());
      assertArrayEquals(bits(ExpertFfn.forward(kernels, store.expert(1, 3), x, 5)),
          bits(ExpertFfn.forward(kernels, lease.weights(), x, 5)));
    }
    assertEquals(1, cache.loadsInFlight());
    // Another miss of the loading expert runs cold too and starts no second load.
    try (ExpertWeightCache.Lease lease = cache.acquire(1, 3).join()) {
      assertFalse(lease.warm());
    }
    // The loader is busy (background-loads = 1): a miss of another expert and a hint load nothing.
    try (ExpertWeightCache.Lease lease = cache.acquire(2, 4).join()) {
      assertFalse(lease.warm());
    }
    cache.prefetch(2, 5);
    assertEquals(1, cache.loads());
    assertFalse(cache.isWarm(2, 5));
    gate.countDown();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (!cache.isWarm(1, 3) && System.nanoTime() < deadline) {
      Thread.onSpinWait();
    }
    assertTrue(cache.isWarm(1, 3));
    assertEquals(0, cache.loadsInFlight());
    float[] hit;
    try (ExpertWeightCache.Lease lease = cache.acquire(1, 3).join()) {
      assertTrue(lease.warm());
      hit = ExpertFfn.forward(kernels, lease.weights(), x, 5);
    }
    assertArrayEquals(bits(ExpertFfn.forward(kernels, store.expert(1, 3), x, 5)), bits(hit), "warm = cold, bit for bit");
    // With the loader idle again a hint loads.
    cache.prefetch(2, 5);
    assertEquals(2, cache.loads());
    assertEquals(1, ExpertMetrics.cacheHits().labelValues(node).getLongValue());
    assertEquals(3, ExpertMetrics.cacheMisses().labelValues(node).getLongValue());
    assertEquals(3, ExpertMetrics.cacheColdComputations().labelValues(node).getLongValue());
    assertEquals(1, ExpertMetrics.prefetchLoads().labelValues(node).getLongValue());
    cache.close();
    pool.shutdownNow();
  }

  @Test
  void runColdFillsOnlyFreeRoomAndPagesInWhenFull() {
    String node = node();
    ExpertWeightCache cache = runCold(expertBytes, Runnable::run, node, 1);
    cache.acquire(0, 0).join().close(); // cold; loads 0/0 into the free room (here: at once)
    assertTrue(cache.isWarm(0, 0));
    ExpertWeightCache.Lease a = cache.acquire(0, 0).join();
    assertTrue(a.warm());
    a.close();
    // The budget is full: a miss of 0/1 runs cold and copies nothing, even with 0/0 idle.
    try (ExpertWeightCache.Lease b = cache.acquire(0, 1).join()) {
      assertFalse(b.warm());
    }
    // A hint for 0/1 copies nothing either: it pages in the mapped bytes instead.
    cache.prefetch(0, 1);
    assertTrue(cache.isWarm(0, 0));
    assertFalse(cache.isWarm(0, 1));
    assertEquals(1, cache.loads());
    assertEquals(0, ExpertMetrics.cacheEvictions().labelValues(node).getLongValue());
    assertEquals(0, ExpertMetrics.prefetchLoads().labelValues(node).getLongValue());
    ExpertWeights mapped = store.expert(0, 1);
    assertTrue(store.isResident(mapped), "the hint paged the mapped expert in");
    assertFalse(store.pageIn(mapped), "resident bytes need no page-in");
    assertEquals(expertBytes, cache.allocatedBytes());
    cache.close();
    assertEquals(0, cache.allocatedBytes());
  }

  @Test
  void runColdStaysWithinItsBudgetAndBitIdenticalUnderConcurrentLoad() throws Exception {
    long budget = 3 * expertBytes + expertBytes / 2;
    ExecutorService loader = Executors.newFixedThreadPool(2);
    ExpertWeightCache cache = runCold(budget, loader, node(), 2);
    float[] x = input(2, 3);
    int experts = 6;
    int[][] reference = new int[experts][];
    for (int e = 0; e < experts; e++) {
      reference[e] = bits(ExpertFfn.forward(kernels, store.expert(2, e), x, 2));
    }
    ExecutorService callers = Executors.newFixedThreadPool(4);
    AtomicBoolean over = new AtomicBoolean();
    AtomicInteger warm = new AtomicInteger();
    List<Future<?>> calls = new ArrayList<>();
    for (int t = 0; t < 4; t++) {
      int seed = t;
      calls.add(callers.submit(() -> {
        Random random = new Random(seed);
        for (int i = 0; i < 60; i++) {
          int e = random.nextInt(experts);
          if (random.nextInt(4) == 0) {
            cache.prefetch(2, e);
          }
          try (ExpertWeightCache.Lease lease = cache.acquire(2, e).join()) {
            if (lease.warm()) {
              warm.incrementAndGet();
            }
            assertArrayEquals(reference[e], bits(ExpertFfn.forward(kernels, lease.weights(), x, 2)));
          }
          if (cache.warmBytes() > budget || cache.allocatedBytes() > budget) {
            over.set(true);
          }
        }
        return null;
      }));
    }
    for (Future<?> c : calls) {
      c.get(50, TimeUnit.SECONDS);
    }
    assertFalse(over.get(), "the budget was exceeded");
    assertTrue(cache.peakAllocatedBytes() <= budget, "peak " + cache.peakAllocatedBytes() + " > " + budget);
    assertTrue(warm.get() > 0, "some computations ran warm");
    assertTrue(cache.loads() > 0);
    cache.close();
    callers.shutdownNow();
    loader.shutdownNow();
  }

  @Test
  void missPolicySettings() {
    var base = ConfigFactory.parseString("moe.expert.model-dir = /m").withFallback(ConfigFactory.load());
    var settings = ExpertNodeSettings.fromConfig(base);
    assertEquals(CacheMissPolicy.RUN_COLD, settings.cacheMissPolicy());
    assertEquals(1, settings.cacheBackgroundLoads());
    settings = ExpertNodeSettings.fromConfig(ConfigFactory.parseString(
        "moe.expert.cache { on-miss = wait-for-load, background-loads = 2 }").withFallback(base));
    assertEquals(CacheMissPolicy.WAIT_FOR_LOAD, settings.cacheMissPolicy());
    assertEquals(2, settings.cacheBackgroundLoads());
    var e = assertThrows(IllegalArgumentException.class, () -> ExpertNodeSettings.fromConfig(
        ConfigFactory.parseString("moe.expert.cache.on-miss = sometimes").withFallback(base)));
    assertTrue(e.getMessage().contains("moe.expert.cache.on-miss"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> ExpertNodeSettings.fromConfig(
        ConfigFactory.parseString("moe.expert.cache.background-loads = 0").withFallback(base)));
    assertTrue(e.getMessage().contains("moe.expert.cache.background-loads"), e.getMessage());
  }

  @Test
  void unknownExpertFails() {
    ExpertWeightCache cache = cache(expertBytes, Runnable::run);
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> cache.acquire(config.numLayers(), 0).get(5, TimeUnit.SECONDS));
    assertTrue(e.getCause() instanceof IllegalArgumentException);
    cache.close();
    ExpertWeightCache cold = runCold(expertBytes, Runnable::run, node(), 1);
    e = assertThrows(ExecutionException.class, () -> cold.acquire(0, config.numExperts()).get(5, TimeUnit.SECONDS));
    assertTrue(e.getCause() instanceof IllegalArgumentException);
    cold.close();
  }
}

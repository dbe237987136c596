package io.moecluster.expert;

import io.moecluster.core.model.ExpertStore;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.Matrix;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.GaugeDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The expert node's weight cache: which experts are warm, within a byte budget. A warm expert's
 * three matrices are copied from the mapped checkpoint into 64-byte-aligned native memory (one
 * shared {@link Arena} per entry, same dtype, so products are bit-identical to the mapped ones),
 * so the compute path takes no page faults and few TLB misses; a cold expert is the mapped
 * checkpoint bytes themselves.
 *
 * <p>{@link #acquire} hands out a {@link Lease}: a hit completes at once with the warm weights.
 * What a miss does is the {@link CacheMissPolicy}: with {@link CacheMissPolicy#RUN_COLD} it
 * completes at once with the cold mapped bytes and starts a background load only into free room
 * of the budget (it never evicts) and while fewer than {@code backgroundLoads} background tasks
 * are in flight, so the compute path never waits for a copy and no copy runs just to replace one
 * warm expert with another. A prefetch hint obeys the same rules; when the budget is full it pages
 * in the expert's mapped bytes instead (a no-op when they are resident, a read ahead from disk
 * when the checkpoint is not in the page cache). With {@link CacheMissPolicy#WAIT_FOR_LOAD} a
 * miss loads on the loader executor (never the caller's thread), concurrent misses of one expert
 * share one load, and the lease is on the warm copy. A load first evicts least-recently-used warm
 * entries to make room (with RUN_COLD only {@link #warmUp} needs to); an entry
 * that is leased (or still loading) is never evicted, so weights are never freed under a running
 * computation; when no room can be made the request runs from the cold mapped bytes instead. An
 * expert larger than the whole budget always runs cold (logged once). Every state change happens
 * under this object's lock; copies run outside it.
 */
public final class ExpertWeightCache implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ExpertWeightCache.class);
  private static final long ALIGNMENT = 64;
  private static final long PAGE_BYTES = 4096;
  private static volatile long pageSink; // a visible use of touched cold pages

  /** Weights for one computation; close it when the computation is done (idempotent). */
  public interface Lease extends AutoCloseable {
    ExpertWeights weights();

    /** Whether the weights are the cache's warm copy (false: the cold mapped checkpoint bytes). */
    boolean warm();

    @Override
    void close();
  }

  private record Key(int layer, int expert) {}

  /** A warm or loading expert; guarded by the cache's lock. */
  private static final class Entry {
    final Key key;
    final long bytes;
    final CompletableFuture<Void> ready = new CompletableFuture<>(); // completes when warm (or failed)
    ExpertWeights weights; // the warm copy, null while loading
    Arena arena;
    int leases;
    boolean prefetched; // loaded by a hint and not used since
    boolean dropped; // the cache closed while it was leased or loading: free on release

    Entry(Key key, long bytes) {
      this.key = key;
      this.bytes = bytes;
    }

    boolean warm() {
      return weights != null;
    }
  }

  private final ExpertStore store;
  private final long budgetBytes;
  private final boolean holdsEveryExpert; // the budget fits every expert of the model: nothing is ever evicted
  private final Executor loader;
  private final CacheMissPolicy missPolicy;
  private final int backgroundLoads; // background tasks misses and hints may have in flight (RUN_COLD)
  private int loadsInFlight; // guarded by this
  private int pageInsInFlight; // guarded by this
  private final LinkedHashMap<Key, Entry> entries = new LinkedHashMap<>(64, 0.75f, true); // LRU first
  private final AtomicBoolean loggedOversized = new AtomicBoolean();
  private long reservedBytes; // warm + loading entries
  private boolean closed;

  // Statistics (also exported as metrics).
  private final AtomicLong loads = new AtomicLong();
  private final AtomicLong allocatedBytes = new AtomicLong(); // native bytes alive
  private final AtomicLong peakAllocatedBytes = new AtomicLong();
  private final CounterDataPoint hits;
  private final CounterDataPoint misses;
  private final CounterDataPoint coldComputations;
  private final CounterDataPoint evictions;
  private final GaugeDataPoint warmGauge;
  private final DistributionDataPoint loadSeconds;
  private final CounterDataPoint prefetchReceived;
  private final CounterDataPoint prefetchLoads;
  private final CounterDataPoint prefetchUseful;
  private final CounterDataPoint prefetchWasted;
  private final CounterDataPoint prefetchPageIns;

  /** A cache whose misses wait for their load ({@link CacheMissPolicy#WAIT_FOR_LOAD}). */
  public ExpertWeightCache(ExpertStore store, long budgetBytes, Executor loader, String node) {
    this(store, budgetBytes, loader, node, CacheMissPolicy.WAIT_FOR_LOAD, 1);
  }

  /**
   * @param budgetBytes most bytes of warm weights (loads in flight included)
   * @param loader where loads run (a dedicated executor, never an actor's thread)
   * @param node the {@code node} label of this cache's metrics
   * @param missPolicy what a miss does
   * @param backgroundLoads with {@link CacheMissPolicy#RUN_COLD}: most background tasks (loads,
   *     page-ins) in flight that misses and prefetch hints may start (a miss or hint beyond it does
   *     nothing); at least 1
   */
  public ExpertWeightCache(ExpertStore store, long budgetBytes, Executor loader, String node,
      CacheMissPolicy missPolicy, int backgroundLoads) {
    if (budgetBytes < 0) {
      throw new IllegalArgumentException("cache budget must be >= 0 bytes, got " + budgetBytes);
    }
    if (backgroundLoads < 1) {
      throw new IllegalArgumentException("background loads must be >= 1, got " + backgroundLoads);
    }
    this.store = store;
    this.budgetBytes = budgetBytes;
    this.holdsEveryExpert = budgetBytes >= allExpertBytes(store);
    this.loader = loader;
    this.missPolicy = missPolicy;
    this.backgroundLoads = backgroundLoads;
    this.coldComputations = ExpertMetrics.cacheColdComputations().labelValues(node);
    this.hits = ExpertMetrics.cacheHits().labelValues(node);
    this.misses = ExpertMetrics.cacheMisses().labelValues(node);
    this.evictions = ExpertMetrics.cacheEvictions().labelValues(node);
    this.warmGauge = ExpertMetrics.cacheWarmBytes().labelValues(node);
    this.loadSeconds = ExpertMetrics.cacheLoadSeconds().labelValues(node);
    this.prefetchReceived = ExpertMetrics.prefetchReceived().labelValues(node);
    this.prefetchLoads = ExpertMetrics.prefetchLoads().labelValues(node);
    this.prefetchUseful = ExpertMetrics.prefetchUseful().labelValues(node);
    this.prefetchWasted = ExpertMetrics.prefetchWasted().labelValues(node);
    this.prefetchPageIns = ExpertMetrics.prefetchPageIns().labelValues(node);
    ExpertMetrics.cacheBudgetBytes().labelValues(node).set(budgetBytes);
    warmGauge.set(0);
  }

  /** Bytes of every routed expert of the checkpoint: what "100%" of the budget means. */
  public static long allExpertBytes(ExpertStore store) {
    long total = 0;
    for (int l = 0; l < store.config().numLayers(); l++) {
      for (int e = 0; e < store.config().numExperts(); e++) {
        total += store.expertBytes(l, e); // from the header: an F16 model is not converted to be sized
      }
    }
    return total;
  }

  public long budgetBytes() {
    return budgetBytes;
  }

  /**
   * Whether the budget fits every expert of the model, so that a warm expert stays warm for the
   * cache's life (no load ever has to evict one).
   */
  public boolean holdsEveryExpert() {
    return holdsEveryExpert;
  }

  /** Bytes of warm entries plus loads in flight; never above {@link #budgetBytes}. */
  public synchronized long warmBytes() {
    return reservedBytes;
  }

  /** Native bytes of warm copies alive right now (entries freed late included). */
  public long allocatedBytes() {
    return allocatedBytes.get();
  }

  /** The most native bytes of warm copies alive at any time. */
  public long peakAllocatedBytes() {
    return peakAllocatedBytes.get();
  }

  /** Loads started so far. */
  public long loads() {
    return loads.get();
  }

  /** The policy of this cache's misses. */
  public CacheMissPolicy missPolicy() {
    return missPolicy;
  }

  /** Loads in flight right now (started, not yet warm or failed). */
  public synchronized int loadsInFlight() {
    return loadsInFlight;
  }

  /** Whether (layer, expert) is warm now. */
  public synchronized boolean isWarm(int layer, int expert) {
    Entry e = entries.get(new Key(layer, expert));
    return e != null && e.warm();
  }

  /**
   * A lease on the weights of (layer, expert): warm at once on a hit. On a miss, with
   * {@link CacheMissPolicy#RUN_COLD} cold at once (a background load starts when the loader has
   * room); with {@link CacheMissPolicy#WAIT_FOR_LOAD} warm after the load (shared with any other
   * miss of the same expert). Cold when the expert cannot be made warm. Fails with
   * IllegalArgumentException for an expert the checkpoint does not have.
   */
  public CompletableFuture<Lease> acquire(int layer, int expert) {
    return missPolicy == CacheMissPolicy.RUN_COLD ? acquireOrRunCold(layer, expert) : acquireAndWait(layer, expert);
  }

  /** {@link CacheMissPolicy#RUN_COLD}: never waits for a load. */
  private CompletableFuture<Lease> acquireOrRunCold(int layer, int expert) {
    Key key = new Key(layer, expert);
    Entry started = null;
    ExpertWeights mapped;
    synchronized (this) {
      if (closed) {
        return CompletableFuture.failedFuture(new IllegalStateException("the expert weight cache is closed"));
      }
      Entry e = entries.get(key); // moves it to the most recently used end
      if (e != null && e.warm()) {
        e.leases++;
        if (e.prefetched) {
          e.prefetched = false;
          prefetchUseful.inc();
        }
        hits.inc();
        return CompletableFuture.completedFuture(new WarmLease(e));
      }
      try {
        mapped = store.expert(layer, expert);
      } catch (RuntimeException ex) {
        return CompletableFuture.failedFuture(ex);
      }
      misses.inc();
      if (e == null && backgroundRoom() && fitsFree(mapped.byteSize())) {
        started = startLoad(key, mapped); // warm it for later, not for this computation
      }
    }
    if (started != null) {
      submit(started, mapped);
    }
    return CompletableFuture.completedFuture(coldLease(mapped));
  }

  /** {@link CacheMissPolicy#WAIT_FOR_LOAD}: a miss waits for the (shared) load. */
  private CompletableFuture<Lease> acquireAndWait(int layer, int expert) {
    Key key = new Key(layer, expert);
    Entry loading;
    Entry started = null;
    ExpertWeights mapped = null;
    synchronized (this) {
      if (closed) {
        return CompletableFuture.failedFuture(new IllegalStateException("the expert weight cache is closed"));
      }
      Entry e = entries.get(key); // moves it to the most recently used end
      if (e != null) {
        e.leases++;
        if (e.prefetched) {
          e.prefetched = false;
          prefetchUseful.inc();
        }
        if (e.warm()) {
          hits.inc();
          return CompletableFuture.completedFuture(new WarmLease(e));
        }
        misses.inc();
        loading = e;
      } else {
        try {
          mapped = store.expert(layer, expert);
        } catch (RuntimeException ex) {
          return CompletableFuture.failedFuture(ex);
        }
        misses.inc();
        started = startLoad(key, mapped);
        if (started == null) {
          return CompletableFuture.completedFuture(coldLease(mapped));
        }
        started.leases++;
        loading = started;
      }
    }
    if (started != null) {
      submit(started, mapped);
    }
    Entry e = loading;
    return e.ready.handle((ok, err) -> err == null ? new WarmLease(e) : coldLease(store.expert(layer, expert)));
  }

  /**
   * A hint: starts loading (layer, expert) if it is not warm or loading; never waits. With
   * {@link CacheMissPolicy#RUN_COLD} only while fewer than {@code backgroundLoads} background
   * tasks are in flight (a hint must never delay the computations it is meant to speed up) and
   * only into free room; when the budget is full it pages in the mapped bytes instead.
   */
  public void prefetch(int layer, int expert) {
    prefetchReceived.inc();
    Key key = new Key(layer, expert);
    Entry started;
    ExpertWeights mapped;
    synchronized (this) {
      if (closed || entries.get(key) != null) { // a warm one becomes most recently used
        return;
      }
      boolean runCold = missPolicy == CacheMissPolicy.RUN_COLD;
      if (runCold && !backgroundRoom()) {
        return;
      }
      try {
        mapped = store.expert(layer, expert);
      } catch (RuntimeException ex) {
        return;
      }
      if (runCold && !fitsFree(mapped.byteSize())) {
        pageInsInFlight++; // no copy that would evict a warm expert: read ahead instead
        started = null;
      } else {
        started = startLoad(key, mapped);
        if (started == null) {
          return;
        }
        started.prefetched = true;
        prefetchLoads.inc();
      }
    }
    if (started != null) {
      submit(started, mapped);
    } else {
      submitPageIn(mapped);
    }
  }

  /** Whether a miss or hint may start one more background task (RUN_COLD). Locked. */
  private boolean backgroundRoom() {
    return loadsInFlight + pageInsInFlight < backgroundLoads;
  }

  /** Whether {@code bytes} fit in the budget without evicting anything. Locked. */
  private boolean fitsFree(long bytes) {
    return reservedBytes + bytes <= budgetBytes;
  }

  /** On the loader: pages in the expert's mapped bytes that are not resident (RUN_COLD hints). */
  private void submitPageIn(ExpertWeights mapped) {
    try {
      loader.execute(() -> {
        try {
          if (store.pageIn(mapped)) {
            prefetchPageIns.inc();
          }
        } catch (RuntimeException ex) {
          log.debug("Paging in a prefetched expert failed", ex);
        } finally {
          synchronized (this) {
            pageInsInFlight--;
          }
        }
      });
    } catch (RejectedExecutionException ex) {
      synchronized (this) {
        pageInsInFlight--;
      }
    }
  }

  /**
   * Makes (layer, expert) ready to serve without counting a hit or a miss (an entity being
   * located): warm when it fits, else its cold pages touched. Completes when done.
   */
  public CompletableFuture<Void> warmUp(int layer, int expert) {
    Key key = new Key(layer, expert);
    Entry started;
    ExpertWeights mapped;
    synchronized (this) {
      if (closed) {
        return CompletableFuture.failedFuture(new IllegalStateException("the expert weight cache is closed"));
      }
      Entry e = entries.get(key);
      if (e != null) {
        return e.ready.exceptionally(err -> null);
      }
      try {
        mapped = store.expert(layer, expert);
      } catch (RuntimeException ex) {
        return CompletableFuture.failedFuture(ex);
      }
      started = startLoad(key, mapped);
    }
    if (started == null) {
      ExpertWeights w = mapped;
      try {
        return CompletableFuture.runAsync(() -> touch(w), loader);
      } catch (RejectedExecutionException ex) {
        return CompletableFuture.failedFuture(ex);
      }
    }
    submit(started, mapped);
    return started.ready.exceptionally(err -> null);
  }

  /** Reserves room and registers a loading entry; null when the expert must stay cold. Locked. */
  private Entry startLoad(Key key, ExpertWeights mapped) {
    long bytes = mapped.byteSize();
    if (bytes > budgetBytes) {
      if (loggedOversized.compareAndSet(false, true)) {
        log.warn("Expert {}/{} needs {} bytes, more than the whole weight cache budget of {} bytes"
            + " (moe.expert.cache.budget): such experts run from the mapped checkpoint, with page faults",
            key.layer(), key.expert(), bytes, budgetBytes);
      }
      return null;
    }
    if (!makeRoom(bytes)) {
      return null;
    }
    Entry e = new Entry(key, bytes);
    entries.put(key, e);
    reservedBytes += bytes;
    warmGauge.set(reservedBytes);
    loads.incrementAndGet();
    loadsInFlight++;
    return e;
  }

  /** Evicts least-recently-used idle warm entries until {@code bytes} more fit. Locked. */
  private boolean makeRoom(long bytes) {
    if (reservedBytes + bytes <= budgetBytes) {
      return true;
    }
    List<Entry> victims = new ArrayList<>();
    long freed = 0;
    for (Entry e : entries.values()) { // least recently used first
      if (e.warm() && e.leases == 0) {
        victims.add(e);
        freed += e.bytes;
        if (reservedBytes - freed + bytes <= budgetBytes) {
          break;
        }
      }
    }
    if (reservedBytes - freed + bytes > budgetBytes) {
      return false; // the rest is leased or loading: run cold rather than exceed the budget
    }
    for (Entry e : victims) {
      entries.remove(e.key);
      reservedBytes -= e.bytes;
      evictions.inc();
      if (e.prefetched) {
        prefetchWasted.inc();
      }
      free(e);
    }
    warmGauge.set(reservedBytes);
    return true;
  }

  private void submit(Entry e, ExpertWeights mapped) {
    try {
      loader.execute(() -> load(e, mapped));
    } catch (RejectedExecutionException ex) {
      failed(e, ex);
    }
  }

  /** On the loader: copies the three matrices into aligned native memory. */
  private void load(Entry e, ExpertWeights mapped) {
    long start = System.nanoTime();
    Arena arena = Arena.ofShared();
    ExpertWeights warm;
    try {
      allocated(e.bytes);
      warm = new ExpertWeights(copy(mapped.gate(), arena), copy(mapped.up(), arena), copy(mapped.down(), arena));
    } catch (Throwable t) {
      arena.close();
      allocated(-e.bytes);
      log.warn("Loading expert {}/{} into the weight cache failed; it runs from the mapped checkpoint",
          e.key.layer(), e.key.expert(), t);
      failed(e, t);
      return;
    }
    synchronized (this) {
      loadsInFlight--;
      e.weights = warm;
      e.arena = arena;
      if (e.dropped && e.leases == 0) {
        free(e);
      }
    }
    loadSeconds.observe((System.nanoTime() - start) / 1e9);
    e.ready.complete(null);
  }

  private static Matrix copy(Matrix m, Arena arena) {
    MemorySegment dst = arena.allocate(m.byteSize(), ALIGNMENT);
    dst.copyFrom(m.data());
    return new Matrix(m.name(), m.dtype(), m.rows(), m.cols(), dst);
  }

  private void failed(Entry e, Throwable t) {
    synchronized (this) {
      loadsInFlight--;
      if (entries.get(e.key) == e) {
        entries.remove(e.key);
        reservedBytes -= e.bytes;
        warmGauge.set(reservedBytes);
      }
    }
    e.ready.completeExceptionally(t);
  }

  private void release(Entry e) {
    synchronized (this) {
      e.leases--;
      if (e.leases == 0 && e.dropped) {
        free(e);
      }
    }
  }

  /** Frees the warm copy (no lease left). Locked. */
  private void free(Entry e) {
    if (e.arena != null) {
      e.arena.close();
      e.arena = null;
      e.weights = null;
      allocated(-e.bytes);
    }
  }

  private void allocated(long delta) {
    long now = allocatedBytes.addAndGet(delta);
    peakAllocatedBytes.accumulateAndGet(now, Math::max);
  }

  private Lease coldLease(ExpertWeights mapped) {
    coldComputations.inc();
    return new Lease() {
      @Override
      public ExpertWeights weights() {
        return mapped;
      }

      @Override
      public boolean warm() {
        return false;
      }

      @Override
      public void close() {}
    };
  }

  private final class WarmLease implements Lease {
    private final Entry entry;
    private final ExpertWeights weights;
    private final AtomicBoolean open = new AtomicBoolean(true);

    WarmLease(Entry entry) {
      this.entry = entry;
      this.weights = entry.weights;
    }

    @Override
    public ExpertWeights weights() {
      return weights;
    }

    @Override
    public boolean warm() {
      return true;
    }

    @Override
    public void close() {
      if (open.compareAndSet(true, false)) {
        release(entry);
      }
    }
  }

  /** Reads one byte of every page of the three matrices so later products do not fault. */
  static void touch(ExpertWeights w) {
    long sum = 0;
    for (Matrix m : new Matrix[] {w.gate(), w.up(), w.down()}) {
      MemorySegment seg = m.data();
      for (long off = 0; off < seg.byteSize(); off += PAGE_BYTES) {
        sum += seg.get(ValueLayout.JAVA_BYTE, off);
      }
    }
    pageSink += sum;
  }

  /** Frees every idle warm copy now and leased or loading ones when they are released. */
  @Override
  public void close() {
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      for (Iterator<Entry> it = entries.values().iterator(); it.hasNext(); ) {
        Entry e = it.next();
        it.remove();
        if (e.prefetched) {
          prefetchWasted.inc();
        }
        if (e.leases == 0 && e.warm()) {
          free(e);
        } else {
          e.dropped = true;
        }
      }
      reservedBytes = 0;
      warmGauge.set(0);
    }
  }
}

package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.expert.ExpertMetrics;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.datapoints.DistributionDataPoint;
import io.prometheus.metrics.core.datapoints.GaugeDataPoint;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.PriorityQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Device memory as the warm tier of the expert weights: which experts are resident on one GPU,
 * within a byte budget, least recently used evicted first. The accounting is plain Java over a
 * {@link Memory} (the real one is {@link CudaDevice}; tests use a fake), so budget, leases and
 * eviction are tested without a GPU.
 *
 * <p>Allocation, upload and free all run on the {@code copy} executor, the device's copy thread
 * (CUDA calls need the device's context, which only the backend's threads hold). It runs one
 * task at a time in order, so a free queued by an eviction always runs before the allocation it
 * made room for, and the device never holds more than the budget. An eviction that makes room for
 * an expert of the same size (the usual case: a model's experts share one shape) frees nothing:
 * the upload writes into the evicted block, because freeing device memory waits for every kernel
 * on the device. Uploads on that thread overlap the kernels on the compute thread: a prefetch hint
 * uploads while other experts compute.
 *
 * <p>A leased (or uploading) entry is never evicted. When no room can be made, or the expert is
 * larger than the whole budget, or its upload fails, {@link #acquire} answers null and the caller
 * runs the expert on the CPU.
 */
public final class DeviceWeightTier<P> implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(DeviceWeightTier.class);

  /** Device memory: blocks of bytes. Called on the copy thread only. */
  public interface Memory<P> {
    /** A block of {@code bytes}; throws when the device has no room. */
    P allocate(long bytes);

    void free(P block);
  }

  /** Copies an expert's three matrices into a block at the offsets of {@code layout}. Copy thread only. */
  public interface Uploader<P> {
    void upload(ExpertWeights source, P block, Layout layout);
  }

  /**
   * Where the three matrices lie in an expert's device block: each at a 256-byte boundary (the
   * alignment of the driver's allocations, so every matrix is 16-byte aligned for vector loads).
   */
  public record Layout(long gateOffset, long upOffset, long downOffset, long bytes) {
    static final long ALIGN = 256;

    public static Layout of(ExpertWeights w) {
      long gate = 0;
      long up = align(gate + w.gate().byteSize());
      long down = align(up + w.up().byteSize());
      return new Layout(gate, up, down, align(down + w.down().byteSize()));
    }

    private static long align(long offset) {
      return (offset + ALIGN - 1) / ALIGN * ALIGN;
    }
  }

  /** A resident expert for one computation; close it when the kernels are done (idempotent). */
  public interface Lease<P> extends AutoCloseable {
    P block();

    Layout layout();

    @Override
    void close();
  }

  private record Key(int layer, int expert) {}

  /** A resident or uploading expert; guarded by the tier's lock. */
  private static final class Entry<P> {
    final Key key;
    final Layout layout;
    final ExpertWeights weights;
    final CompletableFuture<Void> ready = new CompletableFuture<>();
    long seq; // order of queueing for the copy thread
    long freesBefore; // frees queued on the copy thread before this upload: done before it runs
    boolean queued; // waiting for the copy thread, in demandQueue or hintQueue
    P block; // null while uploading
    P reuse; // an evicted expert's block of the same size that the upload writes into, instead of allocating
    int leases;
    boolean dropped; // evicted or closed while leased or uploading: free on release

    Entry(Key key, Layout layout, ExpertWeights weights) {
      this.key = key;
      this.layout = layout;
      this.weights = weights;
    }

    boolean resident() {
      return block != null;
    }
  }

  private final long budgetBytes;
  private final Memory<P> memory;
  private final Uploader<P> uploader;
  private final Executor copy;
  private final LinkedHashMap<Key, Entry<P>> entries = new LinkedHashMap<>(64, 0.75f, true); // LRU first
  // Uploads waiting for the copy thread: those a computation waits for go before prefetch hints.
  private final PriorityQueue<Entry<P>> demandQueue = new PriorityQueue<>(Comparator.comparingLong(e -> e.seq));
  private final ArrayDeque<Entry<P>> hintQueue = new ArrayDeque<>();
  private long submitted;
  private long freesQueued; // free tasks handed to the copy thread
  private long freesDone; // of which run (the copy thread runs them in order)
  private final AtomicBoolean loggedOversized = new AtomicBoolean();
  private long reservedBytes; // resident + uploading
  private boolean closed;

  private final AtomicLong uploads = new AtomicLong();
  private final AtomicLong evictionCount = new AtomicLong();
  private final AtomicLong allocatedBytes = new AtomicLong(); // device bytes alive
  private final GaugeDataPoint residentGauge;
  private final CounterDataPoint uploadCounter;
  private final CounterDataPoint evictionCounter;
  private final DistributionDataPoint uploadSeconds;
  private final CounterDataPoint hits;
  private final CounterDataPoint inFlight;
  private final CounterDataPoint misses;
  private final CounterDataPoint onCpu;
  private final CounterDataPoint waitSeconds;

  /**
   * @param budgetBytes most device bytes of expert weights (uploads in flight included)
   * @param copy the device's copy thread: one task at a time, in order
   * @param node the {@code node} label of the metrics
   * @param device the {@code device} label ({@code "cuda:0"})
   */
  public DeviceWeightTier(long budgetBytes, Memory<P> memory, Uploader<P> uploader, Executor copy, String node,
      String device) {
    if (budgetBytes < 0) {
      throw new IllegalArgumentException("device memory budget must be >= 0 bytes, got " + budgetBytes);
    }
    this.budgetBytes = budgetBytes;
    this.memory = memory;
    this.uploader = uploader;
    this.copy = copy;
    this.residentGauge = ExpertMetrics.deviceResidentBytes().labelValues(node, device);
    this.uploadCounter = ExpertMetrics.deviceUploads().labelValues(node, device);
    this.evictionCounter = ExpertMetrics.deviceEvictions().labelValues(node, device);
    this.uploadSeconds = ExpertMetrics.deviceUploadSeconds().labelValues(node, device);
    this.hits = ExpertMetrics.deviceLookups().labelValues(node, device, "hit");
    this.inFlight = ExpertMetrics.deviceLookups().labelValues(node, device, "in-flight");
    this.misses = ExpertMetrics.deviceLookups().labelValues(node, device, "miss");
    this.onCpu = ExpertMetrics.deviceLookups().labelValues(node, device, "cpu");
    this.waitSeconds = ExpertMetrics.deviceWaitSeconds().labelValues(node, device);
    ExpertMetrics.deviceBudgetBytes().labelValues(node, device).set(budgetBytes);
    residentGauge.set(0);
  }

  public long budgetBytes() {
    return budgetBytes;
  }

  /** Bytes of resident and uploading experts; never above {@link #budgetBytes}. */
  public synchronized long reservedBytes() {
    return reservedBytes;
  }

  /** Device bytes allocated right now (frees still queued on the copy thread included). */
  public long allocatedBytes() {
    return allocatedBytes.get();
  }

  public long uploads() {
    return uploads.get();
  }

  public long evictions() {
    return evictionCount.get();
  }

  public synchronized boolean isResident(int layer, int expert) {
    Entry<P> e = entries.get(new Key(layer, expert));
    return e != null && e.resident();
  }

  /**
   * A lease on (layer, expert) resident on the device: at once when it is, else after its upload
   * (shared with concurrent requests). Completes with null when it cannot be made resident.
   */
  public CompletableFuture<Lease<P>> acquire(int layer, int expert, ExpertWeights weights) {
    Key key = new Key(layer, expert);
    Entry<P> entry;
    boolean started = false;
    RejectedExecutionException refused = null;
    synchronized (this) {
      if (closed) {
        return CompletableFuture.failedFuture(new IllegalStateException("the device weight tier is closed"));
      }
      entry = entries.get(key);
      if (entry == null) {
        entry = startUpload(key, weights);
        if (entry == null) {
          onCpu.inc();
          return CompletableFuture.completedFuture(null);
        }
        started = true;
        refused = enqueue(entry, true);
      }
      entry.leases++;
      if (entry.resident()) {
        hits.inc();
        return CompletableFuture.completedFuture(new DeviceLease(entry));
      }
      if (entry.queued && hintQueue.remove(entry)) { // a hint's upload not started yet: now it is awaited
        demandQueue.add(entry);
      }
    }
    if (refused != null) {
      failed(entry, refused);
    }
    Entry<P> e = entry;
    // Counted when the upload ends: a computation whose upload failed runs on the CPU, and counts
    // as that, not as a miss.
    CounterDataPoint waited = started ? misses : inFlight;
    long waitStart = System.nanoTime();
    return e.ready.handle((ok, err) -> {
      waitSeconds.inc((System.nanoTime() - waitStart) / 1e9);
      if (err != null) {
        onCpu.inc();
        release(e);
        return null;
      }
      waited.inc();
      return new DeviceLease(e);
    });
  }

  /** Counts a computation the backend ran on the CPU without asking the tier (weights it has no kernels for). */
  public void countCpuComputation() {
    onCpu.inc();
  }

  /** A hint: uploads (layer, expert) if it is neither resident nor uploading; never waits. */
  public void prefetch(int layer, int expert, ExpertWeights weights) {
    Key key = new Key(layer, expert);
    Entry<P> started;
    RejectedExecutionException refused;
    synchronized (this) {
      if (closed || entries.get(key) != null) { // a resident one becomes most recently used
        return;
      }
      started = startUpload(key, weights);
      if (started == null) {
        return;
      }
      refused = enqueue(started, false);
    }
    if (refused != null) {
      failed(started, refused);
    }
  }

  /** Reserves room and registers an uploading entry; null when the expert cannot be resident. Locked. */
  private Entry<P> startUpload(Key key, ExpertWeights weights) {
    Layout layout = Layout.of(weights);
    if (layout.bytes() > budgetBytes) {
      if (loggedOversized.compareAndSet(false, true)) {
        log.warn("Expert {}/{} needs {} bytes of device memory, more than the whole budget of {} bytes"
            + " (moe.expert.cuda.memory-budget): such experts run on the CPU", key.layer(), key.expert(),
            layout.bytes(), budgetBytes);
      }
      return null;
    }
    Entry<P> e = new Entry<>(key, layout, weights);
    if (!makeRoom(e)) {
      return null;
    }
    entries.put(key, e);
    reservedBytes += layout.bytes();
    residentGauge.set(reservedBytes);
    return e;
  }

  /**
   * Evicts least-recently-used idle resident entries until {@code e} fits. The first victim of
   * {@code e}'s size hands its block to {@code e}: freeing device memory waits for every kernel on
   * the device and allocating can too, so reusing the block keeps both off the path of a miss.
   * Locked.
   */
  private boolean makeRoom(Entry<P> e) {
    long bytes = e.layout.bytes();
    if (reservedBytes + bytes <= budgetBytes) {
      return true;
    }
    List<Entry<P>> victims = new ArrayList<>();
    long freed = 0;
    for (Entry<P> v : entries.values()) { // least recently used first
      if (v.resident() && v.leases == 0) {
        victims.add(v);
        freed += v.layout.bytes();
        if (reservedBytes - freed + bytes <= budgetBytes) {
          break;
        }
      }
    }
    if (reservedBytes - freed + bytes > budgetBytes) {
      return false; // the rest is leased or uploading: run on the CPU rather than exceed the budget
    }
    for (Entry<P> v : victims) {
      entries.remove(v.key);
      reservedBytes -= v.layout.bytes();
      evictionCount.incrementAndGet();
      evictionCounter.inc();
      if (e.reuse == null && v.layout.bytes() == bytes) {
        v.dropped = true;
        e.reuse = v.block;
        v.block = null;
      } else {
        queueFree(v);
      }
    }
    residentGauge.set(reservedBytes);
    return true;
  }

  /**
   * Queues {@code e}'s upload, as awaited or as a hint, and gives the copy thread one task for it.
   * Each task uploads the oldest awaited entry whose room is already freed, else the oldest entry:
   * so an awaited upload overtakes hints still waiting, yet never allocates before a free it needs
   * room from. Locked.
   *
   * @return null, or the refusal of a copy thread that is shut down (the entry is off the queues)
   */
  private RejectedExecutionException enqueue(Entry<P> e, boolean awaited) {
    e.seq = ++submitted;
    e.freesBefore = freesQueued;
    e.queued = true;
    (awaited ? demandQueue : hintQueue).add(e);
    try {
      copy.execute(this::uploadNext);
      return null;
    } catch (RejectedExecutionException ex) {
      e.queued = false;
      demandQueue.remove(e);
      hintQueue.remove(e);
      return ex;
    }
  }

  /**
   * On the copy thread: the next upload. The oldest entry of both queues is always ready: its
   * frees were queued before its own task, which has not run before this one.
   */
  private void uploadNext() {
    Entry<P> next;
    synchronized (this) {
      Entry<P> awaited = demandQueue.peek();
      Entry<P> hint = hintQueue.peekFirst();
      if (awaited != null && (awaited.freesBefore <= freesDone || hint == null || awaited.seq < hint.seq)) {
        next = demandQueue.poll();
      } else {
        next = hintQueue.pollFirst();
      }
      if (next == null) {
        return; // cannot happen: one task per queued entry
      }
      next.queued = false;
    }
    upload(next);
  }

  /** On the copy thread: allocates the block and uploads the three matrices. */
  private void upload(Entry<P> e) {
    P block;
    boolean closedFirst;
    synchronized (this) {
      block = e.reuse;
      e.reuse = null;
      closedFirst = e.dropped;
    }
    if (closedFirst) { // closed before the upload started
      if (block != null) {
        freeNow(block, e.layout.bytes());
      }
      e.ready.completeExceptionally(new IllegalStateException("the device weight tier is closed"));
      return;
    }
    long start = System.nanoTime();
    if (block == null) {
      try {
        block = memory.allocate(e.layout.bytes());
      } catch (RuntimeException ex) {
        log.warn("Allocating {} bytes of device memory for expert {}/{} failed; it runs on the CPU",
            e.layout.bytes(), e.key.layer(), e.key.expert(), ex);
        failed(e, ex);
        return;
      }
      allocatedBytes.addAndGet(e.layout.bytes());
    }
    try {
      uploader.upload(e.weights, block, e.layout);
    } catch (RuntimeException ex) {
      freeNow(block, e.layout.bytes());
      log.warn("Uploading expert {}/{} to the device failed; it runs on the CPU", e.key.layer(), e.key.expert(), ex);
      failed(e, ex);
      return;
    }
    boolean freeNow;
    synchronized (this) {
      e.block = block;
      freeNow = e.dropped && e.leases == 0;
      if (freeNow) {
        e.block = null;
      }
    }
    if (freeNow) {
      freeNow(block, e.layout.bytes());
    }
    uploads.incrementAndGet();
    uploadCounter.inc();
    uploadSeconds.observe((System.nanoTime() - start) / 1e9);
    e.ready.complete(null);
  }

  private void failed(Entry<P> e, Throwable t) {
    synchronized (this) {
      if (entries.get(e.key) == e) {
        entries.remove(e.key);
        reservedBytes -= e.layout.bytes();
        residentGauge.set(reservedBytes);
      }
    }
    e.ready.completeExceptionally(t);
  }

  private void release(Entry<P> e) {
    synchronized (this) {
      e.leases--;
      if (e.leases == 0 && e.dropped && e.resident()) {
        queueFree(e);
      }
    }
  }

  /** Hands the entry's block to the copy thread to free (or marks it to free when released). Locked. */
  private void queueFree(Entry<P> e) {
    e.dropped = true;
    if (e.leases > 0 || !e.resident()) {
      return; // freed by the last release, or by the upload when it ends
    }
    P block = e.block;
    e.block = null;
    long bytes = e.layout.bytes();
    try {
      copy.execute(() -> {
        freeNow(block, bytes);
        synchronized (this) {
          freesDone++;
        }
      });
      freesQueued++;
    } catch (RejectedExecutionException ex) {
      // The copy thread is gone: the device context (and its memory) is being destroyed anyway.
      allocatedBytes.addAndGet(-bytes);
    }
  }

  private void freeNow(P block, long bytes) {
    try {
      memory.free(block);
    } catch (RuntimeException ex) {
      log.warn("Freeing {} bytes of device memory failed", bytes, ex);
    } finally {
      allocatedBytes.addAndGet(-bytes);
    }
  }

  private final class DeviceLease implements Lease<P> {
    private final Entry<P> entry;
    private final P block;
    private final AtomicBoolean open = new AtomicBoolean(true);

    DeviceLease(Entry<P> entry) {
      this.entry = entry;
      this.block = entry.block;
    }

    @Override
    public P block() {
      return block;
    }

    @Override
    public Layout layout() {
      return entry.layout;
    }

    @Override
    public void close() {
      if (open.compareAndSet(true, false)) {
        release(entry);
      }
    }
  }

  /** Frees every idle block now (through the copy thread) and leased or uploading ones when released. */
  @Override
  public void close() {
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      for (Iterator<Entry<P>> it = entries.values().iterator(); it.hasNext(); ) {
        Entry<P> e = it.next();
        it.remove();
        queueFree(e);
      }
      reservedBytes = 0;
      residentGauge.set(0);
    }
  }
}

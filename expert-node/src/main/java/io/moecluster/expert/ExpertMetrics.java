package io.moecluster.expert;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;

/**
 * The Prometheus metric families of the expert role, registered once per JVM in the default
 * registry (several expert nodes in one JVM, as in tests, share them and tell themselves apart
 * by the {@code node} label). Holders are nested classes so that a family is registered when
 * first used, exactly once.
 *
 * <p>Every family is built {@code withoutExemplars()}: no tracer supplies trace ids for them, and
 * the exemplar sampler's rate limiter schedules a task on the client's scheduler thread for each
 * observation it keeps, a thread wake-up on the path of every layer or token.
 */
public final class ExpertMetrics {
  private ExpertMetrics() {}

  /** {@code moe_expert_cache_hits_total{node}}: acquires that found warm weights. */
  public static Counter cacheHits() {
    return Holder.HITS;
  }

  /** {@code moe_expert_cache_cold_computations_total{node}}: acquires answered with the cold mapped bytes. */
  public static Counter cacheColdComputations() {
    return Holder.COLD_COMPUTATIONS;
  }

  /** {@code moe_expert_cache_misses_total{node}}: acquires that had to wait for a load (or ran cold). */
  public static Counter cacheMisses() {
    return Holder.MISSES;
  }

  /** {@code moe_expert_cache_evictions_total{node}}: warm entries dropped to stay within the budget. */
  public static Counter cacheEvictions() {
    return Holder.EVICTIONS;
  }

  /** {@code moe_expert_cache_warm_bytes{node}}: bytes of warm (and loading) entries. */
  public static Gauge cacheWarmBytes() {
    return Holder.WARM_BYTES;
  }

  /** {@code moe_expert_cache_budget_bytes{node}}: the resolved byte budget. */
  public static Gauge cacheBudgetBytes() {
    return Holder.BUDGET_BYTES;
  }

  /** {@code moe_expert_cache_load_seconds{node}}: copying one expert into the warm layout. */
  public static Histogram cacheLoadSeconds() {
    return Holder.LOAD_SECONDS;
  }

  /**
   * {@code moe_expert_compute_seconds{node,layer}}: one expert FFN over one request's rows; for the
   * calls computed together in one pass, the time of that pass, once per call.
   */
  public static Histogram computeSeconds() {
    return Holder.COMPUTE_SECONDS;
  }

  /** {@code moe_expert_tokens_total{node,layer,expert}}: rows computed by each expert. */
  public static Counter tokens() {
    return Holder.TOKENS;
  }

  /** {@code moe_prefetch_received_total{node}}: prefetch hints that reached the cache. */
  public static Counter prefetchReceived() {
    return Holder.PREFETCH_RECEIVED;
  }

  /** {@code moe_prefetch_loads_total{node}}: hints that started a load (the expert was not warm). */
  public static Counter prefetchLoads() {
    return Holder.PREFETCH_LOADS;
  }

  /** {@code moe_prefetch_useful_total{node}}: prefetched entries used before being evicted. */
  public static Counter prefetchUseful() {
    return Holder.PREFETCH_USEFUL;
  }

  /** {@code moe_prefetch_wasted_total{node}}: prefetched entries evicted (or dropped) unused. */
  public static Counter prefetchWasted() {
    return Holder.PREFETCH_WASTED;
  }

  /** {@code moe_prefetch_page_ins_total{node}}: hints that paged in mapped expert bytes not resident. */
  public static Counter prefetchPageIns() {
    return Holder.PREFETCH_PAGE_INS;
  }

  /** {@code moe_expert_device_memory_bytes{node,device}}: device bytes of resident (and uploading) experts. */
  public static Gauge deviceResidentBytes() {
    return DeviceHolder.RESIDENT_BYTES;
  }

  /** {@code moe_expert_device_budget_bytes{node,device}}: the device memory budget of the weights. */
  public static Gauge deviceBudgetBytes() {
    return DeviceHolder.BUDGET_BYTES;
  }

  /** {@code moe_expert_device_uploads_total{node,device}}: experts uploaded to the device. */
  public static Counter deviceUploads() {
    return DeviceHolder.UPLOADS;
  }

  /** {@code moe_expert_device_evictions_total{node,device}}: resident experts evicted from the device. */
  public static Counter deviceEvictions() {
    return DeviceHolder.EVICTIONS;
  }

  /** {@code moe_expert_device_upload_seconds{node,device}}: allocating and uploading one expert. */
  public static Histogram deviceUploadSeconds() {
    return DeviceHolder.UPLOAD_SECONDS;
  }

  /**
   * {@code moe_expert_device_lookups_total{node,device,outcome}}: expert computations by what they
   * found on the device: {@code hit} (resident), {@code in-flight} (waited for an upload already
   * under way, usually a prefetch), {@code miss} (started an upload and waited for it), {@code cpu}
   * (ran on the CPU: it could not be made resident, its upload failed, or the GPU kernels do not take its weights).
   */
  public static Counter deviceLookups() {
    return DeviceHolder.LOOKUPS;
  }

  /**
   * {@code moe_expert_device_wait_seconds_total{node,device}}: time expert computations spent
   * waiting for their weights' upload (misses and in-flight lookups, and those whose upload then
   * failed): the time lost to device cache misses.
   */
  public static Counter deviceWaitSeconds() {
    return DeviceHolder.WAIT_SECONDS;
  }

  /** The GPU tier's families, registered only on nodes that use it. */
  private static final class DeviceHolder {
    static final Gauge RESIDENT_BYTES = Gauge.builder().withoutExemplars().name("moe_expert_device_memory_bytes")
        .help("Device memory bytes of resident expert weights, uploads in flight included")
        .labelNames("node", "device").register();
    static final Gauge BUDGET_BYTES = Gauge.builder().withoutExemplars().name("moe_expert_device_budget_bytes")
        .help("Device memory budget of the expert weights (moe.expert.cuda.memory-budget)")
        .labelNames("node", "device").register();
    static final Counter UPLOADS = Counter.builder().withoutExemplars().name("moe_expert_device_uploads_total")
        .help("Experts uploaded to the device").labelNames("node", "device").register();
    static final Counter EVICTIONS = Counter.builder().withoutExemplars().name("moe_expert_device_evictions_total")
        .help("Resident experts evicted from the device to stay within its budget").labelNames("node", "device")
        .register();
    static final Counter LOOKUPS = Counter.builder().withoutExemplars().name("moe_expert_device_lookups_total")
        .help("Expert computations by what they found on the device: hit, in-flight (an upload under way),"
            + " miss (started an upload), cpu (ran on the CPU: no room, a failed upload, or weights without"
            + " GPU kernels)")
        .labelNames("node", "device", "outcome").register();
    static final Counter WAIT_SECONDS = Counter.builder().withoutExemplars()
        .name("moe_expert_device_wait_seconds_total")
        .help("Time expert computations waited for their weights' upload to the device (misses, in-flight, failed)")
        .labelNames("node", "device").register();
    static final Histogram UPLOAD_SECONDS = Histogram.builder().withoutExemplars()
        .name("moe_expert_device_upload_seconds")
        .help("Time to allocate and upload one expert's weights to the device").labelNames("node", "device")
        .classicOnly().classicExponentialUpperBounds(0.0001, 2, 16).register();
  }

  private static final class Holder {
    static final Counter HITS = Counter.builder().withoutExemplars().name("moe_expert_cache_hits_total")
        .help("Expert weight cache acquires that found the weights warm").labelNames("node").register();
    static final Counter MISSES = Counter.builder().withoutExemplars().name("moe_expert_cache_misses_total")
        .help("Expert weight cache acquires that waited for a load or ran from the cold mapped bytes")
        .labelNames("node").register();
    static final Counter COLD_COMPUTATIONS = Counter.builder().withoutExemplars()
        .name("moe_expert_cache_cold_computations_total")
        .help("Expert weight cache acquires answered with the cold mapped checkpoint bytes (a miss that"
            + " did not wait for a load, or an expert that could not be made warm)")
        .labelNames("node").register();
    static final Counter EVICTIONS = Counter.builder().withoutExemplars().name("moe_expert_cache_evictions_total")
        .help("Warm experts evicted (least recently used) to stay within the byte budget")
        .labelNames("node").register();
    static final Gauge WARM_BYTES = Gauge.builder().withoutExemplars().name("moe_expert_cache_warm_bytes")
        .help("Bytes of warm expert weights, loads in flight included").labelNames("node").register();
    static final Gauge BUDGET_BYTES = Gauge.builder().withoutExemplars().name("moe_expert_cache_budget_bytes")
        .help("Byte budget of the expert weight cache (moe.expert.cache.budget)").labelNames("node").register();
    static final Histogram LOAD_SECONDS = Histogram.builder().withoutExemplars().name("moe_expert_cache_load_seconds")
        .help("Time to copy one expert's weights into the warm layout").labelNames("node")
        .classicOnly().classicExponentialUpperBounds(0.0005, 2, 16).register();
    static final Histogram COMPUTE_SECONDS = Histogram.builder().withoutExemplars().name("moe_expert_compute_seconds")
        .help("Time of one expert FFN over the rows of one request (of the pass, for calls computed"
            + " together)").labelNames("node", "layer")
        .classicOnly().classicExponentialUpperBounds(0.0001, 2, 18).register();
    static final Counter TOKENS = Counter.builder().withoutExemplars().name("moe_expert_tokens_total")
        .help("Rows (tokens) computed by each expert").labelNames("node", "layer", "expert").register();
    static final Counter PREFETCH_RECEIVED = Counter.builder().withoutExemplars().name("moe_prefetch_received_total")
        .help("Prefetch hints received by the expert weight cache").labelNames("node").register();
    static final Counter PREFETCH_LOADS = Counter.builder().withoutExemplars().name("moe_prefetch_loads_total")
        .help("Prefetch hints that started loading an expert that was not warm").labelNames("node").register();
    static final Counter PREFETCH_USEFUL = Counter.builder().withoutExemplars().name("moe_prefetch_useful_total")
        .help("Prefetched experts that were used before being evicted").labelNames("node").register();
    static final Counter PREFETCH_PAGE_INS = Counter.builder().withoutExemplars().name("moe_prefetch_page_ins_total")
        .help("Prefetch hints that paged in an expert's mapped checkpoint bytes that were not resident")
        .labelNames("node").register();
    static final Counter PREFETCH_WASTED = Counter.builder().withoutExemplars().name("moe_prefetch_wasted_total")
        .help("Prefetched experts evicted or dropped without being used").labelNames("node").register();
  }
}

package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.expert.ExpertMetrics;
import io.moecluster.expert.cuda.DeviceWeightTier.Layout;
import io.moecluster.expert.cuda.DeviceWeightTier.Lease;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The device tier's accounting over a fake device memory: budget, leases, LRU eviction, failures. */
class DeviceWeightTierTest {
  private static final int HIDDEN = 64;
  private static final int FFN = 96;
  private static final ExpertWeights W = TestExperts.random(DType.BF16, HIDDEN, FFN, 7);
  private static final long BYTES = Layout.of(W).bytes();

  /** A fake device: blocks are ids with their sizes; it records every call, and can be told to fail. */
  static final class FakeDevice implements DeviceWeightTier.Memory<Integer>, DeviceWeightTier.Uploader<Integer> {
    final Map<Integer, Long> live = new HashMap<>();
    final List<String> calls = new ArrayList<>();
    final AtomicInteger ids = new AtomicInteger();
    long capacity = Long.MAX_VALUE;
    boolean failUpload;
    volatile CompletableFuture<Void> uploadGate = CompletableFuture.completedFuture(null);

    @Override
    public synchronized Integer allocate(long bytes) {
      long used = live.values().stream().mapToLong(Long::longValue).sum();
      if (used + bytes > capacity) {
        throw new IllegalStateException("CUDA_ERROR_OUT_OF_MEMORY");
      }
      int id = ids.incrementAndGet();
      live.put(id, bytes);
      calls.add("alloc " + id);
      return id;
    }

    @Override
    public synchronized void free(Integer block) {
      assertNotNull(live.remove(block), "double free of " + block);
      calls.add("free " + block);
    }

    @Override
    public void upload(ExpertWeights source, Integer block, Layout layout) {
      uploadGate.join();
      if (failUpload) {
        throw new IllegalStateException("CUDA_ERROR_ILLEGAL_ADDRESS");
      }
      synchronized (this) {
        calls.add("upload " + block);
      }
    }

    synchronized long liveBytes() {
      return live.values().stream().mapToLong(Long::longValue).sum();
    }
  }

  private final ExecutorService copy = Executors.newSingleThreadExecutor();
  private final FakeDevice device = new FakeDevice();

  @AfterEach
  void stop() throws InterruptedException {
    copy.shutdown();
    assertTrue(copy.awaitTermination(5, TimeUnit.SECONDS));
  }

  private DeviceWeightTier<Integer> tier(long budget) {
    return new DeviceWeightTier<>(budget, device, device, copy, "test-node", "cuda:fake");
  }

  private static Lease<Integer> get(CompletableFuture<Lease<Integer>> f) throws Exception {
    return f.get(5, TimeUnit.SECONDS);
  }

  /** Waits until every task queued on the copy thread so far has run. */
  private void drain() throws Exception {
    copy.submit(() -> {}).get(5, TimeUnit.SECONDS);
  }

  @Test
  void layoutAlignsEveryMatrixTo256Bytes() {
    Layout l = Layout.of(W);
    assertEquals(0, l.gateOffset());
    assertEquals(0, l.upOffset() % 256);
    assertEquals(0, l.downOffset() % 256);
    assertTrue(l.upOffset() >= W.gate().byteSize());
    assertTrue(l.downOffset() >= l.upOffset() + W.up().byteSize());
    assertTrue(l.bytes() >= l.downOffset() + W.down().byteSize());
    assertEquals(0, l.bytes() % 256);
    ExpertWeights odd = TestExperts.random(DType.F32, 7, 5, 1); // 140-byte matrices
    Layout o = Layout.of(odd);
    assertEquals(256, o.upOffset());
    assertEquals(512, o.downOffset());
    assertEquals(768, o.bytes());
  }

  @Test
  void firstUseUploadsOnceAndLaterUsesHit() throws Exception {
    var tier = tier(10 * BYTES);
    Lease<Integer> a = get(tier.acquire(0, 1, W));
    assertNotNull(a);
    Lease<Integer> b = get(tier.acquire(0, 1, W));
    assertSame(a.block(), b.block());
    assertEquals(1, tier.uploads());
    assertEquals(BYTES, tier.reservedBytes());
    assertEquals(BYTES, device.liveBytes());
    assertTrue(tier.isResident(0, 1));
    a.close();
    a.close(); // idempotent
    b.close();
    assertEquals(List.of("alloc 1", "upload 1"), device.calls);
  }

  @Test
  void concurrentMissesShareOneUpload() throws Exception {
    var tier = tier(10 * BYTES);
    device.uploadGate = new CompletableFuture<>();
    CompletableFuture<Lease<Integer>> a = tier.acquire(2, 3, W);
    CompletableFuture<Lease<Integer>> b = tier.acquire(2, 3, W);
    assertFalse(a.isDone());
    device.uploadGate.complete(null);
    assertSame(get(a).block(), get(b).block());
    assertEquals(1, tier.uploads());
  }

  @Test
  void leastRecentlyUsedIdleExpertIsEvictedAndItsBlockReusedByTheNextUpload() throws Exception {
    var tier = tier(2 * BYTES);
    get(tier.acquire(0, 0, W)).close();
    get(tier.acquire(0, 1, W)).close();
    get(tier.acquire(0, 0, W)).close(); // 0/1 is now the least recently used
    get(tier.acquire(0, 2, W)).close();
    assertTrue(tier.isResident(0, 0));
    assertFalse(tier.isResident(0, 1));
    assertTrue(tier.isResident(0, 2));
    assertEquals(1, tier.evictions());
    assertEquals(2 * BYTES, tier.reservedBytes());
    drain();
    assertEquals(2 * BYTES, device.liveBytes(), "the device never holds more than the budget");
    assertEquals(List.of("alloc 1", "upload 1", "alloc 2", "upload 2", "upload 2"), device.calls,
        "0/2 is uploaded into 0/1's block: no free, no allocation");
  }

  @Test
  void anAwaitedUploadOvertakesHintsThatHaveNotStarted() throws Exception {
    var tier = tier(10 * BYTES);
    CompletableFuture<Void> hold = new CompletableFuture<>();
    copy.execute(hold::join);
    tier.prefetch(0, 1, W);
    tier.prefetch(0, 2, W);
    CompletableFuture<Lease<Integer>> awaited = tier.acquire(0, 3, W);
    hold.complete(null);
    Lease<Integer> l = get(awaited);
    assertEquals(1, l.block(), "the awaited expert got the first block allocated");
    l.close();
    drain();
    assertEquals(3, tier.uploads());
  }

  @Test
  void aHintThatAComputationWaitsForMovesAheadOfOtherHints() throws Exception {
    var tier = tier(10 * BYTES);
    CompletableFuture<Void> hold = new CompletableFuture<>();
    copy.execute(hold::join);
    tier.prefetch(0, 1, W);
    tier.prefetch(0, 2, W);
    CompletableFuture<Lease<Integer>> awaited = tier.acquire(0, 2, W);
    hold.complete(null);
    Lease<Integer> l = get(awaited);
    assertEquals(1, l.block(), "0/2 was uploaded before 0/1");
    l.close();
    drain();
    assertEquals(2, tier.uploads());
  }

  @Test
  void anAwaitedUploadNeverOvertakesTheFreeThatMakesItsRoom() throws Exception {
    ExpertWeights small = TestExperts.random(DType.BF16, HIDDEN, FFN / 2, 8);
    long smallBytes = Layout.of(small).bytes();
    var tier = tier(BYTES + smallBytes);
    device.capacity = BYTES + smallBytes; // an allocation before the free fails the upload
    get(tier.acquire(0, 0, W)).close();
    CompletableFuture<Void> hold = new CompletableFuture<>();
    copy.execute(hold::join);
    tier.prefetch(0, 1, small); // fits beside 0/0
    CompletableFuture<Lease<Integer>> awaited = tier.acquire(0, 2, small); // evicts 0/0: a free is queued
    hold.complete(null);
    Lease<Integer> l = get(awaited);
    assertNotNull(l, "uploaded to the device, not sent to the CPU");
    l.close();
    drain();
    assertEquals(List.of("alloc 1", "upload 1", "alloc 2", "upload 2", "free 1", "alloc 3", "upload 3"), device.calls);
  }

  @Test
  void aBlockHandedToAnUploadThatNeverStartsIsFreedOnClose() throws Exception {
    var tier = tier(BYTES);
    get(tier.acquire(0, 0, W)).close();
    CompletableFuture<Void> hold = new CompletableFuture<>();
    copy.execute(hold::join); // the copy thread is busy: the next upload waits in its queue
    tier.prefetch(0, 1, W); // evicts 0/0 and takes its block
    tier.close();
    hold.complete(null);
    drain();
    assertEquals(0, device.liveBytes());
    assertEquals(0, tier.allocatedBytes());
    assertEquals(List.of("alloc 1", "upload 1", "free 1"), device.calls);
  }

  @Test
  void anEvictedExpertOfAnotherSizeIsFreedBeforeTheNextAllocation() throws Exception {
    ExpertWeights small = TestExperts.random(DType.BF16, HIDDEN, FFN / 2, 8);
    long smallBytes = Layout.of(small).bytes();
    var tier = tier(BYTES + smallBytes);
    get(tier.acquire(0, 0, W)).close();
    get(tier.acquire(0, 1, small)).close();
    get(tier.acquire(0, 2, small)).close(); // evicts 0/0, the least recently used, of the other size
    assertFalse(tier.isResident(0, 0));
    assertTrue(tier.isResident(0, 1));
    assertTrue(tier.isResident(0, 2));
    drain();
    assertEquals(2 * smallBytes, device.liveBytes());
    assertEquals(List.of("alloc 1", "upload 1", "alloc 2", "upload 2", "free 1", "alloc 3", "upload 3"), device.calls);
  }

  @Test
  void leasedExpertsAreNeverEvictedTheRequestRunsElsewhereInstead() throws Exception {
    var tier = tier(2 * BYTES);
    Lease<Integer> a = get(tier.acquire(0, 0, W));
    Lease<Integer> b = get(tier.acquire(0, 1, W));
    assertNull(get(tier.acquire(0, 2, W)), "no room: the caller runs this expert on the CPU");
    assertEquals(0, tier.evictions());
    assertFalse(tier.isResident(0, 2));
    b.close();
    assertNotNull(get(tier.acquire(0, 2, W)), "b's expert is idle now and can be evicted");
    assertFalse(tier.isResident(0, 1));
    assertTrue(tier.isResident(0, 0));
    a.close();
  }

  @Test
  void anExpertLargerThanTheBudgetIsNeverUploaded() throws Exception {
    var tier = tier(BYTES - 1);
    assertNull(get(tier.acquire(0, 0, W)));
    assertEquals(0, tier.uploads());
    assertEquals(0, tier.reservedBytes());
    drain();
    assertTrue(device.calls.isEmpty());
  }

  @Test
  void aZeroBudgetKeepsEverythingOffTheDevice() throws Exception {
    var tier = tier(0);
    assertNull(get(tier.acquire(0, 0, W)));
    tier.prefetch(0, 1, W);
    drain();
    assertTrue(device.calls.isEmpty());
  }

  @Test
  void outOfDeviceMemoryReleasesTheReservationAndFallsBack() throws Exception {
    var tier = tier(10 * BYTES);
    device.capacity = BYTES / 2; // the device has less room than the budget claims
    assertNull(get(tier.acquire(0, 0, W)));
    assertEquals(0, tier.reservedBytes());
    assertEquals(0, tier.allocatedBytes());
    device.capacity = Long.MAX_VALUE;
    assertNotNull(get(tier.acquire(0, 0, W)), "a later request tries again");
  }

  @Test
  void aFailedUploadFreesItsBlock() throws Exception {
    var tier = tier(10 * BYTES);
    device.failUpload = true;
    assertNull(get(tier.acquire(0, 0, W)));
    assertEquals(0, tier.reservedBytes());
    assertEquals(0, device.liveBytes());
    assertEquals(0, tier.allocatedBytes());
    assertEquals(List.of("alloc 1", "free 1"), device.calls);
  }

  @Test
  void prefetchUploadsWithoutWaitingAndOnlyOnce() throws Exception {
    var tier = tier(10 * BYTES);
    device.uploadGate = new CompletableFuture<>();
    tier.prefetch(1, 4, W); // returns at once although the upload is held
    tier.prefetch(1, 4, W);
    assertFalse(tier.isResident(1, 4));
    assertEquals(BYTES, tier.reservedBytes(), "the upload in flight counts against the budget");
    device.uploadGate.complete(null);
    Lease<Integer> l = get(tier.acquire(1, 4, W));
    assertNotNull(l);
    assertEquals(1, tier.uploads());
    l.close();
  }

  @Test
  void lookupsAreCountedByWhatTheyFoundOnTheDevice() throws Exception {
    String node = "lookup-node";
    var tier = new DeviceWeightTier<>(BYTES, device, device, copy, node, "cuda:fake");
    device.uploadGate = new CompletableFuture<>();
    tier.prefetch(0, 0, W);
    CompletableFuture<Lease<Integer>> waiting = tier.acquire(0, 0, W); // the prefetch's upload is under way
    device.uploadGate.complete(null);
    Lease<Integer> held = get(waiting);
    get(tier.acquire(0, 0, W)).close(); // resident
    assertNull(get(tier.acquire(0, 1, W)), "no room while 0/0 is leased: runs on the CPU");
    held.close();
    get(tier.acquire(0, 1, W)).close(); // evicts 0/0 and uploads
    assertEquals(1, lookups(node, "in-flight"));
    assertEquals(1, lookups(node, "hit"));
    assertEquals(1, lookups(node, "cpu"));
    assertEquals(1, lookups(node, "miss"));
    assertTrue(ExpertMetrics.deviceWaitSeconds().labelValues(node, "cuda:fake").get() > 0,
        "the in-flight and the missed lookups waited for their uploads");
  }

  @Test
  void aComputationWhoseUploadFailedCountsAsOnTheCpu() throws Exception {
    String node = "failed-upload-node";
    var tier = new DeviceWeightTier<>(10 * BYTES, device, device, copy, node, "cuda:fake");
    device.failUpload = true;
    assertNull(get(tier.acquire(0, 0, W)), "the upload failed: runs on the CPU");
    assertEquals(1, lookups(node, "cpu"));
    assertEquals(0, lookups(node, "miss"));
  }

  private static double lookups(String node, String outcome) {
    return ExpertMetrics.deviceLookups().labelValues(node, "cuda:fake", outcome).get();
  }

  @Test
  void closeFreesIdleBlocksAtOnceAndLeasedOnesOnRelease() throws Exception {
    var tier = tier(10 * BYTES);
    get(tier.acquire(0, 0, W)).close();
    Lease<Integer> held = get(tier.acquire(0, 1, W));
    tier.close();
    drain();
    assertEquals(BYTES, device.liveBytes(), "the leased block stays until its computation ends");
    held.close();
    drain();
    assertEquals(0, device.liveBytes());
    assertEquals(0, tier.allocatedBytes());
    var e = assertThrows(ExecutionException.class, () -> tier.acquire(0, 0, W).get());
    assertTrue(e.getCause().getMessage().contains("closed"));
  }

  @Test
  void closeDuringAnUploadFreesTheBlockWhenTheUploadEnds() throws Exception {
    var tier = tier(10 * BYTES);
    device.uploadGate = new CompletableFuture<>();
    tier.prefetch(0, 0, W);
    tier.close();
    device.uploadGate.complete(null);
    drain();
    assertEquals(0, device.liveBytes());
  }

  @Test
  void negativeBudgetIsRejected() {
    var e = assertThrows(IllegalArgumentException.class, () -> tier(-1));
    assertTrue(e.getMessage().contains(">= 0"));
  }
}
